"""Tables a job builds from what was released to it: sorted, cut, pivoted, lagged, or written
row by row with `emit_table`.

Everything here is post-processing of released cells inside the job's own process, so it
reveals nothing the release did not: a cell computed from a suppressed cell is suppressed
too, and stays None. The driver checks a derived table's shape again (it comes from the
untrusted process) and marks it derived in the job's record and its disclosure report.

A table body is the released-table JSON: columns [{name, type}], rows [[…]], suppressed
[[row, column]]; a derived one also says "derived": true.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sandbox.errors import PlanError

# A derived table is a summary too: at most as many rows as a release, and small cells.
MAX_ROWS = 10_000
MAX_COLUMNS = 200
MAX_TEXT = 10_000
NAME_CHARS = 128
# The Arrow type names a derived column may announce (as released tables spell them).
TYPES = ("int64", "double", "string", "bool", "date32[day]", "null")

Body = dict[str, Any]


def _hidden(body: Mapping[str, Any]) -> set[tuple[int, str]]:
    return {(int(i), str(c)) for i, c in body.get("suppressed", [])}


def _names(body: Mapping[str, Any]) -> list[str]:
    return [c["name"] for c in body["columns"]]


def _index(body: Mapping[str, Any], column: Any, what: str) -> int:
    names = _names(body)
    if not isinstance(column, str) or column not in names:
        raise PlanError(f"{what}: no column {column!r}; columns: {', '.join(names)}")
    return names.index(column)


def _make(
    columns: list[dict[str, Any]],
    rows: list[list[Any]],
    hidden: set[tuple[int, str]],
    margins: list[int] | None = None,
) -> Body:
    body: Body = {
        "kind": "table",
        "columns": columns,
        "rows": rows,
        "suppressed": sorted([i, c] for i, c in hidden),
        "derived": True,
    }
    if margins:
        body["margins"] = sorted(margins)
    return body


def sort(body: Mapping[str, Any], column: str, descending: bool = False) -> Body:
    """Rows ordered by one column; None (suppressed or missing) last either way."""
    at = _index(body, column, "sort()")
    rows = list(enumerate(body["rows"]))
    present = [(i, r) for i, r in rows if r[at] is not None]
    absent = [(i, r) for i, r in rows if r[at] is None]
    try:
        present.sort(key=lambda ir: ir[1][at], reverse=bool(descending))
    except TypeError:
        raise PlanError(f"sort(): column {column!r} mixes values that cannot be ordered") from None
    return _reordered(body, [i for i, _ in present + absent])


def head(body: Mapping[str, Any], n: int = 5) -> Body:
    """The first `n` rows."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise PlanError("head(n) takes a whole number of rows, 0 or more")
    return _reordered(body, list(range(min(n, len(body["rows"])))))


def _reordered(body: Mapping[str, Any], order: list[int]) -> Body:
    hidden = _hidden(body)
    place = {old: new for new, old in enumerate(order)}
    return _make(
        [dict(c) for c in body["columns"]],
        [list(body["rows"][i]) for i in order],
        {(place[i], c) for i, c in hidden if i in place},
        [place[int(i)] for i in body.get("margins", []) if int(i) in place],
    )


def pivot(body: Mapping[str, Any], index: str, columns: str, values: str) -> Body:
    """One row per value of `index`, one column per value of `columns` (in the order they
    first appear), holding `values`; a combination absent from the table is None. Totals
    (with_totals()) become a "total" column and a total row (listed in `margins`)."""
    at_i, at_c, at_v = (_index(body, x, "pivot()") for x in (index, columns, values))
    hidden = _hidden(body)
    margins = {int(i) for i in body.get("margins", [])}
    keys: list[Any] = []
    heads: list[Any] = []
    cells: dict[tuple[Any, Any], tuple[Any, bool]] = {}
    for n, row in enumerate(body["rows"]):
        key, head_ = row[at_i], row[at_c]
        if n in margins:
            key = _TOTAL if key is None else key
            head_ = _TOTAL if head_ is None else head_
        if key not in keys:
            keys.append(key)
        if head_ not in heads:
            heads.append(head_)
        if (key, head_) in cells:
            raise PlanError(
                f"pivot(): more than one row for {index}={key!r}, {columns}={head_!r}; "
                "aggregate them first so each pair appears once"
            )
        cells[(key, head_)] = (row[at_v], (n, values) in hidden)
    names = [TOTAL_NAME if h is _TOTAL else str(h) for h in heads]
    if len(set(names)) != len(names) or index in names:
        raise PlanError(f"pivot(): the values of {columns!r} do not make distinct column names")
    value_type = body["columns"][at_v]["type"]
    out_columns = [dict(body["columns"][at_i])] + [{"name": n, "type": value_type} for n in names]
    out_hidden: set[tuple[int, str]] = set()
    rows = []
    for r, key in enumerate(keys):
        row = [None if key is _TOTAL else key]
        for h, name in zip(heads, names):
            value, was_hidden = cells.get((key, h), (None, False))
            row.append(value)
            if was_hidden:
                out_hidden.add((r, name))
        rows.append(row)
    totals = [r for r, key in enumerate(keys) if key is _TOTAL]
    return _make(out_columns, rows, out_hidden, totals)


# A key a total row adds up over, apart from a group whose key is null; its column's name.
_TOTAL = object()
TOTAL_NAME = "total"


def lag(
    body: Mapping[str, Any],
    column: str,
    periods: int = 1,
    name: str | None = None,
    by: str | None = None,
) -> Body:
    """A new column holding `column` from `periods` rows earlier (within the rows of the same
    `by` value, when given); None where there is none."""
    label = name or f"{column}_lag{periods}"
    return _shifted(body, column, periods, label, lambda _, b: b, None, by)


def pct_change(
    body: Mapping[str, Any],
    column: str,
    periods: int = 1,
    name: str | None = None,
    by: str | None = None,
) -> Body:
    """A new column: the fractional change of `column` from `periods` rows earlier (within
    the rows of the same `by` value, when given); None where either value is missing or the
    earlier one is 0."""

    def change(now: Any, before: Any) -> Any:
        if not _number(now) or not _number(before) or before == 0:
            return None
        result = (now - before) / before
        return result if math.isfinite(result) else None

    return _shifted(body, column, periods, name or f"{column}_pct_change", change, "double", by)


def _shifted(
    body: Mapping[str, Any],
    column: str,
    periods: int,
    name: str,
    combine: Callable[[Any, Any], Any],
    kind: str | None,
    by: str | None,
) -> Body:
    """`body` with a column computed from each row and the row `periods` before it among the
    rows of its `by` group (all rows when None); typed `kind`, or as `column` when None."""
    at = _index(body, column, "lag()/pct_change()")
    group = _index(body, by, "by=") if by is not None else None
    if isinstance(periods, bool) or not isinstance(periods, int) or periods < 1:
        raise PlanError("periods must be a whole number of rows, 1 or more")
    _check_name(name)
    if name in _names(body):
        raise PlanError(f"the table already has a column {name!r}; pass name= to choose another")
    hidden = _hidden(body)
    out_hidden = set(hidden)
    rows = []
    seen: dict[Any, list[int]] = {}
    for r, row in enumerate(body["rows"]):
        earlier = seen.setdefault(None if group is None else row[group], [])
        before = earlier[-periods] if len(earlier) >= periods else -1
        earlier.append(r)
        value = None
        if before >= 0:
            value = combine(row[at], body["rows"][before][at])
            if (r, column) in hidden or (before, column) in hidden:
                value = None
                out_hidden.add((r, name))
        rows.append([*row, value])
    kind = kind or body["columns"][at]["type"]
    return _make([*map(dict, body["columns"]), {"name": name, "type": kind}], rows, out_hidden)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def build(columns: Any, rows: Any) -> Body:
    """`emit_table(name, columns=[…], rows=[…])`: a table written in the job, row by row,
    each column typed by the values it holds."""
    if not isinstance(columns, (list, tuple)) or not columns:
        raise PlanError("emit_table() needs columns=[…], a list of column names")
    names = list(columns)
    for n in names:
        _check_name(n)
    if len(set(names)) != len(names):
        raise PlanError("emit_table(): column names must be distinct")
    if not isinstance(rows, (list, tuple)):
        raise PlanError("emit_table() needs rows=[…], a list of rows, each a list of values")
    out = []
    for r, row in enumerate(rows):
        if not isinstance(row, (list, tuple)) or len(row) != len(names):
            raise PlanError(f"emit_table(): row {r} must be a list of {len(names)} values")
        out.append(list(row))
    types = [_type_of([row[i] for row in out]) for i in range(len(names))]
    body = _make([{"name": n, "type": t} for n, t in zip(names, types)], out, set())
    check(body)
    return body


def _type_of(values: Sequence[Any]) -> str:
    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return "null"
    if kinds == {bool}:
        return "bool"
    if kinds == {int}:
        return "int64"
    if kinds <= {int, float}:
        return "double"
    if kinds == {str}:
        return "string"
    raise PlanError(
        "emit_table(): each column holds one kind of value (numbers, text or true/false), or None"
    )


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not 1 <= len(name) <= NAME_CHARS:
        raise PlanError(f"a column name is text of 1 to {NAME_CHARS} characters")


def check(body: Any) -> None:
    """A derived table as the driver accepts it from the job's process: JSON values only,
    as many values per row as columns, suppressed cells that exist, within the size limits."""
    if (
        not isinstance(body, Mapping)
        or body.get("kind") != "table"
        or body.get("derived") is not True
    ):
        raise PlanError("emit() takes a collected table, a table derived from one, or one value")
    if set(body) - {"kind", "columns", "rows", "suppressed", "derived", "margins"}:
        raise PlanError("a derived table holds columns, rows and suppressed cells only")
    columns, rows = body.get("columns"), body.get("rows")
    if not isinstance(columns, list) or not 1 <= len(columns) <= MAX_COLUMNS:
        raise PlanError(f"a derived table has 1 to {MAX_COLUMNS} columns")
    for c in columns:
        if (
            not isinstance(c, Mapping)
            or not {"name", "type"} <= set(c) <= {"name", "type", "bounds"}
            or c["type"] not in TYPES
        ):
            raise PlanError("a derived table's columns are {name, type} with a known type")
        _check_name(c["name"])
        if "bounds" in c:
            _check_bounds(c["bounds"])
    names = [c["name"] for c in columns]
    if len(set(names)) != len(names):
        raise PlanError("a derived table's column names must be distinct")
    if not isinstance(rows, list) or len(rows) > MAX_ROWS:
        raise PlanError(f"a derived table has at most {MAX_ROWS} rows")
    for row in rows:
        if not isinstance(row, list) or len(row) != len(columns):
            raise PlanError("every row of a derived table has one value per column")
        for v in row:
            _check_value(v)
    suppressed = body.get("suppressed", [])
    if not isinstance(suppressed, list):
        raise PlanError("a derived table's suppressed cells are a list of [row, column]")
    for cell in suppressed:
        if (
            not isinstance(cell, list)
            or len(cell) != 2
            or not isinstance(cell[0], int)
            or isinstance(cell[0], bool)
            or not 0 <= cell[0] < len(rows)
            or cell[1] not in names
            or rows[cell[0]][names.index(cell[1])] is not None
        ):
            raise PlanError("a derived table's suppressed cells must be empty cells it has")
    margins = body.get("margins", [])
    if not isinstance(margins, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) and 0 <= i < len(rows) for i in margins
    ):
        raise PlanError("a derived table's margins are a list of its rows")


def _check_bounds(bounds: Any) -> None:
    """A banded column's bounds as released: [low, high) pairs of numbers or None."""
    if not isinstance(bounds, list) or len(bounds) > MAX_ROWS:
        raise PlanError("a banded column's bounds are a list of [low, high) pairs")
    for pair in bounds:
        if not isinstance(pair, list) or len(pair) != 2:
            raise PlanError("a banded column's bounds are a list of [low, high) pairs")
        for v in pair:
            if v is not None and (
                isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
            ):
                raise PlanError("a banded column's bounds are numbers or None")


def _check_value(v: Any) -> None:
    if v is None or isinstance(v, (bool, int)):
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) > 2**63 - 1:
            raise PlanError("a derived table's integers fit in 64 bits")
        return
    if isinstance(v, float):
        if not math.isfinite(v):
            raise PlanError("a derived table's numbers are finite")
        return
    if isinstance(v, str) and len(v) <= MAX_TEXT:
        return
    raise PlanError(
        f"a derived table's cells are numbers, text of at most {MAX_TEXT} characters, "
        "true/false or None"
    )
