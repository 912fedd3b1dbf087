"""The databases the suite runs on: SQLite always, PostgreSQL too when
`SANDBOX_TEST_DATABASE_URL` names a server (`.ci/run` sets it when one answers). Each
instance gets a database of its own, dropped afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

SERVER = os.environ.get("SANDBOX_TEST_DATABASE_URL", "").strip()
BACKENDS = ("sqlite", "postgresql")


@contextmanager
def fresh_database(backend: str) -> Iterator[str | None]:
    """A URL of an empty database of `backend`; None for SQLite (the instance's own file)."""
    if backend == "sqlite":
        yield None
        return
    if not SERVER:
        pytest.skip(
            "PostgreSQL: set SANDBOX_TEST_DATABASE_URL "
            "(e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test) to run on it"
        )
    admin = create_engine(SERVER, isolation_level="AUTOCOMMIT")
    name = f"sandbox_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as c:
        c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(SERVER).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
