"""Alembic's entry: migrations run on the connection `sandbox.store.schema` hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from sandbox.store.models import Base


def _run(connection: Connection) -> None:
    # Batch mode: SQLite alters a table by copying it, which Alembic does for us.
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = create_engine(context.config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()
