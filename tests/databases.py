"""The databases the suite runs on: SQLite always, PostgreSQL too when
`SANDBOX_TEST_DATABASE_URL` names a server (`.ci/run` sets it when one answers). Each
instance gets a database of its own, dropped afterwards.

The connector's tests (`sandbox.catalog.sources`) read departments' databases: PostgreSQL as
above, or the local server when it answers; MariaDB/MySQL at `SANDBOX_TEST_MARIADB_URL`, or
the local server when it answers. Each test module gets a database of its own there too."""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

SERVER = os.environ.get("SANDBOX_TEST_DATABASE_URL", "").strip()
BACKENDS = ("sqlite", "postgresql")

# A department's database server, by backend: the variable naming one, and the local server
# used when the variable is unset and that server answers.
SOURCE_SERVERS = {
    "postgresql": (
        "SANDBOX_TEST_DATABASE_URL",
        "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    ),
    "mariadb": ("SANDBOX_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}


@contextmanager
def fresh_database(backend: str) -> Iterator[str | None]:
    """A URL of an empty database of `backend`; None for SQLite (the instance's own file)."""
    if backend == "sqlite":
        yield None
        return
    require_server()
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)


def require_server() -> None:
    if not SERVER:
        pytest.skip(
            "PostgreSQL: set SANDBOX_TEST_DATABASE_URL "
            "(e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test) to run on it"
        )


def _admin(statement: str) -> None:
    admin = create_engine(SERVER, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.exec_driver_sql(statement)
    finally:
        admin.dispose()


def create_database(template: str | None = None) -> str:
    """The URL of a new PostgreSQL database on the suite's server: empty, or a copy of the
    database at `template`, which nobody may be connected to (PostgreSQL copies it block by
    block: a third of a second for a test instance, a third of making one)."""
    name = f"sandbox_test_{uuid.uuid4().hex[:12]}"
    copy = f' TEMPLATE "{make_url(template).database}"' if template else ""
    _admin(f'CREATE DATABASE "{name}"{copy}')
    return make_url(SERVER).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    _admin(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')


def _answers(url: str) -> bool:
    engine = create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            return True
    except DBAPIError:
        return False
    finally:
        engine.dispose()


@functools.cache
def source_server(backend: str) -> str | None:
    """The admin URL of a `backend` server to play a department's database, or None. One the
    variable names must answer: a configured server that is down is a failure, not a skip."""
    variable, local = SOURCE_SERVERS[backend]
    named = os.environ.get(variable, "").strip()
    if named:
        return named
    return local if _answers(local) else None


@contextmanager
def department_database(backend: str) -> Iterator[str]:
    """The admin URL of an empty database on a `backend` server ("postgresql" or "mariadb"),
    dropped afterwards; skips, saying how to run it, when no server answers."""
    server = source_server(backend)
    if server is None:
        variable, local = SOURCE_SERVERS[backend]
        pytest.skip(f"{backend}: no server answers at {local}; set {variable} to run on one")
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    name = f"sandbox_src_{uuid.uuid4().hex[:12]}"
    quoted = f'"{name}"' if backend == "postgresql" else f"`{name}`"
    with admin.connect() as c:
        c.exec_driver_sql(
            f"CREATE DATABASE {quoted}"
            + ("" if backend == "postgresql" else " CHARACTER SET utf8mb4")
        )
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.exec_driver_sql(
                f"DROP DATABASE IF EXISTS {quoted}"
                + (" WITH (FORCE)" if backend == "postgresql" else "")
            )
        admin.dispose()
