"""Dummy data: a table shaped like a dataset, generated from its published catalog entry alone.

An operator never sees the data, so to check that a job runs and is accepted before paying for
it, they run it on a table with the same columns, types and roles. That table is drawn only from
what the catalog publishes about each column — its Arrow type, its role and its declared bounds
(`lower`/`upper`) — never from the dataset's files, so it says nothing about the real values or
their distribution, and results computed on it mean nothing.

What the generator draws, per column (the same `(entry, rows, seed)` always gives the same table):

- numbers: uniform between the declared bounds (0–100 for integers and 0–1000 for floats
  without them);
- identifiers: `<column>-<row number>`, so two datasets with an identifier of the same name
  join row for row (and an identifier the catalog marks unique is unique);
- other text: a handful of categories, `<column>_1` … `<column>_4` (Chinese names survive:
  they are only ever copied), so that a group_by gives groups large enough to be released;
- dates and times: uniform between 2000-01-01 and 2024-12-31; booleans: fair coin flips.
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Mapping
from typing import Any, Final

import numpy as np
import pyarrow as pa

from sandbox.catalog.models import ColumnInfo, DatasetInfo

__all__ = [
    "DEFAULT_ROWS",
    "MAX_ROWS",
    "CATEGORIES",
    "arrow_type",
    "entry",
    "from_entry",
    "generate",
]

DEFAULT_ROWS: Final = 1000
# Enough for any check of a job's code; a cap so that a download stays small.
MAX_ROWS: Final = 100_000
CATEGORIES: Final = 4
_FIRST_DAY: Final = dt.date(2000, 1, 1)
_LAST_DAY: Final = dt.date(2024, 12, 31)
_EPOCH: Final = dt.date(1970, 1, 1)
_INT_RANGE: Final = (0.0, 100.0)
_FLOAT_RANGE: Final = (0.0, 1000.0)

_NAMED_TYPES: Final[Mapping[str, pa.DataType]] = {
    "bool": pa.bool_(),
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "uint8": pa.uint8(),
    "uint16": pa.uint16(),
    "uint32": pa.uint32(),
    "uint64": pa.uint64(),
    "float": pa.float32(),
    "float32": pa.float32(),
    "double": pa.float64(),
    "float64": pa.float64(),
    "string": pa.string(),
    "utf8": pa.string(),
    "large_string": pa.large_string(),
    "large_utf8": pa.large_string(),
    "date32[day]": pa.date32(),
    "date32": pa.date32(),
    "date64[ms]": pa.date64(),
}


def arrow_type(name: str) -> pa.DataType:
    """The Arrow type a catalog type name stands for; text for a type this module cannot draw."""
    known = _NAMED_TYPES.get(name)
    if known is not None:
        return known
    if name.startswith("timestamp["):
        unit, _, zone = name[len("timestamp[") : -1].partition(", tz=")
        return pa.timestamp(unit, tz=zone or None)
    if name.startswith("decimal"):
        return pa.float64()
    return pa.string()


def generate(info: DatasetInfo, rows: int = DEFAULT_ROWS, seed: int = 0) -> pa.Table:
    """A table with `info`'s columns, in order and of their types, with `rows` generated rows.

    Only `info`'s schema is read (never `info.partitions`)."""
    if not 0 <= rows <= MAX_ROWS:
        raise ValueError(f"rows must be between 0 and {MAX_ROWS}; ask for fewer")
    arrays = [_column(c, rows, _rng(seed, info.name, c.name)) for c in info.columns]
    fields = [pa.field(c.name, arrow_type(c.type)) for c in info.columns]
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _rng(seed: int, dataset: str, column: str) -> np.random.Generator:
    # One stream per column: adding a column to the catalog leaves the others as they were.
    return np.random.default_rng(
        [seed, zlib.crc32(dataset.encode("utf-8")), zlib.crc32(column.encode("utf-8"))]
    )


def _column(c: ColumnInfo, rows: int, rng: np.random.Generator) -> pa.Array:
    kind = arrow_type(c.type)
    if pa.types.is_integer(kind):
        low, high = _bounds(c, _INT_RANGE)
        lo, hi = int(np.ceil(low)), int(np.floor(high))
        if c.role == "identifier":
            values = np.arange(rows, dtype=np.int64) + max(lo, 0)
            return pa.array(values if c.unique is not False else values % max(rows // 3, 1), kind)
        return pa.array(rng.integers(lo, max(hi, lo) + 1, rows), kind)
    if pa.types.is_floating(kind):
        low, high = _bounds(c, _FLOAT_RANGE)
        return pa.array(np.round(rng.uniform(low, high, rows), 2), kind)
    if pa.types.is_boolean(kind):
        return pa.array(rng.integers(0, 2, rows).astype(bool), kind)
    if pa.types.is_date(kind) or pa.types.is_timestamp(kind):
        first, last = (d.toordinal() - _EPOCH.toordinal() for d in (_FIRST_DAY, _LAST_DAY))
        days = rng.integers(first, last + 1, rows)
        dates = pa.array(days.astype(np.int32), pa.date32())
        return dates.cast(kind) if not pa.types.is_date32(kind) else dates
    return pa.array(_text(c, rows, rng), kind)


def _bounds(c: ColumnInfo, default: tuple[float, float]) -> tuple[float, float]:
    """The declared bounds; a missing one is the default's width away from the other."""
    span = default[1] - default[0]
    if c.lower is not None and c.upper is not None:
        return (c.lower, c.upper) if c.lower <= c.upper else (c.upper, c.lower)
    if c.lower is not None:
        return c.lower, c.lower + span
    if c.upper is not None:
        return c.upper - span, c.upper
    return default


def _text(c: ColumnInfo, rows: int, rng: np.random.Generator) -> list[str]:
    if c.role == "identifier":
        # Not unique by declaration: a few rows share each value, as a firm's employees do.
        numbers = range(rows) if c.unique is not False else rng.integers(0, max(rows // 3, 1), rows)
        return [f"{c.name}-{int(i) + 1:07d}" for i in numbers]
    picks = rng.integers(1, CATEGORIES + 1, rows)
    return [f"{c.name}_{int(k)}" for k in picks]


def entry(info: DatasetInfo, raw_groups: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The catalog entry a local run needs: the published schema, roles, level and bounds, and
    two policy facts the service's checks use that the catalog otherwise keeps to itself —
    which quasi-identifiers may be grouped by as they are (`raw_groups`: a submission that
    groups by one learns as much from its acceptance or refusal) and which identifiers are
    unique (one row per person, which decides whether a join is accepted)."""
    body = info.to_json()
    body.pop("registered_at", None)
    columns = []
    for c, shown in zip(info.columns, body["columns"]):
        if c.role == "quasi_identifier":
            shown["group_by_raw"] = c.name in raw_groups
        if c.role == "identifier" and c.unique is not None:
            shown["unique"] = c.unique
        columns.append(shown)
    body["columns"] = columns
    return body


def from_entry(body: Mapping[str, Any], partitions: tuple[str, ...], row_count: int) -> DatasetInfo:
    """A dataset as a local run sees it: `body` (an `entry`) over the dummy `partitions`."""
    columns = tuple(
        ColumnInfo(
            name=str(c["name"]),
            type=str(c["type"]),
            role=c["role"],
            lower=_number(c.get("lower")),
            upper=_number(c.get("upper")),
            # Any count within the limit for raw group keys gives the same checks.
            distinct=1 if c.get("group_by_raw") else None,
            unique=c.get("unique"),
            description=c.get("description"),
        )
        for c in body["columns"]
    )
    return DatasetInfo(
        name=str(body["name"]),
        title=str(body.get("title", body["name"])),
        provider_id=str(body.get("provider_id", "")),
        level=str(body["level"]),
        row_count=row_count,
        columns=columns,
        partitions=partitions,
        topic=body.get("topic"),
        version=int(body.get("version", 1)),
    )


def _number(value: Any) -> float | None:
    return None if value is None else float(value)
