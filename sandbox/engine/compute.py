"""Trusted Arrow compute: evaluate a checked plan on one partition, then merge partials.

Aggregates are computed as mergeable partials per partition — a row count per group and,
per aggregate, a non-null count and a sum — so partitions can run anywhere (Ray tasks) and
be combined exactly. The counts double as contributor counts for disclosure control.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyroaring import BitMap64

from sandbox.catalog.models import ENTITY
from sandbox.engine import cache, internal, protection, prune
from sandbox.engine.validate import CheckedPlan
from sandbox.errors import DataUnavailable, PlanError
from sandbox.language import plan as p

T = TypeVar("T")


def _lit(value: Any, like: pa.DataType | None) -> Any:
    if isinstance(value, str) and like is not None and pa.types.is_date(like):
        try:
            return pa.scalar(dt.date.fromisoformat(value), like)
        except ValueError:
            raise PlanError(f"{value!r} is not an ISO date (YYYY-MM-DD)") from None
    return value


def _bucket_labels(edges: tuple[Any, ...]) -> list[str]:
    def fmt(x: Any) -> str:
        return str(int(x)) if float(x).is_integer() else str(x)

    labels = [f"< {fmt(edges[0])}"]
    labels += [f"[{fmt(a)}, {fmt(b)})" for a, b in zip(edges, edges[1:])]
    labels.append(f">= {fmt(edges[-1])}")
    return labels


# Up to this many edges a band is found by comparisons, beyond by binary search.
_COMPARED_EDGES = 12


def _bucket(values: pa.Array, edges: tuple[Any, ...]) -> pa.Array:
    """Each value's band label, as a dictionary of the labels (a band per row is an index,
    not a copy of its label's text, and it groups as an integer)."""
    arr = values.to_numpy(zero_copy_only=False).astype("float64")
    bounds = np.asarray(edges, dtype="float64")  # strictly increasing (engine.validate)
    if len(bounds) <= _COMPARED_EDGES:
        # A band is the number of edges at or below the value: one vectorised compare per
        # edge is three to four times faster than a binary search per value. NaN compares
        # false with every edge; searchsorted puts it past the last, and so does this.
        idx = np.zeros(len(arr), np.int32)
        for edge in bounds:
            idx += arr >= edge
        idx[np.isnan(arr)] = len(bounds)
    else:
        idx = np.searchsorted(bounds, arr, side="right").astype(np.int32)
    mask = values.is_null().to_numpy(zero_copy_only=False) if values.null_count else None
    return pa.DictionaryArray.from_arrays(
        pa.array(idx, pa.int32(), mask=mask), pa.array(_bucket_labels(edges), pa.string())
    )


_BINARY = {
    "eq": pc.equal,
    "ne": pc.not_equal,
    "lt": pc.less,
    "le": pc.less_equal,
    "gt": pc.greater,
    "ge": pc.greater_equal,
    "and": pc.and_kleene,
    "or": pc.or_kleene,
}


def plain(x: Any) -> Any:
    """`x` with dictionary-encoded text decoded to its values. Reads keep text columns of few
    distinct values as dictionaries, which compare, filter and group fast; kernels that
    have no dictionary version (prefix tests, extremes, distinct counts, joins) get plain
    values."""
    if isinstance(x, (pa.Array, pa.ChunkedArray)) and pa.types.is_dictionary(x.type):
        return pc.cast(x, x.type.value_type)
    return x


def plain_table(table: pa.Table) -> pa.Table:
    for i, f in enumerate(table.schema):
        if pa.types.is_dictionary(f.type):
            table = table.set_column(i, f.name, plain(table.column(i)))
    return table


def _param(e: p.Expr) -> Any:
    """The value of a function's literal parameter (a bucket's edges, a cast's kind, a
    prefix…): the plan's check admits only literals there, of the kind each function takes."""
    assert isinstance(e, p.Lit)
    return e.value


def _number(lit: p.Lit) -> float | None:
    # The plan's check admits only numbers (or null) as operands of arithmetic.
    assert not isinstance(lit.value, (str, tuple))
    return None if lit.value is None else float(lit.value)


def evaluate(e: p.Expr, table: pa.Table) -> Any:
    if isinstance(e, p.Col):
        return table.column(e.name)
    if isinstance(e, p.Lit):
        return e.value
    args = e.args
    if e.fn in _ARITHMETIC:
        a, b = (plain(evaluate(x, table)) for x in args)
        return _arithmetic(e.fn, a, b)
    if e.fn in _BINARY:
        a, b = evaluate(args[0], table), evaluate(args[1], table)
        if _is_column(a) and _is_column(b) and a.type != b.type:
            a, b = plain(a), plain(b)  # dictionary against text: compare the values
        a, b = _lit(a, getattr(b, "type", None)), _lit(b, getattr(a, "type", None))
        return _BINARY[e.fn](a, b)
    if e.fn == "div":
        a, b = (
            _as_double(plain(evaluate(x, table))) if not isinstance(x, p.Lit) else _number(x)
            for x in args
        )
        return finite(pc.divide(a, b))
    if e.fn == "neg":
        return _arithmetic("sub", 0, plain(evaluate(args[0], table)))
    if e.fn == "not":
        return pc.invert(evaluate(args[0], table))
    if e.fn == "is_null":
        return pc.is_null(evaluate(args[0], table))
    if e.fn == "between":
        x = _column(args[0], table)
        lo, hi = (_lit(evaluate(a, table), x.type) for a in args[1:])
        return pc.and_kleene(pc.greater_equal(x, lo), pc.less_equal(x, hi))
    if e.fn == "isin":
        x = _column(args[0], table)
        kind = x.type.value_type if pa.types.is_dictionary(x.type) else x.type
        values = [_lit(v, kind) for v in _param(args[1])]
        return pc.is_in(x, value_set=pa.array(values, type=kind))
    if e.fn in ("year", "month"):
        return _rowwise(getattr(pc, e.fn), _column(args[0], table))
    if e.fn == "years_until":
        return _years_until(*(evaluate(a, table) for a in args))
    if e.fn == "startswith":
        return pc.starts_with(plain(evaluate(args[0], table)), pattern=_param(args[1]))
    if e.fn == "endswith":
        return pc.ends_with(plain(evaluate(args[0], table)), pattern=_param(args[1]))
    if e.fn == "bucket":
        return _bucket(contiguous(_column(args[0], table)), _param(args[1]))
    if e.fn == "cast":
        return _cast(plain(_column(args[0], table)), _param(args[1]))
    if e.fn == "abs":
        x = plain(_column(args[0], table))
        if not pa.types.is_integer(x.type):
            return pc.abs(x)
        return pc.if_else(pc.less(x, 0), _arithmetic("sub", 0, x), x)
    if e.fn == "round":
        # Half away from zero, as SQL rounds; Arrow's default is half to even.
        digits = _param(args[1])
        return _rowwise(
            lambda x: pc.round(x, digits, round_mode="half_towards_infinity"),
            _column(args[0], table),
        )
    if e.fn == "case":
        return _case([plain(_column(a, table)) for a in args])
    raise AssertionError(f"unchecked function {e.fn}")


# Evaluation is total: whatever the data, an expression gives a value or null, never an error.
# Whether a job fails must not depend on a value that was never released (a filter that keeps
# one person, then an overflow or a failed cast, would be a one-bit oracle on that person), so
# what SQL engines turn into an error or null becomes null here, row by row.

# Integer results beyond this magnitude are null: int64 ends at ±9.22e18, and the check is
# made on the double-precision result, which is exact to well within the margin.
INT_LIMIT = 9.2e18
_ARITHMETIC = {"add": pc.add, "sub": pc.subtract, "mul": pc.multiply}
_NUMBER = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_WHOLE = r"^[+-]?[0-9]{1,18}$"


def _null_where(bad: Any, x: Any) -> Any:
    return pc.if_else(bad, pa.scalar(None, x.type), x)


def finite(x: Any) -> Any:
    """Floats with ±inf and NaN (overflow, 0/0, x/0) as null, as SQL engines give them."""
    if not pa.types.is_floating(x.type):
        return x
    return _null_where(pc.invert(pc.is_finite(x)), x)


def _as_double(x: Any) -> Any:
    if isinstance(x, (pa.Array, pa.ChunkedArray, pa.Scalar)):
        return pc.cast(x, pa.float64(), safe=False)
    return None if x is None else float(x)


def _arithmetic(fn: str, a: Any, b: Any) -> Any:
    """a + b, a − b or a × b: integers wrap in Arrow's unchecked kernels, so a result whose
    double-precision counterpart leaves int64's range is made null; floats that overflow to
    infinity are null too."""
    out = _ARITHMETIC[fn](a, b)
    if pa.types.is_integer(out.type):
        if _within(fn, _extent(a), _extent(b)):
            return out  # no row can overflow: skip the per-row check
        approx = _ARITHMETIC[fn](_as_double(a), _as_double(b))
        return _null_where(pc.greater(pc.abs(approx), INT_LIMIT), out)
    return finite(out)


def _extent(x: Any) -> tuple[int, int] | None:
    """The smallest and largest integer of an operand (None: unknown or empty)."""
    if isinstance(x, pa.Scalar):
        x = x.as_py()
    if isinstance(x, bool) or x is None:
        return None
    if isinstance(x, int):
        return x, x
    if isinstance(x, (pa.Array, pa.ChunkedArray)) and pa.types.is_integer(x.type):
        bounds = pc.min_max(x)
        lo, hi = bounds["min"].as_py(), bounds["max"].as_py()
        return None if lo is None else (lo, hi)
    return None


def _within(fn: str, a: tuple[int, int] | None, b: tuple[int, int] | None) -> bool:
    """Whether every result of a op b lies within INT_LIMIT (exact, in Python integers)."""
    if a is None or b is None:
        return False
    if fn == "add":
        ends = [a[0] + b[0], a[1] + b[1]]
    elif fn == "sub":
        ends = [a[0] - b[1], a[1] - b[0]]
    else:
        ends = [x * y for x in a for y in b]
    return max(abs(e) for e in ends) <= INT_LIMIT


def _rowwise(kernel: Any, x: Any) -> Any:
    """`kernel(x)`, with the rows it fails on as null: halves of the input are retried until
    the failing rows are found, so the cost is a few kernel calls per failing row."""
    try:
        return kernel(x)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        if not isinstance(x, (pa.Array, pa.ChunkedArray)) or len(x) <= 1:
            if isinstance(x, (pa.Array, pa.ChunkedArray)):
                return pa.nulls(len(x), kernel(x.slice(0, 0)).type)
            raise
        x = contiguous(x)
        half = len(x) // 2
        return pa.concat_arrays(
            [
                contiguous(_rowwise(kernel, x.slice(0, half))),
                contiguous(_rowwise(kernel, x.slice(half))),
            ]
        )


def _years_until(start: Any, end: Any) -> Any:
    """Whole years from `start` to `end` (an age at a date): the difference of their years,
    less one when `end` falls earlier in its year than `start` did. One of the two may be an
    ISO date literal; nulls give null."""
    start = _lit(start, pa.date32())
    end = _lit(end, pa.date32())
    years = pc.subtract(pc.year(end), pc.year(start))

    def day_of(x: Any) -> Any:
        return pc.add(pc.multiply(pc.month(x), 100), pc.day(x))

    earlier = pc.cast(pc.less(day_of(end), day_of(start)), pa.int64())
    return pc.subtract(years, earlier)


def _in_key_order(table: pa.Table, plan: p.Aggregate) -> pa.Table:
    """Groups in key order; a banded key (bucket()) in the order of its bands, from the
    lowest, not the text order of their labels ("[10000, …)" before "[2000, …)")."""
    order: list[tuple[str, str]] = []
    ranks: list[str] = []
    for k in plan.keys:
        edges = p.bucket_edges(plan.input, k)
        if edges is None:
            order.append((k, "ascending"))
            continue
        rank = f"{internal.PREFIX}band:{k}"
        labels = pa.array(_bucket_labels(edges), pa.string())
        table = table.append_column(
            rank, pc.index_in(pc.cast(plain(table.column(k)), pa.string()), value_set=labels)
        )
        order.append((rank, "ascending"))
        ranks.append(rank)
    return table.sort_by(order).drop_columns(ranks)


def _float_to_int(x: Any) -> Any:
    # To the nearest, halves to even, as SQL engines cast doubles (and Python rounds).
    x = pc.round(finite(x), 0, round_mode="half_to_even")
    return pc.cast(_null_where(pc.greater(pc.abs(x), INT_LIMIT), x), pa.int64())


def _text_to_float(x: Any) -> Any:
    return finite(
        pc.cast(_null_where(pc.invert(pc.match_substring_regex(x, _NUMBER)), x), pa.float64())
    )


def _cast(x: pa.Array | pa.ChunkedArray, kind: str) -> Any:
    if kind == "string":
        return pc.cast(x, pa.string())
    text = pa.types.is_string(x.type) or pa.types.is_large_string(x.type)
    if kind == "float":
        return _text_to_float(x) if text else _as_double(x)
    if text:
        whole = pc.fill_null(pc.match_substring_regex(x, _WHOLE), False)
        exact = pc.cast(_null_where(pc.invert(whole), x), pa.int64())
        return pc.coalesce(exact, _float_to_int(_text_to_float(_null_where(whole, x))))
    if pa.types.is_floating(x.type):
        return _float_to_int(x)
    return _rowwise(lambda v: pc.cast(v, pa.int64()), x)


def _case(args: list[pa.Array | pa.ChunkedArray]) -> Any:
    conditions = [pc.cast(c, pa.bool_()) for c in args[:-1:2]]
    values = [*args[1:-1:2], args[-1]]
    types = {v.type for v in values if not pa.types.is_null(v.type)}
    if len(types) > 1 and all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in types):
        target = pa.float64()
    elif any(pa.types.is_integer(t) for t in types):
        target = pa.int64()
    else:
        target = types.pop() if types else pa.null()
    values = [pc.cast(v, target, safe=False) for v in values]
    if any(isinstance(a, pa.ChunkedArray) for a in (*conditions, *values)):
        conditions = [contiguous(c) for c in conditions]
        values = [contiguous(v) for v in values]
    cond = pc.make_struct(*conditions, field_names=[f"c{i}" for i in range(len(conditions))])
    return pc.case_when(cond, *values)


def contiguous(x: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One array of a column's values, for kernels that take no chunked input."""
    if isinstance(x, pa.ChunkedArray):
        return x.combine_chunks() if x.num_chunks else pa.array([], x.type)
    return x


def _is_column(x: Any) -> bool:
    return isinstance(x, (pa.Array, pa.ChunkedArray))


def _as_column(value: Any, n: int) -> pa.Array | pa.ChunkedArray:
    if isinstance(value, (pa.Array, pa.ChunkedArray)):
        return value
    return pa.array([value] * n) if not isinstance(value, pa.Scalar) else pa.repeat(value, n)


def _column(e: p.Expr, table: pa.Table) -> pa.Array | pa.ChunkedArray:
    # Functions that need the argument's Arrow type also accept a literal in its place.
    return _as_column(evaluate(e, table), table.num_rows)


def _columns_of(e: p.Expr) -> set[str]:
    if isinstance(e, p.Col):
        return {e.name}
    if isinstance(e, p.Call):
        return set().union(*(_columns_of(a) for a in e.args))
    return set()


def _derive(step: p.Derive, table: pa.Table) -> pa.Table:
    """All expressions of one derive() see the table before it, as validation types them.

    Only the sources of columns used later are read, so a derived column whose sources were
    not read is unused: it is skipped (and a column it would replace is dropped)."""
    present = set(table.column_names)
    view = shadow_view(table) if _shadows(table) else None
    new = []
    for name, e in step.columns:
        used = _columns_of(e)
        col = _as_column(evaluate(e, table), table.num_rows) if used <= present else None
        traced = (
            view is not None
            and col is not None
            and any(internal.shadow(u) in present for u in used)
        )
        new.append((name, col, _as_column(evaluate(e, view), table.num_rows) if traced else None))
    for name, col, shadow in new:
        table = _put(table, name, col)
        table = _put(table, internal.shadow(name), shadow)
    return table


def _put(table: pa.Table, name: str, col: Any) -> pa.Table:
    """`table` with column `name` set to `col`, or removed when `col` is None."""
    i = table.schema.get_field_index(name)
    if col is None:
        return table.remove_column(i) if i >= 0 else table
    return table.set_column(i, name, col) if i >= 0 else table.append_column(name, col)


def read_partition(
    checked: CheckedPlan,
    scan: int,
    index: int,
    where: Sequence[p.Expr] = (),
    cached: bool = False,
    keep_bytes: int = 0,
) -> pa.Table:
    """Partition `index` of the plan's read number `scan`: only the columns the plan uses,
    and for the primary (left-most) table, when disclosure statistics are wanted, global
    row ids (the contributors of every cell are its rows).

    Row groups that cannot satisfy `where` (predicates on the read's own columns, which the
    caller still applies) are skipped; ids stay each row's true place in the file. `cached`:
    serve and keep the projected table in the object store's scan cache (engine.cache)."""
    read = checked.reads[scan]
    path = read.dataset.partitions[index]
    with _reading(read.dataset.name, path):
        f = prune.footer(path)
    groups = prune.row_groups(f, where)
    columns = list(read.columns)
    stored = checked.disclosure_stats and ENTITY in f.schema.names
    if stored:
        columns.append(ENTITY)
    if groups == []:
        table = f.schema.empty_table().select(columns)
    else:
        with _reading(read.dataset.name, path):
            table = _load(f, columns, groups, cached, keep_bytes)
    if not checked.disclosure_stats:
        return table
    if stored:
        table = table.rename_columns(
            [protection.entity(scan) if c == ENTITY else c for c in table.column_names]
        )
    else:
        table = protection.with_row_entities(
            table, scan, read.dataset.name, index, prune.positions(f, groups)
        )
    for column in checked.shadowed[scan] if checked.shadowed else ():
        if column in table.column_names:
            table = table.append_column(internal.shadow(column), perturbed(table.column(column)))
    return table


@contextmanager
def _reading(dataset: str, path: str) -> Iterator[None]:
    """A partition file that is gone or does not parse (or fails its page checksums) was
    lost or damaged on disk: a registered dataset's files never change, so this is the
    service's problem, never the job's."""
    try:
        yield
    except (OSError, pa.ArrowException) as exc:
        raise DataUnavailable.of(dataset, path, exc) from None


def perturbed(x: pa.Array | pa.ChunkedArray) -> Any:
    """Every value moved, by an amount no one would pick as a literal: x·φ + 7.3 (x·2 + 7 for
    integers, which stay integers)."""
    x = plain(x)
    if pa.types.is_integer(x.type):
        return _arithmetic("add", _arithmetic("mul", pc.cast(x, pa.int64()), 2), 7)
    return finite(pc.add(pc.multiply(pc.cast(x, pa.float64(), safe=False), 1.6180339887), 7.3))


def shadow_view(table: pa.Table) -> pa.Table:
    """`table` with each shadowed column's perturbed values in its place."""
    names = table.column_names
    present = set(names)
    return pa.Table.from_arrays(
        [
            table.column(internal.shadow(n)) if internal.shadow(n) in present else table.column(n)
            for n in names
        ],
        names=names,
    )


def _shadows(table: pa.Table) -> bool:
    return any(n.startswith(internal.SHADOW) for n in table.column_names)


def _load(
    f: prune.Footer,
    columns: Sequence[str],
    groups: list[int] | None,
    cached: bool,
    keep_bytes: int = 0,
) -> pa.Table:
    def load() -> pa.Table:
        return prune.read(f, columns, groups)

    # A table of no columns (a bare count) costs nothing to read, and would lose its row
    # count on the way through the object store.
    handle = cache.actor() if cached and columns else None
    if handle is None:
        return load()
    key = cache.ScanKey(
        f.path, f.mtime_ns, f.size, tuple(columns), None if groups is None else tuple(groups)
    )
    return cache.fetch(handle, key, load, keep_bytes=keep_bytes)


def apply_steps(steps: Sequence[p.Node], table: pa.Table) -> pa.Table:
    """Filter, derive and select steps, in order."""
    for step in steps:
        if isinstance(step, p.Filter):
            mask = _as_column(evaluate(step.predicate, table), table.num_rows)
            table = table.filter(pc.fill_null(mask, False))
        elif isinstance(step, p.Derive):
            table = _derive(step, table)
        elif isinstance(step, p.Select):
            # Columns not read are not used later (validation reads every used column's sources).
            keep = set(step.columns) | {internal.shadow(c) for c in step.columns}
            table = table.select(
                [c for c in table.column_names if c in keep or protection.is_entity(c)]
            )
        else:
            raise AssertionError(f"not a row step: {type(step).__name__}")
    return table


def partial_of(checked: CheckedPlan, table: pa.Table) -> pa.Table:
    """Partial aggregates of one partition of the plan's (filtered, derived, joined) table:
    keys, __rows, and per aggregate i the columns `_specs` names (__n{i} non-null count,
    __s{i} sum, __x{i} extreme, __m{i} squared deviations), __d{i} its distinct values and
    __q{i} all its values (lists), and the disclosure statistics (engine.protection).

    One hash aggregation gives the numbers and, per group, the positions of its rows; every
    per-row list is then gathered from those positions (a take each) rather than hashed
    again, and distinct values are found per group."""
    plan = checked.plan
    stats = checked.disclosure_stats
    cols: dict[str, Any] = {k: table.column(k) for k in plan.keys}
    cols[internal.ROWS] = pa.repeat(pa.scalar(1, pa.int64()), table.num_rows)
    if not plan.keys:
        # Arrow has no whole-table kernels for distinct values or lists: group by a constant.
        cols[internal.ALL] = pa.repeat(pa.scalar(0, pa.int8()), table.num_rows)
    specs: list[tuple[Any, ...]] = [(internal.ROWS, "sum")]
    names: dict[str, str] = {f"{internal.ROWS}_sum": internal.ROWS}
    values: dict[int, Any] = {}
    for i, (_, a) in enumerate(plan.aggs):
        if a.arg is None:
            continue
        v = values[i] = _value(checked, i, table)
        cols[f"__v{i}"] = v
        for fn, out, options in _specs(a.fn, i):
            specs.append((f"__v{i}", fn, options) if options is not None else (f"__v{i}", fn))
            names[f"__v{i}_{fn}"] = out
    listed = stats or any(a.fn in LISTED for _, a in plan.aggs)
    if listed:
        cols[internal.POSITIONS] = pa.array(np.arange(table.num_rows), pa.int64())
        specs.append((internal.POSITIONS, "list"))
    # Single-threaded: a threaded hash aggregate sums floats in varying order, and a released
    # value must not change from one run to the next. Dictionary keys group as integers once
    # every chunk shares one dictionary; the partial's keys are plain values.
    grouped = (
        pa.table(cols)
        .unify_dictionaries()
        .group_by(_group_keys(plan), use_threads=False)
        .aggregate(specs)
    )
    grouped = plain_table(grouped.rename_columns([names.get(n, n) for n in grouped.column_names]))
    if not listed:
        return grouped
    rows = contiguous(grouped.column(f"{internal.POSITIONS}_list"))
    grouped = grouped.drop_columns([f"{internal.POSITIONS}_list"])
    for i, (_, a) in enumerate(plan.aggs):
        if a.fn == "count_distinct":
            grouped = grouped.append_column(
                internal.partial_distinct(i), _distinct(values[i], rows)
            )
        elif a.fn == "quantile" and _value_list(checked, i) == i:
            grouped = grouped.append_column(internal.partial_values(i), _gather(values[i], rows))
    return _with_stats(checked, table, grouped, values, rows) if stats else grouped


# Aggregates whose partials hold lists of values per group.
LISTED = frozenset({"count_distinct", "quantile"})
# Each row's position in the partition's table: listed per group, the lists are gathered by.


def _value(checked: CheckedPlan, i: int, table: pa.Table) -> Any:
    """The values aggregate `i` aggregates: integers as int64, floats as float64, clamped
    when the release is differentially private."""
    a = checked.plan.aggs[i][1]
    assert a.arg is not None
    v = plain(_as_column(evaluate(a.arg, table), table.num_rows))
    if a.fn in p.CONDITIONAL:
        return _indicator(a.fn, v)
    if pa.types.is_integer(v.type):
        v = pc.cast(v, pa.int64(), safe=False)
    elif pa.types.is_floating(v.type) or pa.types.is_null(v.type):
        v = pc.cast(v, pa.float64(), safe=False)
    bounds = checked.clamp[i] if checked.clamp is not None else None
    if bounds is not None:
        v = _clamp(v, *bounds)
    if a.fn == "count_distinct" and pa.types.is_floating(v.type):
        # Arrow's hashes tell -0.0 from 0.0; SQL counts them as one value (+ 0.0 turns
        # -0.0 into 0.0 and leaves every other value as it is).
        v = pc.add(v, pa.scalar(0.0, v.type))
    return v


def _indicator(fn: str, condition: Any) -> Any:
    """A condition's rows as the values its aggregate sums: for count_if, 1 where it holds
    and null elsewhere (only those rows are counted, and only they contribute); for mean_of,
    1.0 where it holds and 0.0 elsewhere (every row is counted, those where it holds are the
    ones it tells about). A null condition does not hold."""
    holds = pc.fill_null(pc.cast(condition, pa.bool_()), False)
    if fn == "count_if":
        return pc.if_else(holds, pa.scalar(1, pa.int64()), pa.scalar(None, pa.int64()))
    return pc.if_else(holds, pa.scalar(1.0, pa.float64()), pa.scalar(0.0, pa.float64()))


def _gather(values: Any, rows: pa.ListArray) -> pa.ListArray:
    """Per group, the values of its rows in row order: what Arrow's hash "list" aggregate
    gives, from the groups' row positions."""
    taken = contiguous(values).take(rows.flatten())
    return pa.ListArray.from_arrays(_offsets(rows), taken)


def _offsets(lists: pa.ListArray) -> pa.Array:
    offsets = lists.offsets
    return pc.subtract(offsets, offsets[0]) if len(offsets) and offsets[0].as_py() else offsets


# Groups of at least this many rows on average have their distinct values hashed one group
# at a time (a small hash table per group, cheap per value, ~5 µs per call); with more,
# smaller groups, all (group, value) pairs are hashed in one aggregation instead.
ROWS_PER_GROUP_HASH = 128


def _distinct(values: Any, rows: pa.ListArray) -> pa.ListArray:
    """Per group (the positions of its rows), its distinct non-null values, as Arrow's hash
    "distinct" aggregate gives them but about twice as fast: each group's values hashed on
    their own when groups are large, else all (group, value) pairs in one aggregation."""
    taken = contiguous(values).take(rows.flatten())
    bounds = _offsets(rows).to_numpy().astype(np.int64)
    n_groups = len(bounds) - 1
    if n_groups * ROWS_PER_GROUP_HASH <= len(taken):
        uniques = [
            pc.unique(taken.slice(a, b - a)).drop_null()
            for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist())
        ]
        lengths = np.array([len(u) for u in uniques], np.int64)
        distinct = pa.concat_arrays(uniques) if uniques else taken.slice(0, 0)
    else:
        group = np.repeat(np.arange(n_groups), np.diff(bounds))
        pairs = pa.table({"g": group, "v": taken}).group_by(["g", "v"], use_threads=False)
        pairs = pairs.aggregate([]).filter(pc.is_valid(pc.field("v"))).sort_by("g")
        lengths = np.bincount(pairs.column("g").to_numpy(), minlength=n_groups)
        distinct = contiguous(pairs.column("v"))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), distinct)


def _with_stats(
    checked: CheckedPlan,
    table: pa.Table,
    grouped: pa.Table,
    values: dict[int, Any],
    rows: pa.ListArray,
) -> pa.Table:
    """The partial with its disclosure statistics (engine.protection): per group and read
    the entities in it, per aggregate who counts for it, and per magnitude aggregate its
    largest contributions."""
    plan = checked.plan
    stats = protection.PartialStats(
        table, len(checked.reads), rows, checked.unique, dict(checked.unmatched)
    )
    stats.groups()
    view = shadow_view(table) if checked.tainted and _shadows(table) else None
    for i, (_, a) in enumerate(plan.aggs):
        if a.arg is None:
            continue
        v = values[i]
        counted = pc.is_valid(v)
        if i in checked.tainted and view is not None:
            moved = _value(checked, i, view)
            changed = pc.or_kleene(pc.not_equal(plain(v), plain(moved)), pc.is_null(moved))
            counted = pc.and_(counted, pc.fill_null(changed, True))
        mask = contiguous(counted).to_numpy(zero_copy_only=False).astype(bool)
        for j in checked.matched_only[i] if checked.matched_only else ():
            mask &= protection.matched(table, j)
        if i in checked.tainted or not checked.unique:
            stats.contributors(i, mask)
        if a.fn in p.MAGNITUDES or a.fn in p.CONDITIONAL:  # numbers (engine.validate)
            numbers = _floats(v)
            stats.nonzero(i, mask & (numbers != 0))
            if a.fn in ("sum", "mean"):
                stats.magnitudes(i, np.where(mask, numbers, 0.0))
            elif a.fn in ("var", "std"):
                stats.extremes(i, numbers, mask)
    for name, column in stats.columns.items():
        grouped = grouped.append_column(name, column)
    return grouped


def _group_keys(plan: p.Aggregate) -> list[str]:
    return list(plan.keys) or [internal.ALL]


def _specs(fn: str, i: int) -> list[tuple[str, str, Any]]:
    """Arrow aggregations of one partition for aggregate `fn` number `i`: (kernel, partial
    column, options)."""
    count = ("count", internal.partial_count(i), None)
    if fn == "count_if":
        return [count]
    if fn in ("sum", "mean", "mean_of"):
        return [count, ("sum", internal.partial_sum(i), None)]
    if fn in ("var", "std"):
        return [
            count,
            ("sum", internal.partial_sum(i), None),
            ("variance", internal.partial_m2(i), pc.VarianceOptions(ddof=0)),
        ]
    if fn in ("min", "max"):
        return [count, (fn, internal.partial_extreme(i), None)]
    if fn == "count_distinct":
        return []  # __d{i}: gathered after the aggregation
    if fn == "quantile":
        return [count]  # and __q{i}, gathered after the aggregation
    raise AssertionError(f"unchecked aggregate {fn}")


def _value_list(checked: CheckedPlan, i: int) -> int:
    """The aggregate whose `__q` list quantile number `i` reads: the first quantile of the
    same values (a median and a p90 of one column share one list per partition)."""

    def values(j: int) -> tuple[str, Any]:
        # repr, not ==: Lit(1) == Lit(True), yet they evaluate to different types.
        return repr(checked.plan.aggs[j][1].arg), checked.clamp[j] if checked.clamp else None

    return next(
        j
        for j, (_, a) in enumerate(checked.plan.aggs)
        if a.fn == "quantile" and values(j) == values(i)
    )


def _clamp(values: pa.Array | pa.ChunkedArray, lower: float, upper: float) -> Any:
    """Values limited to [lower, upper], nulls kept: bounds each person's effect on a sum,
    which is what differential privacy's noise is calibrated to."""
    lo, hi = pa.scalar(lower, values.type), pa.scalar(upper, values.type)
    return pc.min_element_wise(
        pc.max_element_wise(values, lo, skip_nulls=False), hi, skip_nulls=False
    )


def merge(checked: CheckedPlan, partials: list[pa.Table]) -> pa.Table:
    """Combine partials into final values plus per-cell contributor counts `__c:<name>`."""
    plan = checked.plan
    keys = _group_keys(plan)
    both = pa.concat_tables(
        [t.replace_schema_metadata(None) for t in partials], promote_options="permissive"
    )
    summed = [c for c in both.column_names if internal.summed_partial(c)]
    extremes = [
        (internal.partial_extreme(i), a.fn)
        for i, (_, a) in enumerate(plan.aggs)
        if a.fn in ("min", "max")
    ]
    numbered = both.append_column(
        internal.PARTIAL_ROW, pa.array(np.arange(both.num_rows), pa.int64())
    )
    merged = numbered.group_by(keys, use_threads=False).aggregate(
        [(c, "sum") for c in summed] + list(extremes) + [(internal.PARTIAL_ROW, "list")]
    )
    merged = merged.rename_columns(
        [_strip_kernel(c, summed, extremes) for c in merged.column_names]
    )
    if not plan.keys and merged.num_rows == 0:
        # No partition had a row: a whole-table aggregate is still one row, of count 0.
        merged = pa.table(
            {c: pa.nulls(1, merged.schema.field(c).type) for c in merged.column_names}
        )
    # An empty partition still yields one whole-table row whose sums are null: a count of 0.
    for c in summed:
        if internal.counted_partial(c):
            i = merged.schema.get_field_index(c)
            merged = merged.set_column(i, c, pc.fill_null(merged.column(c), 0))
    if plan.keys:
        merged = _in_key_order(merged, plan)
    groups = Groups.of(merged.column(f"{internal.PARTIAL_ROW}_list"), both.num_rows)
    out: dict[str, Any] = {k: merged.column(k) for k in plan.keys}
    quantiles = _merge_quantiles(checked, both, groups)
    for i, (name, a) in enumerate(plan.aggs):
        if a.fn == "count":
            out[name] = merged.column(internal.ROWS)
            out[internal.contributors(name)] = merged.column(internal.ROWS)
            continue
        if a.fn == "count_distinct":
            out[name] = _merge_distinct(both.column(internal.partial_distinct(i)), groups)
            out[internal.contributors(name)] = merged.column(internal.ROWS)
            continue
        n = merged.column(internal.partial_count(i))
        if a.fn == "count_if":
            out[name] = n
        elif a.fn in ("sum", "mean", "mean_of"):
            s = merged.column(internal.partial_sum(i))
            out[name] = (
                s
                if a.fn == "sum"
                else pc.divide(pc.cast(s, pa.float64(), safe=False), pc.cast(n, pa.float64()))
            )
            if checked.clamp is not None:
                out[internal.exact_sum(name)] = s  # the exact sum, for a noisy mean; never released
        elif a.fn in ("min", "max"):
            out[name] = merged.column(internal.partial_extreme(i))
        elif a.fn in ("var", "std"):
            out[name], mean, squares = _merge_variance(both, i, groups, a.fn == "std")
            if checked.disclosure_stats:
                out.update(protection.merge_deviations(both, i, name, list(groups), mean, squares))
        else:
            assert a.param is not None
            out[name] = quantiles[i]
        out[internal.contributors(name)] = n
    if checked.disclosure_stats:
        out.update(_merge_stats(checked, both, groups, out, quantiles))
    table = pa.table(out)
    return _mark_coarsened(table, checked.coarsen)


def merge_all(
    checked: CheckedPlan, partials: list[pa.Table]
) -> tuple[pa.Table, tuple[tuple[str, ...], ...]]:
    """The plan's groups, then the margins its totals and shares need (plan.margin_sets),
    each merged from the same partials (no second read), with None in the keys a margin
    adds up over. Also, per row, the keys it is grouped by; () when there are no margins."""
    table = merge(checked, partials)
    plan = checked.plan
    sets = p.margin_sets(plan)
    if not sets and all(a.within is None for _, a in plan.aggs):
        return table, ()
    groupings: list[tuple[str, ...]] = [plan.keys] * table.num_rows
    parts = [table]
    plain_aggs = tuple((n, dataclasses.replace(a, within=None)) for n, a in plan.aggs)
    for keys in sets:
        coarser = dataclasses.replace(plan, keys=keys, totals=None, aggs=plain_aggs)
        inputs = partials if keys else [_with_one_group(t) for t in partials]
        margin = merge(dataclasses.replace(checked, plan=coarser), inputs)
        for k in plan.keys:
            if k not in keys:
                kind = table.schema.field(k).type
                margin = margin.append_column(pa.field(k, kind), pa.nulls(margin.num_rows, kind))
        parts.append(margin.select(table.column_names).cast(table.schema))
        groupings += [keys] * margin.num_rows
    return pa.concat_tables(parts), tuple(groupings)


def _with_one_group(partial: pa.Table) -> pa.Table:
    """A grouped partial whose rows all belong to the whole table's one group."""
    return partial.append_column(internal.ALL, pa.repeat(pa.scalar(0, pa.int8()), partial.num_rows))


@dataclass(frozen=True)
class Groups:
    """Which partial rows (rows of the concatenated partials) make up each merged group:
    group g's are `rows[bounds[g]:bounds[g + 1]]`, in partition order, so that merges that
    depend on order (float sums) give the same result every run."""

    rows: np.ndarray
    bounds: np.ndarray

    @staticmethod
    def of(members: pa.ChunkedArray | pa.ListArray, n_rows: int) -> Groups:
        """From one list of partial row numbers per merged group (a null list: no rows)."""
        lists = contiguous(members)
        group = np.zeros(n_rows, np.int64)
        group[lists.flatten().to_numpy()] = pc.list_parent_indices(lists).to_numpy()
        counts = np.bincount(group, minlength=len(lists))
        # Stable: within a group, rows stay in their (partition) order.
        return Groups(
            np.argsort(group, kind="stable"),
            np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        )

    def __len__(self) -> int:
        return len(self.bounds) - 1

    def __iter__(self) -> Iterator[np.ndarray]:
        for a, b in zip(self.bounds[:-1].tolist(), self.bounds[1:].tolist()):
            yield self.rows[a:b]

    def ranks(self) -> tuple[np.ndarray, np.ndarray]:
        """Per entry of `rows`: its group and its place within the group (0 = first)."""
        counts = np.diff(self.bounds)
        group = np.repeat(np.arange(len(self)), counts)
        return group, np.arange(len(self.rows)) - np.repeat(self.bounds[:-1], counts)


def _list_values(
    column: pa.ChunkedArray, drop_nulls: bool = False
) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """The values of a list column (one list per partial row) and each row's [start, end)
    in them; a null list is empty. `drop_nulls`: without the null values."""
    lists = contiguous(column)
    offsets = lists.offsets.to_numpy().astype(np.int64)
    starts, ends = offsets[:-1], offsets[1:]
    if lists.null_count:
        ends = np.where(pc.is_valid(lists).to_numpy(zero_copy_only=False), ends, starts)
    values = lists.values
    if drop_nulls and values.null_count:
        valid = pc.is_valid(values)
        kept = np.concatenate([[0], np.cumsum(valid.to_numpy(zero_copy_only=False))])
        starts, ends, values = kept[starts], kept[ends], values.filter(valid)
    return values, starts, ends


def _merge_distinct(column: pa.ChunkedArray, groups: Groups) -> pa.Array:
    """Distinct non-null values per group, counted by Arrow's hash over the partitions'
    distinct values of the group (no Python object per value)."""
    values, starts, ends = _list_values(column)
    counts = []
    for rows in groups:
        pieces = [values.slice(a, b - a) for a, b in zip(starts[rows], ends[rows])]
        # One contiguous array: Arrow counts it three times faster than the same chunks.
        counts.append(
            pc.count_distinct(pa.concat_arrays(pieces), mode="only_valid").as_py() if pieces else 0
        )
    return pa.array(counts, pa.int64())


def _merge_variance(
    both: pa.Table, i: int, groups: Groups, root: bool
) -> tuple[pa.Array, list[float | None], list[float]]:
    """Chan et al.'s pairwise update of (count, mean, squared deviations): exact for the
    partition means, without the cancellation of a sum of squares. Each group takes its
    partitions in order, the same float operations one after the other for every run; the
    groups are updated side by side, one partition rank at a time. Also returns each group's
    mean and sum of squared deviations (for the dominance rule)."""
    counts = both.column(internal.partial_count(i)).fill_null(0).to_numpy().astype(np.int64)
    sums = _floats(both.column(internal.partial_sum(i)))
    m2s = _floats(both.column(internal.partial_m2(i)))
    n = np.zeros(len(groups), np.int64)
    mean = np.zeros(len(groups))
    m2 = np.zeros(len(groups))
    group, rank = groups.ranks()
    for r in range(int(rank.max()) + 1 if len(rank) else 0):
        at = rank == r
        rows, g = groups.rows[at], group[at]
        some = counts[rows] > 0
        rows, g = rows[some], g[some]
        nb = counts[rows]
        mean_b, m2_b = sums[rows] / nb, m2s[rows] * nb
        total = n[g] + nb
        delta = mean_b - mean[g]
        mean[g] = mean[g] + delta * nb / total
        m2[g] = m2[g] + (m2_b + delta * delta * n[g] * nb / total)
        n[g] = total
    enough = n >= 2
    variance = np.divide(m2, n - 1, out=np.zeros(len(groups)), where=enough)
    return (
        pa.array(np.sqrt(variance) if root else variance, pa.float64(), mask=~enough),
        [float(x) if k else None for x, k in zip(mean, n > 0)],
        m2.tolist(),
    )


def _floats(column: pa.ChunkedArray) -> np.ndarray:
    """A numeric column as doubles, nulls as 0 (as Python's float() converts each value)."""
    values = contiguous(column)
    if pa.types.is_null(values.type):
        return np.zeros(len(values))
    floats: np.ndarray = values.fill_null(0).to_numpy(zero_copy_only=False).astype(np.float64)
    return floats


# A quantile's values by aggregate number i, and ("stats", i) for its window's statistics.
QuantileKey = int | tuple[str, int]


def _merge_quantiles(
    checked: CheckedPlan, both: pa.Table, groups: Groups
) -> dict[QuantileKey, Any]:
    """Quantiles per group, by aggregate number, from the partitions' value lists: a group's
    values are copied together once per list and only the order statistics its quantiles
    need are selected (np.partition, linear time), not the whole group sorted. With a
    `quantile_window`, each is the mean of that many order statistics around its position,
    and ("stats", i) holds the window's largest values and total for the dominance rule."""
    by_list: dict[int, list[int]] = {}
    for i, (_, a) in enumerate(checked.plan.aggs):
        if a.fn == "quantile":
            by_list.setdefault(_value_list(checked, i), []).append(i)
    out: dict[QuantileKey, Any] = {}
    for j, aggs in by_list.items():
        qs = [_level(checked.plan.aggs[i][1]) for i in aggs]
        column = both.column(internal.partial_values(j))
        if checked.quantile_window:
            names = [checked.plan.aggs[i][0] for i in aggs]
            windowed = _windowed(column, groups, qs, names, checked.quantile_window)
            for i, (means, stats) in zip(aggs, windowed):
                out[i], out[("stats", i)] = means, stats
            continue
        for i, values in zip(aggs, _quantiles(column, groups, qs)):
            out[i] = values
    return out


def _group_values(column: pa.ChunkedArray, groups: Groups) -> Iterator[np.ndarray]:
    """Each group's non-null values, from the partitions' lists (a copy per group)."""
    values, starts, ends = _list_values(column, drop_nulls=True)
    flat = values.to_numpy(zero_copy_only=False)
    if flat.dtype == object:  # decimals: ordered as their nearest doubles
        flat = flat.astype(np.float64)
    for rows in groups:
        pieces = [flat[a:b] for a, b in zip(starts[rows], ends[rows])]
        yield np.concatenate(pieces) if pieces else flat[:0].copy()


def _level(a: p.Agg) -> float:
    # Agg itself checks that a quantile has its level, a number between 0 and 1.
    assert a.param is not None
    return a.param


def _quantiles(column: pa.ChunkedArray, groups: Groups, qs: list[Any]) -> list[pa.Array]:
    out = np.zeros((len(qs), len(groups)))
    known = np.zeros(len(groups), bool)

    def of(selected: np.ndarray) -> list[float] | None:
        return quantiles_of(selected, qs) if selected.size else None

    for g, found in enumerate(_per_group(of, column, groups)):
        if found is not None:
            out[:, g], known[g] = found, True
    return [pa.array(row, pa.float64(), mask=~known) for row in out]


# From this many values in all groups, groups are selected on several threads (numpy's
# selection releases the interpreter): q4's 7 M incomes, 90 → 50 ms on two cores. Below it,
# a thread's hand-over costs more than it saves.
PARALLEL_MIN_VALUES = 1_000_000
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _per_group(fn: Callable[[np.ndarray], T], column: pa.ChunkedArray, groups: Groups) -> list[T]:
    """`fn` of each group's values (`_group_values`), in the groups' order; on a few threads
    when the values are many. Each call gets a copy of its own to reorder."""
    values = _group_values(column, groups)
    if sum(len(c.flatten()) for c in column.chunks) < PARALLEL_MIN_VALUES:
        return [fn(v) for v in values]
    return list(_threads().map(fn, values))


def _threads() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(
                max_workers=max(1, min(4, os.cpu_count() or 1)), thread_name_prefix="quantiles"
            )
        return _pool


def _windowed(
    column: pa.ChunkedArray, groups: Groups, qs: list[float], names: list[str], size: int
) -> list[tuple[pa.Array, dict[str, pa.Array]]]:
    """Per quantile of one value list, each group's window mean and the window's statistics
    for the dominance rule; every group's values are gathered once for all the quantiles,
    and only the windows' ends are selected (linear time; sorting the whole group was three
    times slower on a group of 175 000 incomes)."""

    def of(selected: np.ndarray) -> list[tuple[float | None, list[float], float]]:
        # The group's values are a copy of their own already (`_group_values`), reordered
        # here in place. Integers are selected as they are (every one finite, and ordered
        # as the doubles they become); only each window becomes doubles, not the group.
        if selected.dtype.kind not in "iu":
            # Infinities and NaN out first: a window is taken among finite values only.
            selected = selected.astype(np.float64, copy=False)
            finite = np.isfinite(selected)
            if not finite.all():
                selected = selected[finite]
        found = []
        for near in protection.windows(selected, qs, size):
            # The window's members in order: its mean is then summed in one order whatever
            # the order the selection left them in, so a release repeats exactly.
            near = np.sort(near).astype(np.float64, copy=False)
            magnitude = np.abs(near)
            found.append(
                (
                    float(near.mean()) if near.size else None,
                    sorted(magnitude.tolist(), reverse=True)[:2],
                    float(magnitude.sum()),
                )
            )
        return found

    per_group = _per_group(of, column, groups)
    return [
        (
            pa.array([g[k][0] for g in per_group], pa.float64()),
            {
                protection.top(0, name): pa.array(
                    [g[k][1] for g in per_group], pa.list_(pa.float64())
                ),
                protection.MASS + name: pa.array([g[k][2] for g in per_group], pa.float64()),
            },
        )
        for k, name in enumerate(names)
    ]


def quantiles_of(values: np.ndarray, qs: Sequence[float]) -> list[float]:
    """quantile_cont of unordered values at each of `qs`, reordering `values` in place:
    only the values at the two ranks around each position q·(n−1) are put in their sorted
    places, which is all that quantile_cont reads (NaN ranks last, as in SQL engines)."""
    positions = [q * (len(values) - 1) for q in qs]
    values.partition(sorted({r for x in positions for r in (math.floor(x), math.ceil(x))}))
    return [quantile_cont(values, q) for q in qs]


def quantile_cont(ordered: Sequence[Any] | np.ndarray, q: float) -> float:
    """Linear interpolation between the two values nearest position q·(n−1), as SQL's
    quantile_cont."""
    position = q * (len(ordered) - 1)
    lo, hi = math.floor(position), math.ceil(position)
    if lo == hi:
        return float(ordered[lo])
    d = position - lo
    return float(ordered[lo]) * (1.0 - d) + float(ordered[hi]) * d


def _merge_stats(
    checked: CheckedPlan,
    both: pa.Table,
    groups: Groups,
    out: dict[str, Any],
    quantiles: dict[QuantileKey, Any],
) -> dict[str, Any]:
    """Per released row, the entities of each read in it; per cell, its contributors (the
    fewest counted entities over the reads); per magnitude aggregate, its largest
    contributions (see engine.protection)."""
    plan, reads, members = checked.plan, len(checked.reads), list(groups)
    unions = protection.Unions(both, members)
    stats = protection.merge_groups(unions, reads)
    for i, (name, a) in enumerate(plan.aggs):
        if a.arg is None:
            if not checked.unique:
                sizes = [
                    [len(BitMap64.deserialize(b)) for b in stats[protection.ids(j)].to_pylist()]
                    for j in range(reads)
                ]
                stats[internal.contributors(name)] = pa.array(
                    [min(c) for c in zip(*sizes)], pa.int64()
                )
            continue
        if i in checked.tainted:
            stats[internal.valued(name)] = out[internal.contributors(name)]
        stats[internal.contributors(name)] = protection.merge_contributors(
            both, unions, i, reads, members, out[internal.contributors(name)]
        )
        if checked.matched_only and checked.matched_only[i]:
            stats.update(protection.merge_matched(unions, i, name, sorted(checked.matched_only[i])))
        if a.fn in p.MAGNITUDES or a.fn in p.CONDITIONAL:
            stats.update(protection.merge_nonzero(unions, i, name, reads))
        if a.fn in ("sum", "mean"):
            stats.update(protection.merge_magnitudes(both, i, name, reads, members))
        elif ("stats", i) in quantiles:
            stats.update(quantiles[("stats", i)])
    return stats


def _strip_kernel(name: str, summed: list[str], extremes: list[tuple[str, str]]) -> str:
    for column, kernel in [*((c, "sum") for c in summed), *extremes]:
        if name == f"{column}_{kernel}":
            return column
    return name


COARSEN_DIGITS = 2


def _mark_coarsened(table: pa.Table, names: tuple[str, ...]) -> pa.Table:
    """Columns disclosure control must round before release, marked in the field metadata
    so the mark travels with the table."""
    if not names:
        return table
    fields = [
        f.with_metadata({internal.COARSEN_KEY: str(COARSEN_DIGITS).encode()})
        if f.name in names
        else f
        for f in table.schema
    ]
    return table.cast(pa.schema(fields))
