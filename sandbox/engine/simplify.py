"""Row steps rewritten into cheaper equivalents before any partition is read.

Jobs often filter on a derived quantity: an age computed from a birth date, then a filter on
the age (`derive(age=2024 - col("birth_date").year()).filter(col("age") >= 65)`). Evaluated
as written, every row gets its year and its age before most rows are dropped. Here such a
filter is restated on the stored column (`birth_date < 1960-01-01`) and moved in front of the
derives, so the comparison is one date compare per row, the derive runs on the rows that are
left, and the read can skip row groups by their statistics.

A rewrite is made only when it is exact for every row, nulls included (a null date gives a
null year, a null age and a null comparison; it gives a null comparison here too), and only
for filters directly over a read (no join in between), whose column types the catalog gives.
Anything else is left as written. Which columns are read, and every disclosure statistic, are
decided from the plan as written: only the order of equivalent row steps changes.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence

from sandbox.language import plan as p

# Comparisons, and what each becomes when its two sides swap places.
_FLIPPED = {"lt": "gt", "le": "ge", "gt": "lt", "ge": "le", "eq": "eq"}
# Literals beyond this magnitude are left alone: the engine's integer arithmetic turns an
# overflow into null, which a rewritten comparison would not reproduce.
_EXACT = 2**53
DATE = "date32[day]"


def row_steps(steps: Sequence[p.Node], types: Mapping[str, str]) -> tuple[p.Node, ...]:
    """`steps` (filters, derives, selects over one read, in order) with each filter that can
    be restated on a date column of the read moved, restated, in front of the first derive.
    `types`: the read's columns and their catalog types."""
    defined: dict[str, p.Expr] = {}  # derived so far → its expression over the read's columns
    hoisted: list[p.Node] = []
    kept: list[p.Node] = []
    for step in steps:
        if isinstance(step, p.Derive):
            # The expressions of one derive all see the table before it.
            defined |= {name: _substituted(e, defined) for name, e in step.columns}
        elif isinstance(step, p.Filter):
            restated = _restated(_substituted(step.predicate, defined), types, defined)
            if restated is not None:
                hoisted.append(p.Filter(step.input, restated))
                continue
        kept.append(step)
    return (*hoisted, *kept)


def _substituted(e: p.Expr, defined: Mapping[str, p.Expr]) -> p.Expr:
    if isinstance(e, p.Col):
        return defined.get(e.name, e)
    if isinstance(e, p.Call):
        return p.Call(e.fn, tuple(_substituted(a, defined) for a in e.args))
    return e


def _restated(e: p.Expr, types: Mapping[str, str], defined: Mapping[str, p.Expr]) -> p.Expr | None:
    """`e` as a comparison of a stored date column with a date, or None."""
    if not isinstance(e, p.Call) or e.fn not in _FLIPPED:
        return None
    a, b = e.args
    op = e.fn
    if isinstance(a, p.Lit):
        a, b, op = b, a, _FLIPPED[op]
    bound = _number(b)
    if bound is None:
        return None
    found = _year_of(a)
    if found is None:
        return None
    column, sign, offset = found
    # year + offset op bound ⇔ year op (bound − offset);
    # offset − year op bound ⇔ year op⁻¹ (offset − bound), the comparison turned around.
    value = bound - offset if sign == 1 else offset - bound
    if sign == -1:
        op = _FLIPPED[op]
    if types.get(column) != DATE or column in defined:
        return None
    return _on_dates(column, op, value)


def _number(e: p.Expr) -> float | None:
    if not isinstance(e, p.Lit) or isinstance(e.value, bool):
        return None
    if not isinstance(e.value, (int, float)) or not math.isfinite(e.value):
        return None
    return float(e.value) if abs(e.value) < _EXACT else None


def _year_of(e: p.Expr) -> tuple[str, int, float] | None:
    """(column, sign, offset) when `e` is sign·year(column) + offset with a literal offset."""
    if isinstance(e, p.Call) and e.fn == "year" and isinstance(e.args[0], p.Col):
        return e.args[0].name, 1, 0.0
    if not isinstance(e, p.Call) or e.fn not in ("add", "sub"):
        return None
    left, right = e.args
    if (n := _number(right)) is not None and (inner := _year_of(left)) is not None:
        column, sign, offset = inner
        return column, sign, offset + (n if e.fn == "add" else -n)
    if (n := _number(left)) is not None and (inner := _year_of(right)) is not None:
        column, sign, offset = inner
        if e.fn == "add":
            return column, sign, offset + n
        return column, -sign, n - offset
    return None


def _on_dates(column: str, op: str, value: float) -> p.Expr | None:
    """year(column) op value, for a whole-number year, as comparisons of the date itself."""
    col = p.Col(column)
    if op == "lt":
        return _before(col, math.ceil(value))
    if op == "le":
        return _before(col, math.floor(value) + 1)
    if op == "gt":
        return _from(col, math.floor(value) + 1)
    if op == "ge":
        return _from(col, math.ceil(value))
    if op == "eq" and float(value).is_integer():
        since, until = _from(col, int(value)), _before(col, int(value) + 1)
        if since is None or until is None:
            return None
        return p.Call("and", (since, until))
    return None


def _january_first(year: int) -> str | None:
    if not dt.MINYEAR <= year <= dt.MAXYEAR:
        return None
    return dt.date(year, 1, 1).isoformat()


def _before(col: p.Col, year: int) -> p.Expr | None:
    day = _january_first(year)
    return None if day is None else p.Call("lt", (col, p.Lit(day)))


def _from(col: p.Col, year: int) -> p.Expr | None:
    day = _january_first(year)
    return None if day is None else p.Call("ge", (col, p.Lit(day)))
