import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pricing import (
    Charge,
    ChargeError,
    ChargeLine,
    Metered,
    MeteringError,
    PriceItem,
    PriceSchedule,
    SettlementError,
    parse_schedule,
    price,
    settle,
)

FEES = parse_schedule(
    {
        "name": "2026 fees",
        "effective_from": "2026-01-01T00:00:00Z",
        "items": [
            {"unit": "call", "price": "2.00"},
            {"unit": "rows", "per": 10000, "price": "0.10", "level": "L3"},
            {"unit": "rows", "per": 10000, "price": "0.02"},
            {"unit": "compute_seconds", "price": "0.01"},
            {"unit": "output", "price": "0.50"},
        ],
    }
)


def schedule_of(*items: dict[str, Any]) -> PriceSchedule:
    return parse_schedule(
        {"name": "fees", "effective_from": "2026-01-01T00:00:00Z", "items": list(items)}
    )


def test_rows_are_priced_exactly_then_rounded_half_up() -> None:
    rows_only = schedule_of({"unit": "rows", "per": 10000, "price": "0.10"})
    charge = price(rows_only, Metered(calls=0, rows_by_level={"L2": 123_456}), "commercial")
    # 0.10 per 10000 rows × 123 456 rows = 1.23456 → 1.23
    assert charge.lines == (ChargeLine("rows", 123_456, Decimal("1.23"), Decimal("1.23"), "L2"),)
    assert charge.amount == Decimal("1.23")


def test_exactly_half_a_fen_rounds_up() -> None:
    rows_only = schedule_of({"unit": "rows", "per": 10000, "price": "0.01"})
    # 0.01 × 5000 / 10000 = 0.005 exactly
    charge = price(rows_only, Metered(calls=0, rows_by_level={"L1": 5000}), "commercial")
    assert charge.amount == Decimal("0.01")
    just_below = price(rows_only, Metered(calls=0, rows_by_level={"L1": 4999}), "commercial")
    assert just_below.amount == Decimal("0.00")


def test_a_line_per_unit_and_the_total_is_the_sum_of_rounded_lines() -> None:
    metered = Metered(
        calls=1, rows_by_level={"L3": 123_456}, compute_seconds=Decimal("12.5"), outputs=2
    )
    charge = price(FEES, metered, "commercial")
    assert [(line.unit, line.quantity, str(line.amount)) for line in charge.lines] == [
        ("call", 1, "2.00"),
        ("rows", 123_456, "1.23"),
        ("compute_seconds", "12.5", "0.13"),  # 0.125 → 0.13
        ("output", 2, "1.00"),
    ]
    assert charge.amount == Decimal("4.36")
    assert charge.list_amount == Decimal("4.36")
    assert charge.currency == "CNY"


def test_each_rows_level_gets_its_own_price_or_the_level_less_fallback() -> None:
    metered = Metered(calls=0, rows_by_level={"L3": 20_000, "L1": 20_000})
    charge = price(FEES, metered, "commercial")
    assert charge.lines == (
        ChargeLine("rows", 20_000, Decimal("0.04"), Decimal("0.04"), "L1"),  # fallback 0.02/10000
        ChargeLine("rows", 20_000, Decimal("0.20"), Decimal("0.20"), "L3"),  # L3 item 0.10/10000
    )


def test_a_rows_level_without_an_applicable_item_is_free() -> None:
    l3_only = schedule_of(
        {"unit": "call", "price": "2"},
        {"unit": "rows", "per": 10000, "price": "0.10", "level": "L3"},
    )
    charge = price(l3_only, Metered(rows_by_level={"L1": 1_000_000, "L3": 10_000}), "commercial")
    assert [(line.unit, line.level) for line in charge.lines] == [("call", None), ("rows", "L3")]
    assert charge.amount == Decimal("2.10")


def test_units_without_an_item_or_without_usage_have_no_line() -> None:
    calls_only = schedule_of({"unit": "call", "price": "2"})
    charge = price(
        calls_only, Metered(calls=3, compute_seconds=Decimal("100"), outputs=4), "commercial"
    )
    assert [line.unit for line in charge.lines] == ["call"]
    assert price(FEES, Metered(calls=0), "commercial") == Charge(Decimal("0"), ())


def test_public_interest_pays_nothing_but_is_valued_at_list_price() -> None:
    metered = Metered(
        calls=1, rows_by_level={"L3": 123_456}, compute_seconds=Decimal("12.5"), outputs=2
    )
    free = price(FEES, metered, "public_interest")
    paid = price(FEES, metered, "commercial")
    assert free.amount == Decimal("0.00")
    assert all(line.amount == Decimal("0.00") for line in free.lines)
    assert [line.list_amount for line in free.lines] == [line.amount for line in paid.lines]
    assert free.list_amount == paid.amount == Decimal("4.36")


def test_compute_seconds_may_be_fractional() -> None:
    seconds_only = schedule_of({"unit": "compute_seconds", "price": "0.03"})
    charge = price(seconds_only, Metered(calls=0, compute_seconds=Decimal("0.333")), "commercial")
    # 0.333 × 0.03 = 0.00999 → 0.01
    assert charge.lines == (
        ChargeLine("compute_seconds", "0.333", Decimal("0.01"), Decimal("0.01")),
    )
    assert charge.to_json()["lines"][0]["quantity"] == "0.333"


def test_per_divides_every_unit_exactly() -> None:
    per_three = schedule_of({"unit": "output", "price": "1.00", "per": 3})
    assert price(per_three, Metered(calls=0, outputs=1), "commercial").amount == Decimal("0.33")
    assert price(per_three, Metered(calls=0, outputs=2), "commercial").amount == Decimal("0.67")
    assert price(per_three, Metered(calls=0, outputs=3), "commercial").amount == Decimal("1.00")


def test_unknown_purpose_class_is_refused() -> None:
    with pytest.raises(ChargeError, match="use one of public_interest, commercial"):
        price(FEES, Metered(), "nonprofit")  # type: ignore[arg-type]


def test_to_json_gives_the_api_shape() -> None:
    charge = price(
        FEES,
        Metered(calls=1, rows_by_level={"L3": 123_456}, compute_seconds=Decimal("12.5")),
        "commercial",
    )
    assert charge.to_json() == {
        "amount": "3.36",
        "currency": "CNY",
        "lines": [
            {"unit": "call", "quantity": 1, "amount": "2.00", "list_amount": "2.00"},
            {
                "unit": "rows",
                "quantity": 123456,
                "amount": "1.23",
                "list_amount": "1.23",
                "level": "L3",
            },
            {
                "unit": "compute_seconds",
                "quantity": "12.5",
                "amount": "0.13",
                "list_amount": "0.13",
            },
        ],
        "list_amount": "3.36",
    }


def test_json_round_trip_is_exact_through_text() -> None:
    charge = price(
        FEES,
        Metered(
            calls=1,
            rows_by_level={"L1": 7, "L3": 99_999},
            compute_seconds=Decimal("0.50"),
            outputs=3,
        ),
        "public_interest",
    )
    text = json.dumps(charge.to_json())
    again = Charge.from_json(json.loads(text))
    assert again == charge
    assert json.dumps(again.to_json()) == text


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c.update(amount="9.99"), "amount: 9.99 is not the sum of the lines (2.00)"),
        (
            lambda c: c.update(list_amount="1.00"),
            "list_amount: 1.00 is not the sum of the lines (2.00)",
        ),
        (lambda c: c.update(currency="USD"), "currency: 'USD' is not billed here"),
        (lambda c: c.update(amount=2.0), "amount 2.0 is a float"),
        (lambda c: c.pop("lines"), "lines: missing"),
        (
            lambda c: c.update(extra=1),
            "extra: unknown field; a charge has amount, currency, lines, list_amount",
        ),
        (
            lambda c: c["lines"][0].update(amount="2.001"),
            "lines[0].amount '2.001' has more than 2 decimal places",
        ),
        (
            lambda c: c["lines"][0].update(amount="3.00"),
            "lines[0].amount: 3.00 is above the list amount 2.00",
        ),
        (
            lambda c: c["lines"][0].update(quantity="1"),
            "lines[0].quantity: '1' is not a count of call",
        ),
        (
            lambda c: c["lines"][0].update(unit="minutes"),
            "lines[0].unit: 'minutes' is not a billing unit",
        ),
        (
            lambda c: c["lines"][0].update(level="L3"),
            "lines[0].level: only 'rows' lines have a level",
        ),
        (lambda c: c["lines"][0].pop("list_amount"), "lines[0].list_amount: missing"),
        (lambda c: c["lines"].append(7), "lines[1]: a charge line must be an object"),
    ],
)
def test_from_json_names_what_is_wrong(mutate: Any, message: str) -> None:
    obj = price(FEES, Metered(calls=1), "commercial").to_json()
    mutate(obj)
    with pytest.raises(ChargeError) as caught:
        Charge.from_json(obj)
    assert str(caught.value).startswith(message)
    assert caught.value.code == "invalid_charge"


def test_charge_list_amount_defaults_to_the_sum_of_lines() -> None:
    lines = (
        ChargeLine("call", 1, Decimal("0"), Decimal("2.00")),
        ChargeLine("output", 1, Decimal("0"), Decimal("0.50")),
    )
    assert Charge(Decimal("0"), lines).list_amount == Decimal("2.50")
    assert Charge.from_lines(list(lines)) == Charge(Decimal("0.00"), lines, "CNY", Decimal("2.50"))


def test_compute_seconds_line_quantity_must_be_a_decimal_string() -> None:
    with pytest.raises(ChargeError, match="quantity: 12 is not a decimal string of seconds"):
        ChargeLine("compute_seconds", 12, Decimal("0.12"), Decimal("0.12"))


def test_settle_returns_the_actual_charge_when_within_the_quote() -> None:
    quote = price(FEES, Metered(rows_by_level={"L3": 1_000_000}, outputs=2), "commercial")
    actual = price(FEES, Metered(rows_by_level={"L3": 400_000}, outputs=1), "commercial")
    assert settle(quote, actual) is actual
    assert settle(quote, quote) is quote


def test_settle_refuses_an_actual_above_its_quote() -> None:
    quote = price(FEES, Metered(rows_by_level={"L3": 10_000}), "commercial")
    actual = price(FEES, Metered(rows_by_level={"L3": 20_000}), "commercial")
    with pytest.raises(SettlementError) as caught:
        settle(quote, actual)
    assert caught.value.code == "settlement_exceeds_quote"
    assert "the actual charge 2.20 CNY is above the quoted 2.10 CNY" in str(caught.value)


def test_settle_catches_overrun_on_free_public_interest_jobs_too() -> None:
    quote = price(FEES, Metered(outputs=1), "public_interest")
    actual = price(FEES, Metered(outputs=2), "public_interest")
    with pytest.raises(
        SettlementError, match="actual list amount 3.00 CNY is above the quoted 2.50"
    ):
        settle(quote, actual)


def test_metered_refuses_floats_and_bad_counts() -> None:
    with pytest.raises(MeteringError, match=r"compute_seconds: is a float; pass a Decimal"):
        Metered(compute_seconds=1.5)  # type: ignore[arg-type]
    with pytest.raises(MeteringError, match="calls: -1 is not a count"):
        Metered(calls=-1)
    with pytest.raises(MeteringError, match="'L9' is not a classification level"):
        Metered(rows_by_level={"L9": 10})
    with pytest.raises(MeteringError, match=r"rows_by_level\['L2'\]: 1.5 is not a count"):
        Metered(rows_by_level={"L2": 1.5})  # type: ignore[dict-item]


def test_metered_copies_rows_and_accepts_integer_seconds() -> None:
    rows = {"L3": 10, "L1": 5}
    metered = Metered(rows_by_level=rows, compute_seconds=3)  # type: ignore[arg-type]
    rows["L3"] = 10_000
    assert dict(metered.rows_by_level) == {"L1": 5, "L3": 10}
    assert metered.rows_scanned == 15
    assert metered.compute_seconds == Decimal(3)
    assert Metered().rows_by_level == {}
    assert Metered().calls == 1


# --- properties ---------------------------------------------------------------

LEVEL = st.sampled_from(["L1", "L2", "L3", "L4"])
PRICE = st.integers(min_value=0, max_value=10**9).map(lambda fen: Decimal(fen).scaleb(-2))
PER = st.integers(min_value=1, max_value=100_000)


@st.composite
def schedules(draw: st.DrawFn) -> PriceSchedule:
    items = []
    for unit in ("call", "compute_seconds", "output"):
        if draw(st.booleans()):
            items.append(PriceItem(unit, draw(PRICE), draw(PER)))  # type: ignore[arg-type]
    for level in draw(st.sets(st.one_of(st.none(), LEVEL))):
        items.append(PriceItem("rows", draw(PRICE), draw(PER), level))
    if not items:
        items.append(PriceItem("call", draw(PRICE)))
    return PriceSchedule("fees", datetime(2026, 1, 1, tzinfo=UTC), tuple(items))


metereds = st.builds(
    Metered,
    calls=st.integers(min_value=0, max_value=10**6),
    rows_by_level=st.dictionaries(LEVEL, st.integers(min_value=0, max_value=10**12)),
    compute_seconds=st.decimals(
        min_value=0, max_value=10**7, places=3, allow_nan=False, allow_infinity=False
    ),
    outputs=st.integers(min_value=0, max_value=10**4),
)
purposes = st.sampled_from(["public_interest", "commercial"])


@settings(max_examples=200, deadline=None)
@given(schedules(), metereds, purposes)
def test_total_is_the_sum_of_lines_and_never_negative(
    schedule: PriceSchedule, metered: Metered, purpose: Any
) -> None:
    charge = price(schedule, metered, purpose)
    assert charge.amount == sum((line.amount for line in charge.lines), Decimal(0))
    assert charge.list_amount == sum((line.list_amount for line in charge.lines), Decimal(0))
    assert charge.amount >= 0
    assert all(line.amount >= 0 for line in charge.lines)
    assert charge.amount <= charge.list_amount
    assert Charge.from_json(json.loads(json.dumps(charge.to_json()))) == charge


@settings(max_examples=100, deadline=None)
@given(schedules(), metereds, metereds)
def test_more_usage_never_costs_less(schedule: PriceSchedule, low: Metered, extra: Metered) -> None:
    high = Metered(
        calls=low.calls + extra.calls,
        rows_by_level={
            level: low.rows_by_level.get(level, 0) + extra.rows_by_level.get(level, 0)
            for level in set(low.rows_by_level) | set(extra.rows_by_level)
        },
        compute_seconds=low.compute_seconds + extra.compute_seconds,
        outputs=low.outputs + extra.outputs,
    )
    quote = price(schedule, high, "commercial")
    actual = price(schedule, low, "commercial")
    assert settle(quote, actual) is actual
