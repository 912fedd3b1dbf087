"""Price caps (上限收费标准): the most a published schedule may charge per unit.

Caps are written like a schedule, with ``max_price`` in place of ``price``. A
level-specific cap beats a level-less one for the same unit; a unit without a
cap is unconstrained.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any, TypeVar

from pricing.errors import CapExceeded, CapsError, MoneyError, ScheduleError
from pricing.listing import check_unit_levels, index_for, parse_list
from pricing.money import check_money, format_money, parse_money, round_fen
from pricing.schedule import (
    LEVELS,
    UNITS,
    PriceItem,
    PriceSchedule,
    Unit,
    _check_effective_from,
    _check_level,
    _check_per,
    _check_unit,
    _iso_utc,
    _parse_time,
)

_CAP_FIELDS = ("unit", "max_price", "per", "level")
_CAPS_FIELDS = ("name", "effective_from", "items")
_EXAMPLE_CAP = '{"unit": "rows", "per": 10000, "max_price": "0.12", "level": "L3"}'
_NOUNS: Mapping[str, tuple[str, str]] = {
    "call": ("call", "calls"),
    "rows": ("row", "rows"),
    "compute_seconds": ("compute second", "compute seconds"),
    "output": ("output", "outputs"),
}
_T = TypeVar("_T")


@dataclass(frozen=True)
class CapItem:
    """The most a schedule may charge: ``max_price`` yuan per ``per`` units.

    ``level`` narrows a rows cap to one classification level.
    """

    unit: Unit
    max_price: Decimal
    per: int = 1
    level: str | None = None

    def __post_init__(self) -> None:
        # Messages start with the field name so parse_caps can prefix the item's index.
        _as_caps_error(_check_unit, self.unit)
        try:
            max_price = check_money(self.max_price, what="max_price")
        except MoneyError as error:
            raise CapsError(f"max_price: {error.message}") from None
        object.__setattr__(self, "max_price", max_price)
        _as_caps_error(_check_per, self.per)
        _as_caps_error(_check_level, self.unit, self.level)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"unit": self.unit, "max_price": format_money(self.max_price)}
        if self.per != 1:
            out["per"] = self.per
        if self.level is not None:
            out["level"] = self.level
        return out


@dataclass(frozen=True)
class PriceCaps:
    """A named set of caps in force from ``effective_from`` (normalised to UTC)."""

    name: str
    effective_from: datetime
    items: tuple[CapItem, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise CapsError('name: price caps need a non-empty name such as "2026 caps"')
        moment = _as_caps_error(_check_effective_from, self.effective_from)
        object.__setattr__(self, "effective_from", moment)
        object.__setattr__(self, "items", _check_cap_items(self.items))

    def cap_for(self, unit: Unit, level: str | None = None) -> CapItem | None:
        """The cap on ``unit`` at ``level``; a level-specific cap beats a level-less one."""
        index = index_for(self.items, unit, level)
        return None if index is None else self.items[index]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "effective_from": _iso_utc(self.effective_from),
            "items": [cap.to_json() for cap in self.items],
        }


def parse_caps(obj: Mapping[str, Any]) -> PriceCaps:
    """Build caps from their JSON form, naming the offending item and field on error."""
    if not isinstance(obj, Mapping):
        raise CapsError("price caps must be a JSON object with name, effective_from and items")
    for key in obj:
        if key not in _CAPS_FIELDS:
            raise CapsError(f"{key}: unknown field; price caps have {', '.join(_CAPS_FIELDS)}")
    return PriceCaps(
        name=obj.get("name"),  # type: ignore[arg-type]  # validated in __post_init__
        effective_from=_as_caps_error(_parse_time, obj.get("effective_from")),
        items=_parse_cap_items(obj.get("items")),
    )


def check_caps(schedule: PriceSchedule, caps: PriceCaps) -> None:
    """Refuse a schedule that charges any unit above its cap.

    Prices are compared per single unit, exactly: ``price / per`` against
    ``max_price / per`` of the cap, whatever ``per`` each side uses. Every tier
    of a tiered item must respect the cap, not just the first. A rows price is
    multiplied by the largest multiplier that can apply to it: multipliers name
    datasets, and any dataset may sit at any level, so that is the schedule's
    largest multiplier, or 1 when all are below 1 (datasets without one pay
    the plain price). An item is held to the cap of every level it prices: a
    level-less rows item to the caps of the levels without an item of their
    own (to the level-less cap when it prices none).
    """
    for index, item in enumerate(schedule.items):
        multiplier, scaled = (
            _largest_multiplier(schedule) if item.unit == "rows" else (Decimal(1), "")
        )
        for level in _levels_priced(schedule, index, item):
            cap = caps.cap_for(item.unit, level)
            if cap is None:
                continue
            for tier, price in enumerate(item.prices):
                charged = _per_unit(price, item.per) * Fraction(multiplier)
                if charged > _per_unit(cap.max_price, cap.per):
                    raise CapExceeded(
                        _above_cap(index, item, tier, price, multiplier, scaled, cap, level, caps)
                    )


def _levels_priced(schedule: PriceSchedule, index: int, item: PriceItem) -> list[str | None]:
    if item.unit != "rows" or item.level is not None:
        return [item.level]
    covered: list[str | None] = [
        level for level in LEVELS if schedule.index_for("rows", level) == index
    ]
    return covered or [None]


def _largest_multiplier(schedule: PriceSchedule) -> tuple[Decimal, str]:
    largest, dataset = Decimal(1), ""
    for name, multiplier in schedule.multipliers.items():
        if multiplier > largest:
            largest, dataset = multiplier, name
    return largest, dataset


def _per_unit(price: Decimal, per: int) -> Fraction:
    return Fraction(price) / per


def _above_cap(
    index: int,
    item: PriceItem,
    tier: int,
    price: Decimal,
    multiplier: Decimal,
    dataset: str,
    cap: CapItem,
    level: str | None,
    caps: PriceCaps,
) -> str:
    one, _ = _NOUNS[item.unit]
    field = f"tiers[{tier}].price" if item.tiers else "price"
    where = f"items[{index}].{field} ({item.unit}" + (
        f" at level {item.level})" if item.level else ")"
    )
    charged = _per_unit(price, item.per) * Fraction(multiplier)
    scaled = f" × multiplier {format_money(multiplier)} of {dataset!r}" if dataset else ""
    capped = _per_unit(cap.max_price, cap.per)
    at_level = f" at level {level}" if level else ""
    # The highest fen price that passes: rounding up could land one fen over again.
    highest = round_fen(Fraction(math.floor(capped * item.per / Fraction(multiplier) * 100), 100))
    return (
        f"{where}: {format_money(price)} yuan {_per(item.unit, item.per)}{scaled} "
        f"is {_decimal_text(charged)} yuan per {one}, above the cap "
        f"{format_money(cap.max_price)} yuan {_per(item.unit, cap.per)} "
        f"({_decimal_text(capped)} yuan per {one}) on {item.unit}{at_level} in {caps.name!r}; "
        f"lower it to at most {format_money(highest)} yuan {_per(item.unit, item.per)}"
        + (" or lower the multiplier" if dataset else "")
    )


def _per(unit: str, per: int) -> str:
    one, many = _NOUNS[unit]
    return f"per {one}" if per == 1 else f"per {per} {many}"


def _decimal_text(x: Fraction) -> str:
    """Exact decimal text when it terminates (at least 2 places), else 12 places marked ≈."""
    rest, twos, fives = x.denominator, 0, 0
    while rest % 2 == 0:
        rest, twos = rest // 2, twos + 1
    while rest % 5 == 0:
        rest, fives = rest // 5, fives + 1
    places = max(twos, fives, 2) if rest == 1 else 12
    scaled = round(x * 10**places)
    text = f"{scaled // 10**places}.{scaled % 10**places:0{places}d}"
    return text if rest == 1 else "≈" + text


def _parse_cap_items(raw: object) -> tuple[CapItem, ...]:
    return parse_list(raw, "items", _parse_cap_item, CapsError, "cap", _EXAMPLE_CAP)


def _parse_cap_item(raw: Mapping[str, Any]) -> CapItem:
    for key in raw:
        if key not in _CAP_FIELDS:
            raise CapsError(f"{key}: unknown field; a cap has {', '.join(_CAP_FIELDS)}")
    if "unit" not in raw:
        raise CapsError(f"unit: missing; use one of {', '.join(UNITS)}")
    if "max_price" not in raw:
        raise CapsError(
            "max_price: missing; give the highest price allowed as a decimal string of yuan "
            'such as "0.12"'
        )
    try:
        max_price = parse_money(raw["max_price"], what="max_price")
    except MoneyError as error:
        raise CapsError(f"max_price: {error.message}") from None
    return CapItem(
        unit=raw["unit"], max_price=max_price, per=raw.get("per", 1), level=raw.get("level")
    )


def _check_cap_items(items: object) -> tuple[CapItem, ...]:
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise CapsError("items: must be a sequence of CapItem")
    checked = tuple(items)
    if not checked:
        raise CapsError(f"items: price caps need at least one cap, e.g. {_EXAMPLE_CAP}")
    return check_unit_levels(checked, CapItem, CapsError, "capped", "parse_caps")


def _as_caps_error(check: Callable[..., _T], *args: object) -> _T:
    # The field checks are shared with schedules; a cap's errors carry the caps' code.
    try:
        return check(*args)
    except ScheduleError as error:
        raise CapsError(error.message) from None
