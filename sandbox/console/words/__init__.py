"""The console's words, one module per area of pages; `sandbox.console.i18n` merges them."""
