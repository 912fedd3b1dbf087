"""Reproducible benchmarks: the sandbox over real HTTP against DuckDB on the same Parquet files.

Run with ``python -m benchmarks --help``; ``benchmarks/README.md`` explains what is measured
and the targets.
"""
