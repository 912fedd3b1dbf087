"""The `sandbox` command: one module per command group."""
