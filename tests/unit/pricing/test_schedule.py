from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from pricing import PriceItem, PriceSchedule, ScheduleError, parse_schedule

API_EXAMPLE: dict[str, Any] = {
    "name": "2026 fees",
    "effective_from": "2026-01-01T00:00:00Z",
    "items": [
        {"unit": "call", "price": "2.00"},
        {"unit": "rows", "per": 10000, "price": "0.10", "level": "L3"},
        {"unit": "compute_seconds", "price": "0.01"},
        {"unit": "output", "price": "0.50"},
    ],
}


def schedule_with(*items: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "name": "2026 fees",
        "effective_from": "2026-01-01T00:00:00Z",
        "items": list(items),
        **fields,
    }


def schedule_error(obj: Any) -> str:
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(obj)
    assert caught.value.code == "invalid_price_schedule"
    return str(caught.value)


def test_parses_the_api_example() -> None:
    schedule = parse_schedule(API_EXAMPLE)
    assert schedule.name == "2026 fees"
    assert schedule.effective_from == datetime(2026, 1, 1, tzinfo=UTC)
    assert schedule.items == (
        PriceItem("call", Decimal("2.00")),
        PriceItem("rows", Decimal("0.10"), per=10000, level="L3"),
        PriceItem("compute_seconds", Decimal("0.01")),
        PriceItem("output", Decimal("0.50")),
    )


def test_to_json_gives_the_api_shape_and_round_trips() -> None:
    schedule = parse_schedule(API_EXAMPLE)
    as_json = schedule.to_json()
    assert as_json["effective_from"] == "2026-01-01T00:00:00Z"
    assert as_json["items"][1] == {"unit": "rows", "price": "0.10", "per": 10000, "level": "L3"}
    assert as_json["items"][0] == {"unit": "call", "price": "2.00"}
    assert parse_schedule(as_json) == schedule
    assert parse_schedule(as_json).to_json() == as_json


def test_chinese_schedule_name_round_trips() -> None:
    schedule = parse_schedule(
        schedule_with({"unit": "call", "price": "2"}, name="2026年公共数据授权运营收费标准")
    )
    assert schedule.to_json()["name"] == "2026年公共数据授权运营收费标准"
    assert parse_schedule(schedule.to_json()).name == "2026年公共数据授权运营收费标准"


def test_effective_from_with_an_offset_is_normalised_to_utc() -> None:
    schedule = parse_schedule(
        schedule_with({"unit": "call", "price": "2"}, effective_from="2026-01-01T08:00:00+08:00")
    )
    assert schedule.effective_from.utcoffset() == timedelta(0)
    assert schedule.to_json()["effective_from"] == "2026-01-01T00:00:00Z"


def test_price_for_prefers_the_level_item_and_falls_back_to_the_level_less_one() -> None:
    schedule = parse_schedule(
        schedule_with(
            {"unit": "rows", "per": 10000, "price": "0.05"},
            {"unit": "rows", "per": 10000, "price": "0.20", "level": "L4"},
            {"unit": "call", "price": "2.00"},
        )
    )
    assert schedule.price_for("rows", "L4") == PriceItem("rows", Decimal("0.20"), 10000, "L4")
    assert schedule.price_for("rows", "L2") == PriceItem("rows", Decimal("0.05"), 10000)
    assert schedule.price_for("rows") == PriceItem("rows", Decimal("0.05"), 10000)
    assert schedule.price_for("call", "L3") == PriceItem("call", Decimal("2.00"))
    assert schedule.price_for("output") is None


def test_price_for_without_a_level_less_rows_item_is_none_for_other_levels() -> None:
    schedule = parse_schedule(
        schedule_with({"unit": "rows", "per": 10000, "price": "0.10", "level": "L3"})
    )
    assert schedule.price_for("rows", "L3") is not None
    assert schedule.price_for("rows", "L1") is None
    assert schedule.price_for("rows") is None


def test_unknown_unit_lists_the_valid_ones() -> None:
    message = schedule_error(
        schedule_with({"unit": "call", "price": "1"}, {"unit": "row", "price": "1"})
    )
    assert (
        message
        == "items[1].unit: 'row' is not a billing unit; use one of call, rows, compute_seconds, output"
    )


def test_missing_unit_names_the_item() -> None:
    assert schedule_error(schedule_with({"price": "1"})).startswith(
        "items[0].unit: missing; use one of call"
    )


def test_missing_price_names_the_item_and_the_format() -> None:
    message = schedule_error(schedule_with({"unit": "call", "price": "1"}, {"unit": "output"}))
    assert message.startswith("items[1].price: missing")
    assert '"0.10"' in message


def test_sub_fen_price_names_the_item_and_the_fen_rule() -> None:
    message = schedule_error(
        schedule_with(
            {"unit": "call", "price": "1"}, {"unit": "call", "price": "0.001", "level": None}
        )
    )
    assert message == (
        "items[1].price: price '0.001' has more than 2 decimal places; prices are in yuan with fen precision"
    )


@pytest.mark.parametrize(
    ("price", "reason"),
    [
        (0.5, "float"),
        (2, "decimal string"),
        ("-1", "negative"),
        ("NaN", "finite"),
        ("two", "not a decimal number"),
    ],
)
def test_invalid_price_names_the_item(price: object, reason: str) -> None:
    message = schedule_error(schedule_with({"unit": "output", "price": price}))
    assert message.startswith("items[0].price: ")
    assert reason in message


@pytest.mark.parametrize("per", [0, -10000, "10000", 1.5, True, None])
def test_per_must_be_a_positive_integer(per: object) -> None:
    message = schedule_error(schedule_with({"unit": "rows", "per": per, "price": "0.10"}))
    assert message.startswith(f"items[0].per: {per!r} is not a positive whole number")
    assert "10000 for a price per 10000 rows" in message


def test_level_must_be_l1_to_l4() -> None:
    message = schedule_error(schedule_with({"unit": "rows", "price": "0.10", "level": "L5"}))
    assert (
        message == "items[0].level: 'L5' is not a classification level; use one of L1, L2, L3, L4"
    )


def test_level_only_on_rows() -> None:
    message = schedule_error(
        schedule_with({"unit": "compute_seconds", "price": "0.01", "level": "L2"})
    )
    assert message.startswith("items[0].level: only 'rows' items take a level")
    assert "remove 'level' from this 'compute_seconds' item" in message


def test_two_items_for_the_same_unit_and_level() -> None:
    message = schedule_error(
        schedule_with(
            {"unit": "rows", "price": "0.10", "level": "L3", "per": 10000},
            {"unit": "call", "price": "2"},
            {"unit": "rows", "price": "0.20", "level": "L3", "per": 10000},
        )
    )
    assert (
        message
        == "items[2]: unit 'rows' at level 'L3' is already priced by items[0]; keep one of them"
    )


def test_two_level_less_items_for_the_same_unit() -> None:
    message = schedule_error(
        schedule_with({"unit": "call", "price": "2"}, {"unit": "call", "price": "3"})
    )
    assert (
        message
        == "items[1]: unit 'call' without a level is already priced by items[0]; keep one of them"
    )


def test_a_level_item_and_a_level_less_item_for_rows_may_coexist() -> None:
    schedule = parse_schedule(
        schedule_with(
            {"unit": "rows", "price": "0.10"}, {"unit": "rows", "price": "0.20", "level": "L4"}
        )
    )
    assert len(schedule.items) == 2


def test_naive_effective_from_asks_for_a_time_zone() -> None:
    message = schedule_error(
        schedule_with({"unit": "call", "price": "2"}, effective_from="2026-01-01T00:00:00")
    )
    assert message.startswith("effective_from: '2026-01-01T00:00:00' has no time zone")
    assert "'Z'" in message


@pytest.mark.parametrize("value", ["2026-13-01T00:00:00Z", "next monday", ""])
def test_unparsable_effective_from(value: str) -> None:
    message = schedule_error(schedule_with({"unit": "call", "price": "2"}, effective_from=value))
    assert message.startswith(f"effective_from: {value!r} is not an ISO 8601 time")
    assert "2026-01-01T00:00:00Z" in message


def test_missing_effective_from() -> None:
    obj = schedule_with({"unit": "call", "price": "2"})
    del obj["effective_from"]
    assert schedule_error(obj).startswith("effective_from: missing")


@pytest.mark.parametrize("name", ["", "   ", None, 7])
def test_schedule_needs_a_name(name: object) -> None:
    message = schedule_error(schedule_with({"unit": "call", "price": "2"}, name=name))
    assert message.startswith("name: a price schedule needs a non-empty name")


def test_schedule_needs_items() -> None:
    assert schedule_error(schedule_with()).startswith(
        "items: a price schedule needs at least one item"
    )
    obj = schedule_with()
    del obj["items"]
    assert schedule_error(obj).startswith("items: missing")
    assert schedule_error(schedule_with(items="call")).startswith("items: must be a list")


def test_non_object_item_and_non_object_schedule() -> None:
    assert schedule_error(schedule_with({"unit": "call", "price": "2"}, "output")).startswith(
        "items[1]: a price item must be an object"
    )
    assert schedule_error(["not", "a", "mapping"]).startswith(
        "a price schedule must be a JSON object"
    )


def test_unknown_fields_are_named_with_the_valid_ones() -> None:
    message = schedule_error(schedule_with({"unit": "call", "prcie": "2"}))
    assert (
        message == "items[0].prcie: unknown field; a price item has unit, price, per, level, tiers"
    )
    message = schedule_error(schedule_with({"unit": "call", "price": "2"}, currency="USD"))
    assert (
        message
        == "currency: unknown field; a price schedule has name, effective_from, items, multipliers"
    )


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(ScheduleError, match="effective_from: .* has no time zone"):
        PriceSchedule("fees", datetime(2026, 1, 1), (PriceItem("call", Decimal("2")),))
    with pytest.raises(ScheduleError, match="price: .*float"):
        PriceItem("call", 2.0)  # type: ignore[arg-type]
    with pytest.raises(ScheduleError, match=r"items\[0\]: expected a PriceItem"):
        PriceSchedule("fees", datetime(2026, 1, 1, tzinfo=UTC), ({"unit": "call"},))  # type: ignore[arg-type]


def test_direct_construction_normalises_items_and_price() -> None:
    schedule = PriceSchedule(
        "fees",
        datetime(2026, 1, 1, tzinfo=UTC),
        [PriceItem("call", Decimal("2"))],  # type: ignore[arg-type]
    )
    assert isinstance(schedule.items, tuple)
    assert str(schedule.items[0].price) == "2.00"
