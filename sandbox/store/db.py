"""Database engine and sessions (SQLite by default, any SQLAlchemy URL otherwise)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

# Execution option of the engine that read-only sessions use.
READ_ONLY = "sandbox_read_only"


# Where a pooled SQLite connection remembers whether it is set read-only (`_begin`): in the
# pool's `info` of the connection, which goes with it when it is dropped and replaced.
QUERY_ONLY = "sandbox_query_only"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)

        # pysqlite's own BEGIN handling defers locking; take the write lock at BEGIN so that a
        # read-then-write transaction (reservations, ledger appends) cannot interleave. Readers
        # begin deferred: under WAL they read a snapshot and never wait for the writer.
        @event.listens_for(engine, "connect")
        def _no_autobegin(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            reader = bool(conn.get_execution_options().get(READ_ONLY, False))
            # Straight to the driver: every session begins here, and SQLAlchemy's execution
            # of a statement costs many times SQLite's own for these two.
            proxied = conn.connection
            driver = proxied.driver_connection
            # query_only makes a reader's mistaken write an error instead of a lock upgrade.
            # It stays set on the connection: changed only when the kind of session changes.
            if proxied.info.get(QUERY_ONLY) is not reader:
                driver.execute(f"PRAGMA query_only={int(reader)}")
                proxied.info[QUERY_ONLY] = reader
            driver.execute("BEGIN" if reader else "BEGIN IMMEDIATE")
    else:
        engine = create_engine(url, pool_pre_ping=True)
        if engine.dialect.name == "postgresql":
            event.listen(engine, "begin", _postgresql_begin)
    # The schema is the migrations' (sandbox.store.schema), not made here.
    return engine


# Writers of every process of an instance take this transaction-level advisory lock first:
# the same one-writer-at-a-time order SQLite's BEGIN IMMEDIATE gives, now across API workers,
# for the read-then-write transactions (reservations against caps, ledger appends).
WRITER_LOCK = 0x5A4E_D807


def _postgresql_begin(conn: Any) -> None:
    if conn.get_execution_options().get(READ_ONLY, False):
        # One consistent snapshot, and a mistaken write is an error.
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
    else:
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({WRITER_LOCK})")


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def make_reader(engine: Engine) -> sessionmaker[Session]:
    """Sessions for reading only: on SQLite they take no write lock."""
    return sessionmaker(engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False)
