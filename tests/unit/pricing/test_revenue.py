"""Revenue reports: totals, public-interest value, and excess over the allowed revenue."""

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pricing import (
    Metered,
    RevenueError,
    RevenueLine,
    RevenueTotals,
    RowsUse,
    charge_revenue_lines,
    parse_schedule,
    price,
    revenue_report,
)

D = Decimal
FEES = parse_schedule(
    {
        "name": "fees",
        "effective_from": "2026-01-01T00:00:00Z",
        "items": [
            {"unit": "call", "price": "2.00"},
            {"unit": "rows", "per": 10000, "price": "0.10"},
            {"unit": "output", "price": "0.50"},
        ],
        "multipliers": {"population": "1.50"},
    }
)

LINES = [
    RevenueLine("op-1", None, "call", "commercial", D("2.00"), D("2.00")),
    RevenueLine("op-1", "population", "rows", "commercial", D("15.00"), D("15.00")),
    RevenueLine("op-2", "population", "rows", "public_interest", D("0"), D("7.50")),
    RevenueLine("op-2", "企业", "rows", "commercial", D("3.25"), D("3.25")),
    RevenueLine("op-2", None, "output", "public_interest", D("0"), D("1.00")),
]


def test_totals_by_operator_dataset_and_unit() -> None:
    report = revenue_report(LINES, None, D("0"))
    assert report.revenue == D("20.25")
    assert report.list_value == D("28.75")
    assert report.public_interest_list_value == D("8.50")
    assert dict(report.by_operator) == {
        "op-1": RevenueTotals(D("17.00"), D("17.00")),
        "op-2": RevenueTotals(D("3.25"), D("11.75")),
    }
    assert list(report.by_dataset) == ["population", "企业", None]
    assert report.by_dataset["population"] == RevenueTotals(D("15.00"), D("22.50"))
    assert report.by_dataset[None] == RevenueTotals(D("2.00"), D("3.00"))
    assert list(report.by_unit) == ["call", "rows", "output"]
    assert report.by_unit["rows"] == RevenueTotals(D("18.25"), D("25.75"))


def test_without_an_allowed_revenue_nothing_is_in_excess() -> None:
    report = revenue_report(LINES, None, D("5.00"))
    assert report.allowed_revenue is None
    assert report.effective_allowed is None
    assert (report.excess, report.carry_forward) == (D("0.00"), D("0.00"))
    assert report.carried_deduction == D("5.00")


def test_revenue_within_the_allowed_revenue_has_no_excess() -> None:
    report = revenue_report(LINES, D("30.00"), D("9.75"))
    assert report.effective_allowed == D("20.25")
    assert (report.excess, report.carry_forward) == (D("0.00"), D("0.00"))


def test_the_excess_over_the_allowed_revenue_less_the_deduction_is_carried_forward() -> None:
    report = revenue_report(LINES, D("30.00"), D("12.00"))
    assert report.effective_allowed == D("18.00")
    assert report.excess == D("2.25")
    assert report.carry_forward == D("2.25")
    next_period = revenue_report(LINES, D("30.00"), report.carry_forward)
    assert next_period.effective_allowed == D("27.75")
    assert next_period.excess == D("0.00")


def test_the_effective_allowed_revenue_never_goes_below_zero() -> None:
    report = revenue_report(LINES, D("10.00"), D("25.00"))
    assert report.effective_allowed == D("0.00")
    assert report.excess == report.revenue == D("20.25")


def test_an_empty_period() -> None:
    report = revenue_report([], D("100"), D("0"))
    assert (report.revenue, report.excess, report.effective_allowed) == (
        D("0.00"),
        D("0.00"),
        D("100.00"),
    )
    assert report.by_operator == {} and report.by_dataset == {} and report.by_unit == {}


def test_to_json_writes_money_with_two_decimals_and_null_for_no_allowed_revenue() -> None:
    as_json = revenue_report(LINES[:2], D("10"), D("0")).to_json()
    assert as_json == {
        "currency": "CNY",
        "revenue": "17.00",
        "list_value": "17.00",
        "public_interest_list_value": "0.00",
        "allowed_revenue": "10.00",
        "carried_deduction": "0.00",
        "effective_allowed": "10.00",
        "excess": "7.00",
        "carry_forward": "7.00",
        "by_operator": [{"operator_id": "op-1", "amount": "17.00", "list_amount": "17.00"}],
        "by_dataset": [
            {"dataset": "population", "amount": "15.00", "list_amount": "15.00"},
            {"dataset": None, "amount": "2.00", "list_amount": "2.00"},
        ],
        "by_unit": [
            {"unit": "call", "amount": "2.00", "list_amount": "2.00"},
            {"unit": "rows", "amount": "15.00", "list_amount": "15.00"},
        ],
    }
    none_allowed = revenue_report(LINES, None, D("0")).to_json()
    assert none_allowed["allowed_revenue"] is None and none_allowed["effective_allowed"] is None
    json.dumps(none_allowed)


def test_charge_lines_become_revenue_lines_keeping_datasets() -> None:
    metered = Metered(
        calls=1,
        rows=(RowsUse("population", "L3", 100_000), RowsUse("weather", "L1", 10_000)),
        outputs=2,
    )
    charge = price(FEES, metered, "commercial")
    lines = charge_revenue_lines("op-1", "commercial", charge)
    assert [(line.unit, line.dataset, str(line.amount)) for line in lines] == [
        ("call", None, "2.00"),
        ("rows", "population", "1.50"),
        ("rows", "weather", "0.10"),
        ("output", None, "1.00"),
    ]
    assert revenue_report(lines, None, D("0")).revenue == charge.amount
    free = charge_revenue_lines("op-2", "public_interest", price(FEES, metered, "public_interest"))
    report = revenue_report(free, None, D("0"))
    assert report.revenue == D("0.00") and report.public_interest_list_value == charge.amount


def test_a_charge_that_does_not_match_its_purpose_class_is_refused() -> None:
    charge = price(FEES, Metered(calls=1), "commercial")
    with pytest.raises(
        RevenueError, match=r"lines\[0\].amount: public-interest use is charged 0, not 2.00"
    ):
        charge_revenue_lines("op-1", "public_interest", charge)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"operator_id": ""}, "operator_id: must be the operator's non-empty id"),
        ({"dataset": "population", "unit": "call"}, "dataset: only rows lines name a dataset"),
        ({"dataset": ""}, "dataset: '' is not a dataset name"),
        ({"unit": "minutes"}, "unit: 'minutes' is not a billing unit"),
        ({"purpose_class": "charity"}, "purpose_class: 'charity' is not known"),
        ({"amount": D("3.00")}, "amount: 3.00 is above the list amount 2.00"),
        ({"amount": D("0.001")}, "amount has more than 2 decimal places"),
        ({"list_amount": 2.0}, "list_amount is a float"),
    ],
)
def test_revenue_lines_are_validated(fields: dict[str, Any], message: str) -> None:
    base: dict[str, Any] = {
        "operator_id": "op-1",
        "dataset": "population",
        "unit": "rows",
        "purpose_class": "commercial",
        "amount": D("2.00"),
        "list_amount": D("2.00"),
    }
    with pytest.raises(RevenueError) as caught:
        RevenueLine(**{**base, **fields})
    assert caught.value.code == "invalid_revenue"
    assert str(caught.value).startswith(message)


def test_report_inputs_are_validated() -> None:
    with pytest.raises(RevenueError, match="allowed is negative"):
        revenue_report(LINES, D("-1"), D("0"))
    with pytest.raises(RevenueError, match="carried_deduction is a float"):
        revenue_report(LINES, None, 0.5)  # type: ignore[arg-type]
    with pytest.raises(RevenueError, match=r"lines\[1\]: expected a RevenueLine, not dict"):
        revenue_report([LINES[0], {"amount": "1"}], None, D("0"))  # type: ignore[list-item]


AMOUNTS = st.integers(min_value=0, max_value=10**8).map(lambda fen: D(fen).scaleb(-2))


@st.composite
def revenue_lines(draw: st.DrawFn) -> RevenueLine:
    unit = draw(st.sampled_from(["call", "rows", "compute_seconds", "output"]))
    purpose = draw(st.sampled_from(["public_interest", "commercial"]))
    list_amount = draw(AMOUNTS)
    amount = list_amount if purpose == "commercial" else D(0)
    dataset = draw(st.sampled_from(["a", "人口", None])) if unit == "rows" else None
    return RevenueLine(
        draw(st.sampled_from(["op-1", "op-2", "op-3"])), dataset, unit, purpose, amount, list_amount
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(revenue_lines(), max_size=20), st.one_of(st.none(), AMOUNTS), AMOUNTS)
def test_every_breakdown_adds_up_and_the_excess_follows_the_rule(
    lines: list[RevenueLine], allowed: Decimal | None, carried: Decimal
) -> None:
    report = revenue_report(lines, allowed, carried)
    for breakdown in (report.by_operator, report.by_dataset, report.by_unit):
        assert sum((t.amount for t in breakdown.values()), D(0)) == report.revenue
        assert sum((t.list_amount for t in breakdown.values()), D(0)) == report.list_value
    for operator, totals in report.by_operator.items():
        assert totals.amount == sum(
            (line.amount for line in lines if line.operator_id == operator), D(0)
        )
    assert report.revenue == sum((line.amount for line in lines), D(0))
    if allowed is None:
        assert report.excess == report.carry_forward == 0
    else:
        assert report.effective_allowed == max(D(0), allowed - carried)
        assert report.excess == max(D(0), report.revenue - report.effective_allowed)
        assert report.carry_forward == report.excess
