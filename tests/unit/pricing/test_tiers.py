"""Volume tiers and per-dataset multipliers in price schedules: parsing, validation, JSON."""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from pricing import PriceItem, PriceSchedule, PriceTier, ScheduleError, parse_schedule

TIERED_ITEM: dict[str, Any] = {
    "unit": "rows",
    "per": 10000,
    "level": "L3",
    "tiers": [
        {"up_to": 1000000, "price": "0.10"},
        {"up_to": 5000000, "price": "0.08"},
        {"up_to": None, "price": "0.05"},
    ],
}
JAN = datetime(2026, 1, 1, tzinfo=UTC)


def schedule_with(*items: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "name": "2026 fees",
        "effective_from": "2026-01-01T00:00:00Z",
        "items": list(items),
        **fields,
    }


def tiered(*tiers: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"unit": "rows", "per": 10000, "tiers": list(tiers), **fields}


def schedule_error(obj: Any) -> str:
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(obj)
    assert caught.value.code == "invalid_price_schedule"
    return str(caught.value)


def test_parses_tiers_and_multipliers() -> None:
    schedule = parse_schedule(
        schedule_with(
            {"unit": "call", "price": "2"},
            TIERED_ITEM,
            multipliers={"人口库": "1.5", "enterprise": "0.80"},
        )
    )
    assert schedule.items[1] == PriceItem(
        "rows",
        per=10000,
        level="L3",
        tiers=(
            PriceTier(1_000_000, Decimal("0.10")),
            PriceTier(5_000_000, Decimal("0.08")),
            PriceTier(None, Decimal("0.05")),
        ),
    )
    assert schedule.items[1].price is None
    assert schedule.items[1].prices == (Decimal("0.10"), Decimal("0.08"), Decimal("0.05"))
    assert schedule.items[0].prices == (Decimal("2.00"),)
    assert dict(schedule.multipliers) == {"enterprise": Decimal("0.80"), "人口库": Decimal("1.50")}
    assert schedule.multiplier("人口库") == Decimal("1.50")
    assert schedule.multiplier("weather") == Decimal(1)


def test_tiers_and_multipliers_round_trip_through_json() -> None:
    obj = schedule_with(
        {"unit": "call", "price": "2"}, TIERED_ITEM, multipliers={"population": "1.5"}
    )
    schedule = parse_schedule(obj)
    as_json = schedule.to_json()
    assert as_json["items"][1] == {
        "unit": "rows",
        "per": 10000,
        "level": "L3",
        "tiers": [
            {"up_to": 1000000, "price": "0.10"},
            {"up_to": 5000000, "price": "0.08"},
            {"up_to": None, "price": "0.05"},
        ],
    }
    assert as_json["multipliers"] == {"population": "1.50"}
    assert parse_schedule(as_json) == schedule
    assert parse_schedule(as_json).to_json() == as_json


def test_a_schedule_without_multipliers_keeps_its_old_json_shape() -> None:
    schedule = parse_schedule(schedule_with({"unit": "call", "price": "2"}))
    assert "multipliers" not in schedule.to_json()
    assert schedule.multipliers == {}


def test_a_single_open_tier_is_allowed() -> None:
    schedule = parse_schedule(schedule_with(tiered({"up_to": None, "price": "0.10"})))
    assert schedule.items[0].tiers == (PriceTier(None, Decimal("0.10")),)


def test_equal_tier_prices_are_allowed() -> None:
    schedule = parse_schedule(
        schedule_with(tiered({"up_to": 10, "price": "0.10"}, {"up_to": None, "price": "0.10"}))
    )
    assert schedule.items[0].prices == (Decimal("0.10"), Decimal("0.10"))


def test_tiers_must_strictly_increase() -> None:
    message = schedule_error(
        schedule_with(
            {"unit": "call", "price": "2"},
            tiered(
                {"up_to": 1000, "price": "0.10"},
                {"up_to": 1000, "price": "0.08"},
                {"up_to": None, "price": "0.05"},
            ),
        )
    )
    assert message == (
        "items[1].tiers[1].up_to: 1000 is not above tiers[0].up_to 1000; "
        "list tiers in order with strictly increasing up_to"
    )


def test_the_last_tier_must_be_open() -> None:
    message = schedule_error(
        schedule_with(tiered({"up_to": 1000, "price": "0.10"}, {"up_to": 5000, "price": "0.08"}))
    )
    assert message.startswith(
        "items[0].tiers[1].up_to: the last tier must be open-ended; set its up_to to null"
    )


def test_only_the_last_tier_may_be_open() -> None:
    message = schedule_error(
        schedule_with(tiered({"up_to": None, "price": "0.10"}, {"up_to": None, "price": "0.08"}))
    )
    assert message.startswith("items[0].tiers[0].up_to: only the last tier is open-ended (null)")


def test_tier_prices_must_not_increase_and_the_message_says_why() -> None:
    message = schedule_error(
        schedule_with(
            tiered({"up_to": 1000, "price": "0.08"}, {"up_to": None, "price": "0.10"}, level="L2")
        )
    )
    assert message.startswith("items[0].tiers[1].price: 0.10 is above tiers[0].price 0.08; ")
    assert "must stay an upper bound when other jobs of the same month settle first" in message


def test_price_and_tiers_together_are_refused() -> None:
    item = {**tiered({"up_to": None, "price": "0.10"}), "price": "0.10"}
    message = schedule_error(schedule_with({"unit": "call", "price": "2"}, item))
    assert message.startswith(
        "items[1].tiers: an item has either a flat price or volume tiers, not both"
    )


def test_neither_price_nor_tiers_is_refused() -> None:
    message = schedule_error(schedule_with({"unit": "rows", "per": 10000, "level": "L3"}))
    assert message.startswith("items[0].price: missing")
    assert "tiers" in message


def test_tiers_only_on_rows() -> None:
    message = schedule_error(
        schedule_with({"unit": "compute_seconds", "tiers": [{"up_to": None, "price": "0.01"}]})
    )
    assert message.startswith("items[0].tiers: only 'rows' items take tiers")
    assert "flat 'price'" in message


@pytest.mark.parametrize(
    ("tiers", "message"),
    [
        ([], "items[0].tiers: must be a non-empty list of tiers"),
        ("0.10", "items[0].tiers: must be a non-empty list of tiers"),
        ([7], "items[0].tiers[0]: a tier must be an object"),
        ([{"price": "0.10"}], "items[0].tiers[0].up_to: missing"),
        ([{"up_to": None}], "items[0].tiers[0].price: missing"),
        (
            [{"up_to": None, "price": "0.10", "from": 0}],
            "items[0].tiers[0].from: unknown field; a tier has up_to, price",
        ),
        (
            [{"up_to": 0, "price": "0.1"}, {"up_to": None, "price": "0.1"}],
            "items[0].tiers[0].up_to: 0 is not a positive whole number",
        ),
        (
            [{"up_to": "1000", "price": "0.1"}, {"up_to": None, "price": "0.1"}],
            "items[0].tiers[0].up_to: '1000' is not a positive",
        ),
        (
            [{"up_to": 1.5, "price": "0.1"}, {"up_to": None, "price": "0.1"}],
            "items[0].tiers[0].up_to: 1.5 is not a positive",
        ),
        (
            [{"up_to": 10, "price": "0.1"}, {"up_to": None, "price": "0.001"}],
            "items[0].tiers[1].price: price '0.001' has more than 2 decimal places",
        ),
        ([{"up_to": None, "price": 0.1}], "items[0].tiers[0].price: price 0.1 is a float"),
    ],
)
def test_malformed_tiers_name_the_tier_and_field(tiers: Any, message: str) -> None:
    assert schedule_error(schedule_with({"unit": "rows", "per": 10000, "tiers": tiers})).startswith(
        message
    )


def test_tiers_are_validated_on_direct_construction_too() -> None:
    with pytest.raises(
        ScheduleError, match=r"tiers\[1\].price: 0.20 is above tiers\[0\].price 0.10"
    ):
        PriceItem(
            "rows",
            per=10000,
            tiers=(PriceTier(10, Decimal("0.10")), PriceTier(None, Decimal("0.20"))),
        )
    with pytest.raises(ScheduleError, match=r"tiers\[0\]: expected a PriceTier"):
        PriceItem("rows", tiers=({"up_to": None, "price": "0.10"},))  # type: ignore[arg-type]
    with pytest.raises(ScheduleError, match="price: missing"):
        PriceItem("rows")
    with pytest.raises(ScheduleError, match="up_to: -5 is not a positive whole number"):
        PriceTier(-5, Decimal("0.10"))


@pytest.mark.parametrize(
    ("multipliers", "message"),
    [
        ({"population": "0"}, "multipliers['population']: 0 is not above 0 and at most 10"),
        ({"population": "-1"}, "multipliers['population']: -1 is not above 0 and at most 10"),
        ({"population": "10.01"}, "multipliers['population']: 10.01 is not above 0 and at most 10"),
        (
            {"population": "1.255"},
            "multipliers['population']: 1.255 has more than 2 decimal places",
        ),
        (
            {"population": 1.5},
            "multipliers['population']: 1.5 is a float; write it as a decimal string",
        ),
        (
            {"population": 2},
            "multipliers['population']: must be a decimal string such as \"1.50\", not int",
        ),
        (
            {"population": "NaN"},
            "multipliers['population']: Decimal('NaN') is not a finite Decimal",
        ),
        ({"population": "lots"}, "multipliers['population']: 'lots' is not a decimal number"),
        ({"population": "1e0"}, "multipliers['population']: '1e0' is not written as plain digits"),
        ({"": "1.50"}, "multipliers: '' is not a dataset name"),
        ({"  ": "1.50"}, "multipliers: '  ' is not a dataset name"),
        (["population"], "multipliers: must be an object mapping a dataset name"),
    ],
)
def test_bad_multipliers_name_the_dataset_and_the_rule(multipliers: Any, message: str) -> None:
    obj = schedule_with({"unit": "call", "price": "2"}, multipliers=multipliers)
    assert schedule_error(obj).startswith(message)


def test_multiplier_bounds_are_inclusive_at_ten_and_exclusive_at_zero() -> None:
    schedule = parse_schedule(
        schedule_with({"unit": "call", "price": "2"}, multipliers={"a": "10", "b": "0.01"})
    )
    assert schedule.to_json()["multipliers"] == {"a": "10.00", "b": "0.01"}


def test_direct_construction_copies_and_checks_multipliers() -> None:
    given = {"population": Decimal("1.5")}
    schedule = PriceSchedule("fees", JAN, (PriceItem("call", Decimal("2")),), given)
    given["population"] = Decimal("9")
    assert schedule.multipliers == {"population": Decimal("1.50")}
    with pytest.raises(
        ScheduleError, match=r"multipliers\['population'\]: .* is not a finite Decimal"
    ):
        PriceSchedule("fees", JAN, (PriceItem("call", Decimal("2")),), {"population": 1.5})  # type: ignore[dict-item]
