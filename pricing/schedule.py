"""Price schedules: the bureau's published fees, versioned by an effective time.

Billing units follow the 2025 national price-formation notice: per call, per
data volume (rows scanned, optionally by classification level), per service
time (compute seconds) and per product (released output).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Literal, get_args

from pricing.errors import MoneyError, ScheduleError
from pricing.money import check_money, format_money, parse_money

Unit = Literal["call", "rows", "compute_seconds", "output"]
UNITS: tuple[Unit, ...] = get_args(Unit)
LEVELS: tuple[str, ...] = ("L1", "L2", "L3", "L4")

_ITEM_FIELDS = ("unit", "price", "per", "level")
_SCHEDULE_FIELDS = ("name", "effective_from", "items")
_EXAMPLE_TIME = '"2026-01-01T00:00:00Z"'


@dataclass(frozen=True)
class PriceItem:
    """One fee: ``price`` yuan per ``per`` units.

    ``level`` narrows a rows price to one classification level.
    """

    unit: Unit
    price: Decimal
    per: int = 1
    level: str | None = None

    def __post_init__(self) -> None:
        # Messages start with the field name so parse_schedule can prefix the item's index.
        _check_unit(self.unit)
        object.__setattr__(self, "price", _check_price(self.price))
        _check_per(self.per)
        _check_level(self.unit, self.level)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"unit": self.unit, "price": format_money(self.price)}
        if self.per != 1:
            out["per"] = self.per
        if self.level is not None:
            out["level"] = self.level
        return out


@dataclass(frozen=True)
class PriceSchedule:
    """A named, versioned set of fees in force from ``effective_from`` (normalised to UTC)."""

    name: str
    effective_from: datetime
    items: tuple[PriceItem, ...]

    def __post_init__(self) -> None:
        _check_name(self.name)
        object.__setattr__(self, "effective_from", _check_effective_from(self.effective_from))
        object.__setattr__(self, "items", _check_items(self.items))

    def price_for(self, unit: Unit, level: str | None = None) -> PriceItem | None:
        """The item pricing ``unit`` at ``level``; a level-specific item beats a level-less one."""
        fallback: PriceItem | None = None
        for item in self.items:
            if item.unit != unit:
                continue
            if level is not None and item.level == level:
                return item
            if item.level is None:
                fallback = item
        return fallback

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "effective_from": _iso_utc(self.effective_from),
            "items": [item.to_json() for item in self.items],
        }


def parse_schedule(obj: Mapping[str, Any]) -> PriceSchedule:
    """Build a schedule from its JSON form, naming the offending item and field on error."""
    if not isinstance(obj, Mapping):
        raise ScheduleError(
            "a price schedule must be a JSON object with name, effective_from and items"
        )
    for key in obj:
        if key not in _SCHEDULE_FIELDS:
            raise ScheduleError(
                f"{key}: unknown field; a price schedule has {', '.join(_SCHEDULE_FIELDS)}"
            )
    return PriceSchedule(
        name=obj.get("name"),  # type: ignore[arg-type]  # validated in __post_init__
        effective_from=_parse_time(obj.get("effective_from")),
        items=_parse_items(obj.get("items")),
    )


def _parse_time(raw: object) -> datetime:
    if isinstance(raw, datetime):
        return raw
    if raw is None:
        raise ScheduleError(
            f"effective_from: missing; give an ISO 8601 time such as {_EXAMPLE_TIME}"
        )
    if not isinstance(raw, str):
        raise ScheduleError(
            f"effective_from: must be an ISO 8601 string such as {_EXAMPLE_TIME}, "
            f"not {type(raw).__name__}"
        )
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        raise ScheduleError(
            f"effective_from: {raw!r} is not an ISO 8601 time; write e.g. {_EXAMPLE_TIME}"
        ) from None


def _parse_items(raw: object) -> tuple[PriceItem, ...]:
    if raw is None:
        raise ScheduleError(
            'items: missing; give a list of price items such as [{"unit": "call", "price": "2.00"}]'
        )
    if isinstance(raw, (str, bytes)) or not isinstance(raw, Sequence):
        raise ScheduleError(
            f'items: must be a list of price items such as [{{"unit": "call", "price": "2.00"}}], '
            f"not {type(raw).__name__}"
        )
    items: list[PriceItem] = []
    for index, raw_item in enumerate(raw):
        if not isinstance(raw_item, Mapping):
            raise ScheduleError(
                f"items[{index}]: a price item must be an object such as "
                f'{{"unit": "call", "price": "2.00"}}, not {type(raw_item).__name__}'
            )
        try:
            items.append(_parse_item(raw_item))
        except ScheduleError as error:
            raise ScheduleError(f"items[{index}].{error.message}") from None
    return tuple(items)


def _parse_item(raw: Mapping[str, Any]) -> PriceItem:
    for key in raw:
        if key not in _ITEM_FIELDS:
            raise ScheduleError(f"{key}: unknown field; a price item has {', '.join(_ITEM_FIELDS)}")
    if "unit" not in raw:
        raise ScheduleError(f"unit: missing; use one of {', '.join(UNITS)}")
    if "price" not in raw:
        raise ScheduleError(
            'price: missing; give the price as a decimal string of yuan such as "0.10"'
        )
    try:
        price = parse_money(raw["price"], what="price")
    except MoneyError as error:
        raise ScheduleError(f"price: {error.message}") from None
    return PriceItem(unit=raw["unit"], price=price, per=raw.get("per", 1), level=raw.get("level"))


def _check_unit(unit: object) -> None:
    if unit not in UNITS:
        raise ScheduleError(f"unit: {unit!r} is not a billing unit; use one of {', '.join(UNITS)}")


def _check_price(price: object) -> Decimal:
    try:
        return check_money(price, what="price")  # type: ignore[arg-type]  # checked inside
    except MoneyError as error:
        raise ScheduleError(f"price: {error.message}") from None


def _check_per(per: object) -> None:
    if isinstance(per, bool) or not isinstance(per, int) or per < 1:
        raise ScheduleError(
            f"per: {per!r} is not a positive whole number; "
            "give how many units the price covers, e.g. 10000 for a price per 10000 rows"
        )


def _check_level(unit: object, level: object) -> None:
    if level is None:
        return
    if level not in LEVELS:
        raise ScheduleError(
            f"level: {level!r} is not a classification level; use one of {', '.join(LEVELS)}"
        )
    if unit != "rows":
        raise ScheduleError(
            f"level: only 'rows' items take a level (rows scanned are priced by the dataset's "
            f"classification level); remove 'level' from this {unit!r} item or set unit to 'rows'"
        )


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name.strip():
        raise ScheduleError('name: a price schedule needs a non-empty name such as "2026 fees"')


def _check_effective_from(moment: object) -> datetime:
    if not isinstance(moment, datetime):
        raise ScheduleError(f"effective_from: must be a datetime such as {_EXAMPLE_TIME}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ScheduleError(
            f"effective_from: {moment.isoformat()!r} has no time zone; "
            "add 'Z' for UTC or an offset such as '+08:00'"
        )
    return moment.astimezone(timezone.utc)


def _check_items(items: object) -> tuple[PriceItem, ...]:
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise ScheduleError("items: must be a sequence of PriceItem")
    checked = tuple(items)
    if not checked:
        raise ScheduleError(
            "items: a price schedule needs at least one item, "
            'e.g. {"unit": "call", "price": "2.00"}'
        )
    seen: dict[tuple[str, str | None], int] = {}
    for index, item in enumerate(checked):
        if not isinstance(item, PriceItem):
            raise ScheduleError(
                f"items[{index}]: expected a PriceItem, not {type(item).__name__}; "
                "build schedules from JSON with parse_schedule"
            )
        key = (item.unit, item.level)
        if key in seen:
            at_level = f" at level {item.level!r}" if item.level else " without a level"
            raise ScheduleError(
                f"items[{index}]: unit {item.unit!r}{at_level} is already priced by "
                f"items[{seen[key]}]; keep one of them"
            )
        seen[key] = index
    return checked


def _iso_utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
