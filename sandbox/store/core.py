"""Core statements run on a session's connection, in the session's transaction.

A job's submission and settlement make a few dozen one-row statements. Through the ORM each
costs several times SQLite's own time for it (autoflush, the ORM's result handling, building
the statement anew); built once with bound parameters and run on the connection, most of that
goes. What runs here bypasses the unit of work: the caller flushes first any ORM change such a
statement must see, and no ORM object of a row it writes is read afterwards in the same
session.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import CursorResult, Executable
from sqlalchemy.orm import Session


def execute(
    session: Session,
    statement: Executable,
    params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
) -> CursorResult[*tuple[Any, ...]]:
    return session.connection().execute(statement, params)


def dialect(session: Session) -> str:
    return session.get_bind().dialect.name
