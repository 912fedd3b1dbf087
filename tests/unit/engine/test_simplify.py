"""Filters on a year derived from a date, restated on the date and moved before the derives:
the rows kept must be exactly those the steps as written keep, nulls and edges included."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.engine import simplify
from sandbox.engine.compute import apply_steps
from sandbox.language import plan as p

TYPES = {"d": simplify.DATE, "n": "int64"}
SCAN = p.Scan("t")


def _table(days: list[int | None], numbers: list[int | None]) -> pa.Table:
    return pa.table(
        {"d": pa.array(days, pa.int32()).cast(pa.date32()), "n": pa.array(numbers, pa.int64())}
    )


def _year_expr(form: str, c: float) -> p.Expr:
    year = p.Call("year", (p.Col("d"),))
    if form == "year":
        return year
    if form == "c-year":
        return p.Call("sub", (p.Lit(c), year))
    if form == "year-c":
        return p.Call("sub", (year, p.Lit(c)))
    if form == "year+c":
        return p.Call("add", (year, p.Lit(c)))
    return p.Call("add", (p.Lit(c), year))


def _steps(form: str, c: float, op: str, bound: float, literal_first: bool) -> list[p.Node]:
    derived = p.Derive(SCAN, (("age", _year_expr(form, c)),))
    sides = (p.Lit(bound), p.Col("age")) if literal_first else (p.Col("age"), p.Lit(bound))
    return [derived, p.Filter(derived, p.Call(op, sides))]


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    # Dates as day numbers: Arrow's reach past the year 9999, Python's do not.
    return table.set_column(0, "d", table.column("d").cast(pa.int32())).to_pylist()


dates = st.lists(st.one_of(st.none(), st.integers(-800_000, 2_950_000)), min_size=1, max_size=60)
numbers_ = st.floats(-3000, 5000, allow_nan=False).map(lambda x: round(x * 2) / 2)


@settings(max_examples=400, deadline=None)
@given(
    days=dates,
    form=st.sampled_from(["year", "c-year", "year-c", "year+c", "c+year"]),
    c=st.one_of(st.integers(-3000, 5000), numbers_),
    op=st.sampled_from(["lt", "le", "gt", "ge", "eq"]),
    bound=st.one_of(st.integers(-3000, 12000), numbers_),
    literal_first=st.booleans(),
)
def test_a_restated_filter_keeps_exactly_the_rows_as_written(
    days: list[int | None], form: str, c: float, op: str, bound: float, literal_first: bool
) -> None:
    table = _table(days, list(range(len(days))))
    steps = _steps(form, c, op, bound, literal_first)
    rewritten = simplify.row_steps(steps, TYPES)
    assert _rows(apply_steps(rewritten, table)) == _rows(apply_steps(steps, table))


def test_the_age_filter_becomes_a_date_compare_in_front_of_the_derive() -> None:
    steps = _steps("c-year", 2024, "ge", 65, literal_first=False)
    rewritten = simplify.row_steps(steps, TYPES)
    assert isinstance(rewritten[0], p.Filter)
    assert rewritten[0].predicate == p.Call("lt", (p.Col("d"), p.Lit("1960-01-01")))
    assert isinstance(rewritten[1], p.Derive)


def test_a_filter_on_anything_else_stays_where_it_was() -> None:
    derived = p.Derive(SCAN, (("m", p.Call("month", (p.Col("d"),))),))
    on_month = [derived, p.Filter(derived, p.Call("ge", (p.Col("m"), p.Lit(6))))]
    on_number = [derived, p.Filter(derived, p.Call("ge", (p.Col("n"), p.Lit(6))))]
    on_other_type = _steps("year", 0, "ge", 2000, literal_first=False)
    assert simplify.row_steps(on_month, TYPES) == tuple(on_month)
    assert simplify.row_steps(on_number, TYPES) == tuple(on_number)
    assert simplify.row_steps(on_other_type, {"d": "timestamp[us]"}) == tuple(on_other_type)


def test_a_column_redefined_before_the_filter_is_not_confused_with_the_stored_one() -> None:
    # d is replaced by another date, then its year is filtered: the filter sees the new d.
    moved = p.Derive(SCAN, (("d", p.Call("year", (p.Col("d"),))),))
    steps = [moved, p.Filter(moved, p.Call("ge", (p.Col("d"), p.Lit(2000))))]
    table = _table([0, 11_000, None], [1, 2, 3])
    rewritten = simplify.row_steps(steps, TYPES)
    assert _rows(apply_steps(rewritten, table)) == _rows(apply_steps(steps, table))


def test_years_beyond_the_calendar_are_left_as_written() -> None:
    steps = _steps("year", 0, "lt", 0, literal_first=False)
    far = _steps("year", 0, "ge", 10_000, literal_first=False)
    assert simplify.row_steps(steps, TYPES) == tuple(steps)
    assert simplify.row_steps(far, TYPES) == tuple(far)
    # Arrow's dates reach past the year 9999 (2 950 000 days after 1970 is in 10047).
    table = _table([-719_000, 0, 2_950_000, None], [1, 2, 3, 4])
    assert apply_steps(far, table).column("n").to_pylist() == [3]
