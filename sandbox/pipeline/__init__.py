"""A job's path: submission (checks, quote, reservation), execution (the driver next
to the data), settlement (charge, budgets, outputs, detection)."""
