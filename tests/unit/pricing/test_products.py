"""Data products' prices: the scenario's cap, trial prices, public-interest products free,
a lowered cap never raising a call above it, and revenue by scenario against the maximum
allowed revenue."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pricing.errors import CapExceeded, ProductPriceError
from pricing.products import (
    PUBLIC_INTEREST_FREE,
    ProductCall,
    ProductPrice,
    ScenarioCap,
    check_price,
    from_fen,
    revenue_by_scenario,
    to_fen,
)

D = Decimal
UNTIL = dt.datetime(2026, 7, 1, tzinfo=dt.UTC)
CAP = ScenarioCap("普惠金融", D("5.00"))


def test_a_price_at_the_cap_passes_and_one_fen_above_is_refused_naming_scenario_price_cap() -> None:
    check_price(ProductPrice("普惠金融", D("5.00")), CAP)
    with pytest.raises(CapExceeded) as refused:
        check_price(ProductPrice("普惠金融", D("5.01")), CAP)
    assert refused.value.code == "price_above_cap"
    for word in ("普惠金融", "5.01", "5.00"):
        assert word in refused.value.message


def test_a_scenario_without_a_cap_holds_no_product() -> None:
    with pytest.raises(ProductPriceError, match="no price cap"):
        check_price(ProductPrice("交通出行", D("1.00")), None)


def test_the_cap_of_another_scenario_is_not_the_products() -> None:
    with pytest.raises(ProductPriceError, match="交通出行"):
        check_price(ProductPrice("交通出行", D("1.00")), CAP)


def test_public_interest_products_are_free() -> None:
    check_price(ProductPrice("普惠金融", D("0"), "public_interest"), CAP)
    with pytest.raises(ProductPriceError, match=PUBLIC_INTEREST_FREE):
        ProductPrice("普惠金融", D("0.01"), "public_interest")


def test_a_trial_price_applies_before_trial_until_and_the_regular_price_from_then() -> None:
    p = ProductPrice("普惠金融", D("4.00"), trial_price=D("1.50"), trial_until=UNTIL)
    assert p.price_at(UNTIL - dt.timedelta(seconds=1)) == D("1.50")
    assert p.price_at(UNTIL) == D("4.00")
    # The same moment in Beijing time is the same moment.
    beijing = dt.timezone(dt.timedelta(hours=8))
    assert p.price_at(dt.datetime(2026, 7, 1, 7, 59, tzinfo=beijing)) == D("1.50")


def test_a_trial_price_is_at_most_the_regular_price_and_needs_its_end() -> None:
    with pytest.raises(ProductPriceError, match="at most the regular"):
        ProductPrice("普惠金融", D("2.00"), trial_price=D("2.50"), trial_until=UNTIL)
    with pytest.raises(ProductPriceError, match="trial_until"):
        ProductPrice("普惠金融", D("2.00"), trial_price=D("1.00"))
    with pytest.raises(ProductPriceError, match="zone"):
        ProductPrice(
            "普惠金融", D("2.00"), trial_price=D("1.00"), trial_until=dt.datetime(2026, 7, 1)
        )


def test_prices_are_decimal_fen_never_floats() -> None:
    with pytest.raises(ProductPriceError, match="float"):
        ProductPrice("普惠金融", 2.5)  # type: ignore[arg-type]
    with pytest.raises(ProductPriceError, match="2 decimal places"):
        ProductPrice("普惠金融", D("2.505"))


def test_a_cap_lowered_after_publication_caps_what_a_call_is_charged() -> None:
    p = ProductPrice("普惠金融", D("4.00"))
    assert p.charged_at(UNTIL, CAP) == D("4.00")
    assert p.charged_at(UNTIL, ScenarioCap("普惠金融", D("3.20"))) == D("3.20")


@given(
    price=st.integers(0, 10_000),
    trial=st.integers(0, 10_000),
    cap=st.integers(0, 10_000),
    before=st.booleans(),
)
def test_a_call_is_never_charged_above_the_cap_in_force(
    price: int, trial: int, cap: int, before: bool
) -> None:
    p = ProductPrice(
        "普惠金融", from_fen(price), trial_price=from_fen(min(trial, price)), trial_until=UNTIL
    )
    when = UNTIL - dt.timedelta(days=1) if before else UNTIL
    charged = p.charged_at(when, ScenarioCap("普惠金融", from_fen(cap)))
    assert charged <= from_fen(cap) and charged <= p.price
    assert to_fen(charged) == min(min(trial, price) if before else price, cap)


def test_revenue_by_scenario_charges_delivered_calls_against_the_sum_of_caps() -> None:
    calls = [
        ProductCall("普惠金融", D("4.00"), D("5.00"), True),
        ProductCall("普惠金融", D("4.00"), D("5.00"), True),
        ProductCall("普惠金融", D("4.00"), D("5.00"), False),  # refused: not charged
        ProductCall("交通出行", D("1.00"), D("1.00"), True),
    ]
    report = revenue_by_scenario(calls)
    assert list(report) == sorted(["普惠金融", "交通出行"])
    finance = report["普惠金融"]
    assert (finance.calls, finance.charged_calls) == (3, 2)
    assert finance.revenue == D("8.00") and finance.max_allowed == D("10.00")
    assert finance.within
    assert finance.to_json() == {
        "scenario": "普惠金融",
        "calls": 3,
        "charged_calls": 2,
        "revenue": "8.00",
        "max_allowed_revenue": "10.00",
        "within": True,
    }
    assert report["交通出行"].revenue == report["交通出行"].max_allowed


def test_a_call_recorded_above_its_cap_is_refused() -> None:
    with pytest.raises(CapExceeded, match="above the cap"):
        ProductCall("普惠金融", D("5.01"), D("5.00"), True)


def test_fen_round_trips() -> None:
    assert from_fen(1234) == D("12.34") and to_fen(D("12.34")) == 1234
    with pytest.raises(ProductPriceError):
        from_fen(-1)
