"""Whole years between dates (an age at a date): computed per row, checked at plan time."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from sandbox.engine.compute import evaluate
from sandbox.engine.validate import Field, _Typer
from sandbox.errors import PlanError
from sandbox.language import plan as p

BORN = [dt.date(1960, 3, 1), dt.date(1960, 2, 29), dt.date(2000, 12, 31), None]
TABLE = pa.table(
    {
        "born": pa.array(BORN, pa.date32()),
        "died": pa.array([dt.date(2025, 2, 28), dt.date(2025, 3, 1), None, dt.date(2020, 1, 1)]),
    }
)


def years(a: p.Expr, b: p.Expr) -> list[int | None]:
    return evaluate(p.Call("years_until", (a, b)), TABLE).to_pylist()  # type: ignore[no-any-return]


def test_an_age_at_a_date_counts_only_birthdays_passed() -> None:
    # 1 March 1960 is not yet 65 on 28 February 2025; 29 February 1960 is 65 on 1 March.
    assert years(p.Col("born"), p.Lit("2025-02-28")) == [64, 64, 24, None]
    assert years(p.Col("born"), p.Lit("2025-03-01")) == [65, 65, 24, None]
    assert years(p.Col("born"), p.Col("died")) == [64, 65, None, None]
    reference = [None if b is None else 2025 - b.year - ((2, 28) < (b.month, b.day)) for b in BORN]
    assert years(p.Col("born"), p.Lit("2025-02-28")) == reference


def _kind(e: p.Expr) -> str:
    schema = {"born": Field("date", frozenset()), "n": Field("int", frozenset())}
    return _Typer(schema).kind(e)


def test_the_plan_check_wants_two_dates() -> None:
    assert _kind(p.Call("years_until", (p.Col("born"), p.Lit("2024-12-31")))) == "int"
    for wrong in (
        (p.Col("born"), p.Lit("2024-13-01")),
        (p.Col("born"), p.Col("n")),
        (p.Lit("2020-01-01"), p.Lit("2024-01-01")),
    ):
        with pytest.raises(PlanError, match="years_until needs"):
            _kind(p.Call("years_until", wrong))
