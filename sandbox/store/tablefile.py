"""One database table as a file of JSON lines, with every value's type kept exactly.

A backup writes each table this way and a restore reads it back, possibly into another kind
of database: the ledger's hashes and signatures cover stored bytes, so bytes, times, numbers
and JSON documents must come back as they were. Each line is one row, an object of column
name to value, encoded by the column's type:

    LargeBinary  base64 text
    DateTime     ISO 8601 text, to the microsecond (as stored: naive UTC)
    Numeric      decimal text (floats as JSON numbers, which Python writes exactly)
    JSON         SQL NULL as null, a stored document (even the JSON `null`) as {"json": doc}
    others       as JSON has them (text, integers, booleans)
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import IO, Any

from sqlalchemy import (
    JSON,
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    LargeBinary,
    MetaData,
    Numeric,
    Table,
    insert,
    select,
)
from sqlalchemy.orm import Session

BATCH = 1000
_SQL_NULL = "__sql_null__"
# Alembic's own table: a backup records the revision in its manifest instead.
VERSION_TABLE = "alembic_version"


def tables_of(bind: Engine | Connection) -> list[Table]:
    """The tables of the database's schema as it is (at whatever revision), parents before
    the tables whose foreign keys point at them."""
    metadata = MetaData()
    metadata.reflect(bind)
    return [t for t in metadata.sorted_tables if t.name != VERSION_TABLE]


def _json_columns(table: Table) -> list[str]:
    return [c.name for c in table.columns if isinstance(c.type, JSON)]


def _encode(column: Column[Any], value: Any) -> Any:
    if value is None:
        return None
    kind = column.type
    if isinstance(kind, LargeBinary):
        return base64.b64encode(value).decode("ascii")
    if isinstance(kind, DateTime):
        return value.isoformat()
    if isinstance(kind, Float):
        return value
    if isinstance(kind, Numeric):
        return str(value)
    if isinstance(kind, JSON):
        return {"json": value}
    return value


def _decode(column: Column[Any], value: Any) -> Any:
    if value is None:
        return None
    kind = column.type
    if isinstance(kind, LargeBinary):
        return base64.b64decode(value, validate=True)
    if isinstance(kind, DateTime):
        return dt.datetime.fromisoformat(value)
    if isinstance(kind, Float):
        return value
    if isinstance(kind, Numeric):
        return Decimal(value)
    if isinstance(kind, JSON):
        # JSON.NULL stores the JSON `null`; a plain None (below) stores SQL NULL.
        doc = value["json"]
        return JSON.NULL if doc is None else doc
    return value


def dump(session: Session, table: Table, out: IO[str]) -> int:
    """Write every row of `table`, in primary-key order, as seen by `session`; the count."""
    json_columns = _json_columns(table)
    # A JSON column reads SQL NULL and the JSON `null` both as None; ask which it is.
    nulls = [table.c[name].is_(None).label(f"{name}{_SQL_NULL}") for name in json_columns]
    query = select(*table.columns, *nulls).order_by(*table.primary_key.columns)
    count = 0
    for row in session.execute(query.execution_options(yield_per=BATCH)).mappings():
        line = {
            c.name: None if row.get(f"{c.name}{_SQL_NULL}") else _encode(c, row[c.name])
            for c in table.columns
        }
        out.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
        count += 1
    return count


def _for_insert(table: Table) -> Table:
    """`table`'s columns, with JSON columns storing a Python None as SQL NULL."""
    columns = [
        Column(c.name, JSON(none_as_null=True) if isinstance(c.type, JSON) else c.type)
        for c in table.columns
    ]
    return Table(table.name, MetaData(), *columns)


def rows(table: Table, lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """The rows of a file written by `dump`, decoded for inserting into `table`."""
    for line in lines:
        raw: Mapping[str, Any] = json.loads(line)
        unknown = set(raw) - set(table.c.keys())
        if unknown:
            raise ValueError(f"columns {sorted(unknown)} are not in table {table.name}")
        yield {c.name: _decode(c, raw.get(c.name)) for c in table.columns}


def load(conn: Connection, table: Table, lines: Iterator[str]) -> int:
    """Insert the rows of a file written by `dump` into `table`; the count."""
    target = _for_insert(table)
    count, batch = 0, []
    for row in rows(table, lines):
        batch.append(row)
        if len(batch) == BATCH:
            conn.execute(insert(target), batch)
            count, batch = count + len(batch), []
    if batch:
        conn.execute(insert(target), batch)
        count += len(batch)
    return count
