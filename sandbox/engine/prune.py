"""Skipping the parts of a Parquet partition a plan's filters cannot match.

A filter that sits directly on a read (before any derive) speaks of the dataset's own columns.
Its simple comparisons — `col op literal`, `between(col, lo, hi)`, `isin(col, [...])`, and
`and`/`or` of those — are checked against each row group's statistics (min, max, null count):
a row group none of whose rows can satisfy the predicate is not read, and a partition none of
whose row groups can is not read at all (only its footer is).

Pruning only skips rows the filter would drop: the filter still runs on what is read, so
results never change. Anything uncertain — another expression, a type without reliable
statistics, missing statistics, a NaN bound — counts as "may match". Comparisons follow the
engine's Arrow semantics: a comparison with null never matches, an integer column compared
with a float literal compares as doubles, an ISO string compares with a date column as a date.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sandbox.catalog import encryption
from sandbox.language import plan as p

_ORDERING = frozenset({"eq", "lt", "le", "gt", "ge"})
# `lit op col` is `col flipped[op] lit`.
_FLIPPED = {"eq": "eq", "lt": "gt", "le": "ge", "gt": "lt", "ge": "le"}


@dataclass(frozen=True)
class Footer:
    """What a partition's footer says: enough to choose row groups and place their rows."""

    path: str
    mtime_ns: int
    size: int
    metadata: pq.FileMetaData
    schema: pa.Schema

    @property
    def num_rows(self) -> int:
        return int(self.metadata.num_rows)

    def row_group_starts(self) -> np.ndarray:
        """Position in the partition of each row group's first row (and, last, the total)."""
        counts = [self.metadata.row_group(i).num_rows for i in range(self.metadata.num_row_groups)]
        return np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)


def footer(path: str) -> Footer:
    """The partition's footer, read once per process for as long as the file is unchanged
    and its footer is among the most recently used (`FOOTERS_BYTES`)."""
    key = file_key(path)
    found = _footers.get(key)
    if found is None:
        f = pq.ParquetFile(path, decryption_properties=encryption.decryption_for(path))
        found = Footer(*key, f.metadata, f.schema_arrow)
        _footers.put(key, found)
    return found


def file_key(path: str) -> tuple[str, int, int]:
    """The file as it is now: its path, modification time (ns) and size."""
    st = os.stat(path)
    return path, st.st_mtime_ns, st.st_size


class _Footers:
    """Footers read, least recently used first, up to `budget` bytes of footer as stored.

    Bounded by bytes, not by count: the planner reads every partition's footer of a dataset
    for each join, so a count below a dataset's partitions would drop each footer just before
    it is needed again and read them all from disk for every job."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.held = 0
        self._footers: OrderedDict[tuple[str, int, int], Footer] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._footers)

    def get(self, key: tuple[str, int, int]) -> Footer | None:
        with self._lock:
            found = self._footers.get(key)
            if found is not None:
                self._footers.move_to_end(key)
            return found

    def put(self, key: tuple[str, int, int], f: Footer) -> None:
        with self._lock:
            if key in self._footers:
                return
            self._footers[key] = f
            self.held += _size(f)
            while self.held > self.budget and len(self._footers) > 1:
                _, dropped = self._footers.popitem(last=False)
                self.held -= _size(dropped)


def _size(f: Footer) -> int:
    return int(f.metadata.serialized_size)


# Footers kept per process, in bytes as stored in the files: a 1 M-row partition of the
# benchmark's population (8 columns, 8 row groups) has a footer of 8 KB, so about 2 000
# such partitions (2 billion rows); what the parsed footers take in memory is a few times that.
FOOTERS_BYTES = 16 << 20
_footers = _Footers(FOOTERS_BYTES)


def column_range(f: Footer, name: str) -> tuple[int, int] | None:
    """The least and greatest value of integer column `name` in the partition, from its row
    groups' statistics ((1, 0) when it has no rows); None when some row group has none."""
    columns = [f.metadata.schema.column(j).path for j in range(f.metadata.num_columns)]
    if name not in columns:
        return None
    j = columns.index(name)
    lo, hi = None, None
    for g in range(f.metadata.num_row_groups):
        group = f.metadata.row_group(g)
        if not group.num_rows:
            continue
        stats = group.column(j).statistics
        if stats is None or not stats.has_min_max or stats.null_count:
            return None
        lo = stats.min if lo is None else min(lo, stats.min)
        hi = stats.max if hi is None else max(hi, stats.max)
    if lo is None or hi is None:
        return (1, 0)
    return (int(lo), int(hi))


def scan_predicates(steps: Sequence[p.Node]) -> tuple[p.Expr, ...]:
    """Predicates of the filters among `steps` (bottom-up) that see the read's own columns:
    those before the first derive, which may replace a column. A select only drops columns."""
    out: list[p.Expr] = []
    for step in steps:
        if isinstance(step, p.Derive):
            break
        if isinstance(step, p.Filter):
            out.append(step.predicate)
    return tuple(out)


def row_groups(f: Footer, predicates: Sequence[p.Expr]) -> list[int] | None:
    """Row groups that may hold a row satisfying every predicate, in file order; None when
    that is all of them."""
    n = f.metadata.num_row_groups
    if not predicates or n == 0:
        return None
    columns = {f.metadata.schema.column(j).path: j for j in range(f.metadata.num_columns)}
    keep = [i for i in range(n) if all(_may_match(e, _RowGroup(f, columns, i)) for e in predicates)]
    return None if len(keep) == n else keep


@dataclass(frozen=True)
class _Bounds:
    lo: Any
    hi: Any


class _RowGroup:
    """Statistics of one row group, column by column."""

    def __init__(self, f: Footer, columns: dict[str, int], index: int) -> None:
        self._f, self._columns = f, columns
        self._rg = f.metadata.row_group(index)

    def type_of(self, name: str) -> pa.DataType | None:
        i = self._f.schema.get_field_index(name)
        return self._f.schema.field(i).type if i >= 0 and name in self._columns else None

    def _stats(self, name: str) -> Any:
        return self._rg.column(self._columns[name]).statistics

    def all_null(self, name: str) -> bool:
        s = self._stats(name)
        return (
            s is not None
            and s.has_null_count
            and self._rg.num_rows > 0
            and s.null_count == self._rg.num_rows
        )

    def may_hold_null(self, name: str) -> bool:
        s = self._stats(name)
        return s is None or not s.has_null_count or s.null_count > 0

    def bounds(self, name: str) -> _Bounds | None:
        s = self._stats(name)
        if s is None or not s.has_min_max:
            return None
        return _Bounds(s.min, s.max)


def _may_match(e: p.Expr, rg: _RowGroup) -> bool:
    if not isinstance(e, p.Call):
        return True
    if e.fn == "and":
        return all(_may_match(a, rg) for a in e.args)
    if e.fn == "or":
        return any(_may_match(a, rg) for a in e.args)
    if e.fn in _ORDERING:
        a, b = e.args
        if isinstance(a, p.Col) and isinstance(b, p.Lit):
            return _compare(rg, a.name, e.fn, b.value)
        if isinstance(a, p.Lit) and isinstance(b, p.Col):
            return _compare(rg, b.name, _FLIPPED[e.fn], a.value)
        return True
    if e.fn == "between":
        x, lo, hi = e.args
        if isinstance(x, p.Col) and isinstance(lo, p.Lit) and isinstance(hi, p.Lit):
            return _compare(rg, x.name, "ge", lo.value) and _compare(rg, x.name, "le", hi.value)
        return True
    if e.fn == "isin":
        x, values = e.args
        if isinstance(x, p.Col) and isinstance(values, p.Lit) and isinstance(values.value, tuple):
            return _isin(rg, x.name, values.value)
        return True
    return True


def _compare(rg: _RowGroup, name: str, op: str, value: Any) -> bool:
    """Whether some row may have `name op value` true."""
    t = rg.type_of(name)
    if t is None:
        return True
    if rg.all_null(name) and value is not None:
        return False  # a comparison with null is null, which a filter drops
    coerced = _coerce(value, t)
    bounds = rg.bounds(name)
    if coerced is None or bounds is None:
        return True
    v, as_float = coerced
    lo, hi = _bound(bounds.lo, t, as_float), _bound(bounds.hi, t, as_float)
    if lo is None or hi is None:
        return True
    if op == "eq":
        return bool(lo <= v <= hi)
    if op == "lt":
        return bool(lo < v)
    if op == "le":
        return bool(lo <= v)
    if op == "gt":
        return bool(hi > v)
    return bool(hi >= v)


def _isin(rg: _RowGroup, name: str, values: tuple[Any, ...]) -> bool:
    t = rg.type_of(name)
    if t is None:
        return True
    # Arrow's is_in matches a null row with a null in the list.
    if any(v is None for v in values) and rg.may_hold_null(name):
        return True
    present = [v for v in values if v is not None]
    if not present or rg.all_null(name):
        return False
    bounds = rg.bounds(name)
    if bounds is None:
        return True
    for v in present:
        coerced = _coerce(v, t)
        if coerced is None:
            return True
        # The list is cast to the column's type, so an integer column compares integers.
        c, as_float = coerced
        if as_float and pa.types.is_integer(t):
            if not float(c).is_integer():
                return True  # not castable: evaluation reports it
            c, as_float = int(c), False
        lo, hi = _bound(bounds.lo, t, as_float), _bound(bounds.hi, t, as_float)
        if lo is None or hi is None or lo <= c <= hi:
            return True
    return False


def _coerce(value: Any, t: pa.DataType) -> tuple[Any, bool] | None:
    """The literal as the engine compares it with a column of type `t`, and whether the
    comparison is between doubles; None when not prunable."""
    if value is None or isinstance(value, bool):
        return None
    if pa.types.is_integer(t) and isinstance(value, int):
        return value, False
    if (pa.types.is_integer(t) or pa.types.is_floating(t)) and isinstance(value, (int, float)):
        v = float(value)
        return (v, True) if math.isfinite(v) else None
    if (pa.types.is_string(t) or pa.types.is_large_string(t)) and isinstance(value, str):
        return value, False
    if (pa.types.is_date32(t) or pa.types.is_date64(t)) and isinstance(value, str):
        try:
            return dt.date.fromisoformat(value), False
        except ValueError:
            return None  # evaluation reports the bad date
    return None


def _bound(stat: Any, t: pa.DataType, as_float: bool) -> Any:
    """A statistics value comparable with a coerced literal, or None when unusable."""
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        if isinstance(stat, bool) or not isinstance(stat, (int, float)):
            return None
        if isinstance(stat, float) and math.isnan(stat):
            return None
        return float(stat) if as_float or pa.types.is_floating(t) else stat
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        # Python orders str by code point, as Arrow and Parquet order UTF-8 bytes.
        return stat if isinstance(stat, str) else None
    if isinstance(stat, dt.datetime) or not isinstance(stat, dt.date):
        return None
    return stat


def positions(f: Footer, groups: list[int] | None) -> np.ndarray | None:
    """Position in the partition of every row of `groups` read in order; None for all."""
    if groups is None:
        return None
    starts = f.row_group_starts()
    if not groups:
        return np.zeros(0, np.uint64)
    return np.concatenate([np.arange(starts[g], starts[g + 1], dtype=np.uint64) for g in groups])


def read(f: Footer, columns: Sequence[str], groups: list[int] | None) -> pa.Table:
    """The projected rows of `groups` (all when None) of the partition. Text columns stored
    as dictionaries are read as Arrow dictionaries (see `dictionary_columns`)."""
    cols = list(columns)
    # Pages written with checksums (ingest writes them) are checked: bytes damaged on disk
    # fail the read instead of becoming other values.
    pf = pq.ParquetFile(
        f.path,
        metadata=f.metadata,
        read_dictionary=dictionary_columns(f, cols),
        page_checksum_verification=True,
        decryption_properties=encryption.decryption_for(f.path),
    )
    if groups is None:
        return pf.read(columns=cols)
    return pf.read_row_groups(groups, columns=cols)


# Dictionary-encoded data pages hold bit-packed indices: a few bits a value, never more than
# four bytes. A text column whose dictionary outgrew its page limit falls back to plain pages
# (each value's bytes and length), which are more.
_DICTIONARY_BYTES_PER_VALUE = 4.0


def dictionary_columns(f: Footer, columns: Sequence[str]) -> list[str]:
    """The text columns among `columns` that the partition stores dictionary-encoded in
    every row group (a district, a gender: few distinct values). Read as dictionaries they
    decode ~5x faster, and filter and group as integers; a column of unique values (an ID
    number) is stored plain and read as text."""
    wanted = {c for c in columns if pa.types.is_string(f.schema.field(c).type)}
    if not wanted or f.metadata.num_row_groups == 0:
        return []
    out = []
    for i in range(f.metadata.num_columns):
        name = f.metadata.schema.column(i).path
        if name not in wanted:
            continue
        chunks = [f.metadata.row_group(g).column(i) for g in range(f.metadata.num_row_groups)]
        if all(
            c.has_dictionary_page
            and c.num_values
            and c.total_uncompressed_size / c.num_values <= _DICTIONARY_BYTES_PER_VALUE
            for c in chunks
        ):
            out.append(name)
    return out
