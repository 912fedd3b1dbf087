"""Alembic migrations of the service database (see sandbox.store.schema)."""
