"""Price caps (上限收费标准): parsing, and refusing schedules priced above them."""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from pricing import (
    CapExceeded,
    CapItem,
    CapsError,
    PriceCaps,
    check_caps,
    parse_caps,
    parse_schedule,
)

JAN = datetime(2026, 1, 1, tzinfo=UTC)


def caps_of(*items: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "name": "2026 caps",
        "effective_from": "2026-01-01T00:00:00Z",
        "items": list(items),
        **fields,
    }


def schedule_of(*items: dict[str, Any], **multipliers: str) -> Any:
    return parse_schedule(
        {
            "name": "fees",
            "effective_from": "2026-01-01T00:00:00Z",
            "items": list(items),
            "multipliers": multipliers,
        }
    )


def exceeded(schedule: Any, *caps: dict[str, Any]) -> str:
    with pytest.raises(CapExceeded) as caught:
        check_caps(schedule, parse_caps(caps_of(*caps)))
    assert caught.value.code == "price_above_cap"
    return str(caught.value)


L3_CAP = {"unit": "rows", "per": 10000, "max_price": "0.12", "level": "L3"}


# --- parsing ----------------------------------------------------------------------


def test_parses_and_round_trips() -> None:
    obj = caps_of({"unit": "call", "max_price": "5"}, L3_CAP, name="2026年公共数据授权运营收费上限")
    caps = parse_caps(obj)
    assert caps.items == (
        CapItem("call", Decimal("5.00")),
        CapItem("rows", Decimal("0.12"), 10000, "L3"),
    )
    assert caps.effective_from == JAN
    as_json = caps.to_json()
    assert as_json["items"] == [{"unit": "call", "max_price": "5.00"}, L3_CAP]
    assert as_json["name"] == "2026年公共数据授权运营收费上限"
    assert parse_caps(as_json) == caps
    assert parse_caps(as_json).to_json() == as_json


def test_cap_for_prefers_the_level_cap() -> None:
    caps = parse_caps(caps_of({"unit": "rows", "max_price": "0.10", "per": 10000}, L3_CAP))
    assert caps.cap_for("rows", "L3") == CapItem("rows", Decimal("0.12"), 10000, "L3")
    assert caps.cap_for("rows", "L1") == CapItem("rows", Decimal("0.10"), 10000)
    assert caps.cap_for("output") is None


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (caps_of({"unit": "call"}), "items[0].max_price: missing; give the highest price allowed"),
        (
            caps_of({"unit": "call", "price": "2"}),
            "items[0].price: unknown field; a cap has unit, max_price, per, level",
        ),
        (caps_of({"max_price": "2"}), "items[0].unit: missing; use one of call, rows"),
        (
            caps_of({"unit": "minutes", "max_price": "2"}),
            "items[0].unit: 'minutes' is not a billing unit",
        ),
        (
            caps_of({"unit": "call", "max_price": "2.001"}),
            "items[0].max_price: max_price '2.001' has more than 2 decimal places",
        ),
        (
            caps_of({"unit": "call", "max_price": 2.5}),
            "items[0].max_price: max_price 2.5 is a float",
        ),
        (
            caps_of({"unit": "call", "max_price": "-1"}),
            "items[0].max_price: max_price '-1' is negative",
        ),
        (
            caps_of({"unit": "rows", "max_price": "1", "per": 0}),
            "items[0].per: 0 is not a positive whole number",
        ),
        (
            caps_of({"unit": "rows", "max_price": "1", "level": "L5"}),
            "items[0].level: 'L5' is not a classification level",
        ),
        (
            caps_of({"unit": "call", "max_price": "1", "level": "L1"}),
            "items[0].level: only 'rows' items take a level",
        ),
        (
            caps_of(L3_CAP, {"unit": "call", "max_price": "1"}, L3_CAP),
            "items[2]: unit 'rows' at level 'L3' is already capped by items[0]",
        ),
        (caps_of(), "items: price caps need at least one cap"),
        (caps_of("call"), "items[0]: a cap must be an object"),
        (caps_of(items="call"), "items: must be a list of caps"),
        ({"name": "c", "effective_from": "2026-01-01T00:00:00Z"}, "items: missing"),
        (caps_of(L3_CAP, name=" "), "name: price caps need a non-empty name"),
        (
            caps_of(L3_CAP, effective_from="2026-01-01T00:00:00"),
            "effective_from: '2026-01-01T00:00:00' has no time zone",
        ),
        (caps_of(L3_CAP, effective_from="soon"), "effective_from: 'soon' is not an ISO 8601 time"),
        (
            caps_of(L3_CAP, currency="CNY"),
            "currency: unknown field; price caps have name, effective_from, items",
        ),
        (["caps"], "price caps must be a JSON object"),
    ],
)
def test_parse_errors_name_the_item_and_field(obj: Any, message: str) -> None:
    with pytest.raises(CapsError) as caught:
        parse_caps(obj)
    assert caught.value.code == "invalid_price_caps"
    assert str(caught.value).startswith(message)


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(CapsError, match=r"items\[0\]: expected a CapItem"):
        PriceCaps("caps", JAN, ({"unit": "call"},))  # type: ignore[arg-type]
    with pytest.raises(CapsError, match="max_price: max_price is a float"):
        CapItem("call", 2.0)  # type: ignore[arg-type]


# --- checking a schedule -------------------------------------------------------------


def test_a_schedule_at_the_cap_passes() -> None:
    schedule = schedule_of(
        {"unit": "call", "price": "2"},
        {"unit": "rows", "per": 10000, "price": "0.12", "level": "L3"},
    )
    check_caps(schedule, parse_caps(caps_of(L3_CAP, {"unit": "call", "max_price": "2.00"})))


def test_one_fen_above_the_cap_fails_naming_the_item_and_both_prices() -> None:
    schedule = schedule_of(
        {"unit": "call", "price": "2"},
        {"unit": "rows", "per": 10000, "price": "0.13", "level": "L3"},
    )
    assert exceeded(schedule, L3_CAP) == (
        "items[1].price (rows at level L3): 0.13 yuan per 10000 rows is 0.000013 yuan per row, "
        "above the cap 0.12 yuan per 10000 rows (0.000012 yuan per row) on rows at level L3 "
        "in '2026 caps'; lower it to at most 0.12 yuan per 10000 rows"
    )


def test_prices_are_compared_per_single_unit_whatever_each_side_uses_as_per() -> None:
    cap = {"unit": "rows", "per": 1000000, "max_price": "12.00"}  # 0.000012 per row
    check_caps(
        schedule_of({"unit": "rows", "per": 10000, "price": "0.12"}), parse_caps(caps_of(cap))
    )
    message = exceeded(schedule_of({"unit": "rows", "per": 3, "price": "0.01"}), cap)
    assert "0.01 yuan per 3 rows is ≈0.003333333333 yuan per row" in message
    assert "lower it to at most 0.00 yuan per 3 rows" in message


def test_every_tier_counts() -> None:
    tiers = [{"up_to": 1000000, "price": "0.13"}, {"up_to": None, "price": "0.10"}]
    message = exceeded(
        schedule_of({"unit": "rows", "per": 10000, "level": "L3", "tiers": tiers}), L3_CAP
    )
    assert message.startswith(
        "items[0].tiers[0].price (rows at level L3): 0.13 yuan per 10000 rows"
    )
    at_cap = [{"up_to": 1000000, "price": "0.12"}, {"up_to": None, "price": "0.10"}]
    check_caps(
        schedule_of({"unit": "rows", "per": 10000, "level": "L3", "tiers": at_cap}),
        parse_caps(caps_of(L3_CAP)),
    )


def test_the_largest_multiplier_counts() -> None:
    rows_item = {"unit": "rows", "per": 10000, "price": "0.08", "level": "L3"}
    check_caps(
        schedule_of(rows_item, population="1.50", weather="1.20"), parse_caps(caps_of(L3_CAP))
    )
    message = exceeded(schedule_of(rows_item, population="1.51", weather="1.20"), L3_CAP)
    assert message.startswith(
        "items[0].price (rows at level L3): 0.08 yuan per 10000 rows × multiplier 1.51 of 'population' "
        "is 0.00001208 yuan per row, above the cap"
    )
    assert message.endswith("lower it to at most 0.07 yuan per 10000 rows or lower the multiplier")


def test_multipliers_below_one_do_not_lower_the_price_checked() -> None:
    message = exceeded(
        schedule_of(
            {"unit": "rows", "per": 10000, "price": "0.13", "level": "L3"}, population="0.50"
        ),
        L3_CAP,
    )
    assert "× multiplier" not in message
    assert "0.13 yuan per 10000 rows is 0.000013 yuan per row" in message


def test_multipliers_apply_to_rows_only() -> None:
    schedule = schedule_of({"unit": "call", "price": "2.00"}, population="2")
    check_caps(schedule, parse_caps(caps_of({"unit": "call", "max_price": "2.00"})))


def test_a_level_cap_beats_the_level_less_cap() -> None:
    caps = ({"unit": "rows", "per": 10000, "max_price": "0.10"}, {**L3_CAP, "max_price": "0.20"})
    check_caps(
        schedule_of({"unit": "rows", "per": 10000, "price": "0.15", "level": "L3"}),
        parse_caps(caps_of(*caps)),
    )
    message = exceeded(
        schedule_of({"unit": "rows", "per": 10000, "price": "0.15", "level": "L1"}), *caps
    )
    assert message.startswith("items[0].price (rows at level L1): 0.15 yuan per 10000 rows")
    assert (
        "above the cap 0.10 yuan per 10000 rows (0.00001 yuan per row) on rows at level L1"
        in message
    )


def test_a_level_less_rows_item_is_held_to_the_cap_of_each_level_it_prices() -> None:
    l1_cap = {"unit": "rows", "per": 10000, "max_price": "0.05", "level": "L1"}
    schedule = schedule_of({"unit": "rows", "per": 10000, "price": "0.10"})
    message = exceeded(schedule, l1_cap)
    assert message.startswith("items[0].price (rows): 0.10 yuan per 10000 rows")
    assert "on rows at level L1" in message
    # Once L1 has an item of its own, the level-less item no longer prices L1 rows.
    own_l1 = schedule_of(
        {"unit": "rows", "per": 10000, "price": "0.10"},
        {"unit": "rows", "per": 10000, "price": "0.05", "level": "L1"},
    )
    check_caps(own_l1, parse_caps(caps_of(l1_cap)))


def test_units_without_a_cap_are_unconstrained() -> None:
    schedule = schedule_of(
        {"unit": "output", "price": "1000.00"},
        {"unit": "rows", "per": 10000, "price": "0.12", "level": "L3"},
    )
    check_caps(schedule, parse_caps(caps_of(L3_CAP)))
