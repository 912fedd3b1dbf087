"""Percentiles, shares to the fen, and the bureau's months."""

from __future__ import annotations

import datetime as dt

import pytest

from sandbox.common import figures, months
from sandbox.errors import BadRequest


def test_percentiles_interpolate_between_ranks() -> None:
    assert figures.median([]) is None
    assert figures.median([5.0]) == 5.0
    assert figures.median([3.0, 1.0, 2.0]) == 2.0
    assert figures.median([1.0, 2.0, 3.0, 10.0]) == 2.5
    assert figures.percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.9) == pytest.approx(4.6)
    assert figures.percentile([7.0, 1.0], 1) == 7.0
    with pytest.raises(ValueError):
        figures.percentile([1.0], 1.5)


@pytest.mark.parametrize(
    ("total", "weights", "shares"),
    [
        (100, {"a": 1, "b": 1}, {"a": 50, "b": 50}),
        (101, {"a": 1, "b": 1}, {"a": 51, "b": 50}),
        (100, {"a": 1, "b": 2}, {"a": 33, "b": 67}),
        (7, {"a": 0, "b": 0, "c": 0}, {"a": 3, "b": 2, "c": 2}),
        (5, {"a": 20000, "b": 0}, {"a": 5, "b": 0}),
        (0, {"a": 3}, {"a": 0}),
        (9, {}, {}),
    ],
)
def test_shares_add_up_to_the_total(
    total: int, weights: dict[str, int], shares: dict[str, int]
) -> None:
    assert figures.apportion(total, weights) == shares
    if weights:
        assert sum(figures.apportion(total, weights).values()) == total


def test_months_are_beijing_calendar_months() -> None:
    start, end = months.bounds("2026-12")
    assert (start, end) == (dt.datetime(2026, 11, 30, 16), dt.datetime(2026, 12, 31, 16))
    assert months.of(dt.datetime(2026, 11, 30, 16, tzinfo=dt.UTC)) == "2026-12"
    assert months.of(dt.datetime(2026, 11, 30, 15, 59, tzinfo=dt.UTC)) == "2026-11"
    for bad in ("2026-13", "2026-1", "2026-11\n", "11-2026"):
        with pytest.raises(BadRequest, match="month must be a month written YYYY-MM"):
            months.bounds(bad)
