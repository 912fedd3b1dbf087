"""Trusted Arrow compute: evaluate a checked plan on one partition, then merge partials.

Aggregates are computed as mergeable partials per partition — a row count per group and,
per aggregate, a non-null count and a sum — so partitions can run anywhere (Ray tasks) and
be combined exactly. The counts double as contributor counts for disclosure control.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sandbox.engine.validate import CheckedPlan
from sandbox.errors import PlanError
from sandbox.language import plan as p

ROWS = "__rows"


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


def _bucket(values: pa.Array, edges: tuple[Any, ...]) -> pa.Array:
    arr = values.to_numpy(zero_copy_only=False).astype("float64")
    idx = np.searchsorted(np.asarray(edges, dtype="float64"), arr, side="right")
    labels = pa.array(_bucket_labels(edges))
    out = labels.take(pa.array(idx))
    return pc.if_else(pc.is_null(values), pa.scalar(None, pa.string()), out)


_BINARY = {
    "add": pc.add_checked, "sub": pc.subtract_checked, "mul": pc.multiply_checked,
    "eq": pc.equal, "ne": pc.not_equal, "lt": pc.less, "le": pc.less_equal,
    "gt": pc.greater, "ge": pc.greater_equal, "and": pc.and_kleene, "or": pc.or_kleene,
}


def evaluate(e: p.Expr, table: pa.Table) -> Any:
    if isinstance(e, p.Col):
        return table.column(e.name)
    if isinstance(e, p.Lit):
        return e.value
    args = e.args
    if e.fn in _BINARY:
        a, b = evaluate(args[0], table), evaluate(args[1], table)
        a, b = _lit(a, getattr(b, "type", None)), _lit(b, getattr(a, "type", None))
        return _BINARY[e.fn](a, b)
    if e.fn == "div":
        a, b = (pc.cast(evaluate(x, table), pa.float64()) if not isinstance(x, p.Lit)
                else float(x.value) if x.value is not None else None for x in args)
        return pc.divide(a, b)
    if e.fn == "neg":
        return pc.negate_checked(evaluate(args[0], table))
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
        values = [_lit(v, x.type) for v in args[1].value]  # type: ignore[union-attr]
        return pc.is_in(x, value_set=pa.array(values, type=x.type))
    if e.fn in ("year", "month"):
        return getattr(pc, e.fn)(evaluate(args[0], table))
    if e.fn == "startswith":
        return pc.starts_with(evaluate(args[0], table), pattern=args[1].value)  # type: ignore[union-attr]
    if e.fn == "endswith":
        return pc.ends_with(evaluate(args[0], table), pattern=args[1].value)  # type: ignore[union-attr]
    if e.fn == "bucket":
        col = _column(args[0], table)
        return _bucket(col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col,
                       args[1].value)  # type: ignore[union-attr]
    raise AssertionError(f"unchecked function {e.fn}")


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


def _steps(node: p.Node) -> list[p.Node]:
    out: list[p.Node] = []
    while not isinstance(node, p.Scan):
        out.append(node)
        node = node.input
    return out[::-1]


def _derive(step: p.Derive, table: pa.Table) -> pa.Table:
    """All expressions of one derive() see the table before it, as validation types them.

    Only the sources of columns used later are read, so a derived column whose sources were
    not read is unused: it is skipped (and a column it would replace is dropped)."""
    present = set(table.column_names)
    new = [(name, _as_column(evaluate(e, table), table.num_rows) if _columns_of(e) <= present
            else None) for name, e in step.columns]
    for name, col in new:
        i = table.schema.get_field_index(name)
        if col is None:
            table = table.remove_column(i) if i >= 0 else table
        else:
            table = table.set_column(i, name, col) if i >= 0 else table.append_column(name, col)
    return table


def partial(checked: CheckedPlan, path: str) -> pa.Table:
    """Partial aggregates of one partition: keys, __rows, and __n{i}/__s{i} per aggregate."""
    table = pq.read_table(path, columns=list(checked.scan_columns))
    rows_read = pq.ParquetFile(path).metadata.num_rows
    plan = checked.plan
    for step in _steps(plan)[:-1]:
        if isinstance(step, p.Filter):
            mask = _as_column(evaluate(step.predicate, table), table.num_rows)
            table = table.filter(pc.fill_null(mask, False))
        elif isinstance(step, p.Derive):
            table = _derive(step, table)
        elif isinstance(step, p.Select):
            # Columns not read are not used later (validation reads every used column's sources).
            table = table.select([c for c in step.columns if c in table.column_names])
    cols: dict[str, Any] = {k: table.column(k) for k in plan.keys}
    cols[ROWS] = pa.repeat(pa.scalar(1, pa.int64()), table.num_rows)
    specs: list[tuple[str, str]] = [(ROWS, "sum")]
    for i, (_, a) in enumerate(plan.aggs):
        if a.arg is None:
            continue
        v = _as_column(evaluate(a.arg, table), table.num_rows)
        if pa.types.is_integer(v.type):
            v = pc.cast(v, pa.int64())
        elif not pa.types.is_floating(v.type):
            v = pc.cast(v, pa.float64())
        if checked.clamp is not None and checked.clamp[i] is not None:
            v = _clamp(v, *checked.clamp[i])
        cols[f"__v{i}"] = v
        specs += [(f"__v{i}", "count"), (f"__v{i}", "sum")]
    # Single-threaded: a threaded hash aggregate sums floats in varying order, and a released
    # value must not change from one run to the next.
    grouped = pa.table(cols).group_by(list(plan.keys), use_threads=False).aggregate(specs)
    return _rename_partials(grouped, plan, rows_read)


def _clamp(values: pa.Array | pa.ChunkedArray, lower: float, upper: float) -> Any:
    """Values limited to [lower, upper], nulls kept: bounds each person's effect on a sum,
    which is what differential privacy's noise is calibrated to."""
    lo, hi = pa.scalar(lower, values.type), pa.scalar(upper, values.type)
    return pc.min_element_wise(pc.max_element_wise(values, lo, skip_nulls=False), hi,
                               skip_nulls=False)


def _rename_partials(grouped: pa.Table, plan: p.Aggregate, rows_read: int) -> pa.Table:
    names = []
    for n in grouped.column_names:
        if n.endswith("_count") and n.startswith("__v"):
            names.append("__n" + n[3:-6])
        elif n.endswith("_sum") and n.startswith("__v"):
            names.append("__s" + n[3:-4])
        elif n == f"{ROWS}_sum":
            names.append(ROWS)
        else:
            names.append(n)
    out = grouped.rename_columns(names)
    return out.replace_schema_metadata({"rows_read": str(rows_read)})


def rows_read(partials: list[pa.Table]) -> int:
    return sum(int((t.schema.metadata or {}).get(b"rows_read", b"0")) for t in partials)


def merge(checked: CheckedPlan, partials: list[pa.Table]) -> pa.Table:
    """Combine partials into final values plus per-cell contributor counts `__c:<name>`."""
    plan = checked.plan
    both = pa.concat_tables([t.replace_schema_metadata(None) for t in partials],
                            promote_options="permissive")
    value_cols = [c for c in both.column_names if c.startswith("__")]
    merged = both.group_by(list(plan.keys), use_threads=False).aggregate(
        [(c, "sum") for c in value_cols])
    merged = merged.rename_columns([c[:-4] if c.endswith("_sum") and c[:-4] in value_cols
                                    else c for c in merged.column_names])
    # An empty partition still yields one whole-table row whose sums are null: a count of 0.
    for c in value_cols:
        if c == ROWS or c.startswith("__n"):
            i = merged.schema.get_field_index(c)
            merged = merged.set_column(i, c, pc.fill_null(merged.column(c), 0))
    if plan.keys:
        merged = merged.sort_by([(k, "ascending") for k in plan.keys])
    out: dict[str, Any] = {k: merged.column(k) for k in plan.keys}
    for i, (name, a) in enumerate(plan.aggs):
        if a.fn == "count":
            out[name] = merged.column(ROWS)
            out[f"__c:{name}"] = merged.column(ROWS)
            continue
        n, s = merged.column(f"__n{i}"), merged.column(f"__s{i}")
        out[name] = s if a.fn == "sum" else pc.divide(pc.cast(s, pa.float64()), pc.cast(n, pa.float64()))
        out[f"__c:{name}"] = n
        if checked.clamp is not None:
            out[f"__s:{name}"] = s   # the exact sum, for a noisy mean; never released
    return pa.table(out)
