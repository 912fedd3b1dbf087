"""Price schedules: the bureau's published fees, versioned by an effective time.

Billing units follow the 2025 national price-formation notice (发改价格〔2025〕65号):
per call, per data volume (rows scanned, optionally by classification level,
optionally in volume tiers over the billing month), per service time (compute
seconds) and per product (released output). Per-dataset multipliers scale the
rows price of named datasets.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from types import MappingProxyType
from typing import Any, Literal, get_args

from pricing.errors import MoneyError, ScheduleError
from pricing.listing import check_unit_levels, index_for, parse_list
from pricing.money import check_money, format_money, parse_money

Unit = Literal["call", "rows", "compute_seconds", "output"]
UNITS: tuple[Unit, ...] = get_args(Unit)
LEVELS: tuple[str, ...] = ("L1", "L2", "L3", "L4")

MAX_MULTIPLIER = Decimal(10)

_ITEM_FIELDS = ("unit", "price", "per", "level", "tiers")
_TIER_FIELDS = ("up_to", "price")
_SCHEDULE_FIELDS = ("name", "effective_from", "items", "multipliers")
_EXAMPLE_TIME = '"2026-01-01T00:00:00Z"'
_EXAMPLE_TIERS = '[{"up_to": 1000000, "price": "0.10"}, {"up_to": null, "price": "0.08"}]'
_PLAIN_DECIMAL = re.compile(r"\d+(\.\d+)?")


@dataclass(frozen=True)
class PriceTier:
    """One volume tier of a rows item: ``price`` per the item's ``per`` rows.

    Tiers count rows per operator and per item: the rows the operator scanned
    in the billing month at the levels the item prices. The tier ends after row
    ``up_to`` of that count; ``None`` marks the last, open-ended tier.
    """

    up_to: int | None
    price: Decimal

    def __post_init__(self) -> None:
        _check_up_to(self.up_to)
        object.__setattr__(self, "price", _check_price(self.price))

    def to_json(self) -> dict[str, Any]:
        return {"up_to": self.up_to, "price": format_money(self.price)}


@dataclass(frozen=True)
class PriceItem:
    """One fee: ``price`` yuan per ``per`` units, or for rows a list of volume ``tiers``.

    ``level`` narrows a rows price to one classification level. An item has
    exactly one of ``price`` and ``tiers``.
    """

    unit: Unit
    price: Decimal | None = None
    per: int = 1
    level: str | None = None
    tiers: tuple[PriceTier, ...] = ()

    def __post_init__(self) -> None:
        # Messages start with the field name so parse_schedule can prefix the item's index.
        _check_unit(self.unit)
        object.__setattr__(self, "tiers", _check_tiers(self.unit, self.price, self.tiers))
        if self.price is not None:
            object.__setattr__(self, "price", _check_price(self.price))
        _check_per(self.per)
        _check_level(self.unit, self.level)

    @property
    def prices(self) -> tuple[Decimal, ...]:
        """Every price this item can charge: its flat price, or each tier's."""
        if self.price is not None:
            return (self.price,)
        return tuple(tier.price for tier in self.tiers)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"unit": self.unit}
        if self.price is not None:
            out["price"] = format_money(self.price)
        if self.per != 1:
            out["per"] = self.per
        if self.level is not None:
            out["level"] = self.level
        if self.tiers:
            out["tiers"] = [tier.to_json() for tier in self.tiers]
        return out


def _no_multipliers() -> Mapping[str, Decimal]:
    return MappingProxyType({})


@dataclass(frozen=True)
class PriceSchedule:
    """A named, versioned set of fees in force from ``effective_from`` (normalised to UTC).

    ``multipliers`` scale the rows price of the named datasets (a dataset not
    named pays the plain price); each is above 0 and at most 10, in hundredths.
    """

    name: str
    effective_from: datetime
    items: tuple[PriceItem, ...]
    multipliers: Mapping[str, Decimal] = field(default_factory=_no_multipliers)

    def __post_init__(self) -> None:
        _check_name(self.name)
        object.__setattr__(self, "effective_from", _check_effective_from(self.effective_from))
        object.__setattr__(self, "items", _check_items(self.items))
        object.__setattr__(self, "multipliers", _check_multipliers(self.multipliers))

    def index_for(self, unit: Unit, level: str | None = None) -> int | None:
        """Index of the item pricing ``unit`` at ``level`` (as ``price_for`` picks it), or None."""
        return index_for(self.items, unit, level)

    def price_for(self, unit: Unit, level: str | None = None) -> PriceItem | None:
        """The item pricing ``unit`` at ``level``; a level-specific item beats a level-less one."""
        index = self.index_for(unit, level)
        return None if index is None else self.items[index]

    def multiplier(self, dataset: str) -> Decimal:
        """The factor on ``dataset``'s rows price: its multiplier, or 1 when it has none."""
        return self.multipliers.get(dataset, Decimal(1))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "effective_from": _iso_utc(self.effective_from),
            "items": [item.to_json() for item in self.items],
        }
        if self.multipliers:
            out["multipliers"] = {name: format_money(m) for name, m in self.multipliers.items()}
        return out


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
        multipliers=_parse_multipliers(obj.get("multipliers", {})),
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
    return parse_list(
        raw, "items", _parse_item, ScheduleError, "price item", '{"unit": "call", "price": "2.00"}'
    )


def _parse_item(raw: Mapping[str, Any]) -> PriceItem:
    for key in raw:
        if key not in _ITEM_FIELDS:
            raise ScheduleError(f"{key}: unknown field; a price item has {', '.join(_ITEM_FIELDS)}")
    if "unit" not in raw:
        raise ScheduleError(f"unit: missing; use one of {', '.join(UNITS)}")
    if "tiers" in raw:
        if "price" in raw:
            raise ScheduleError(_PRICE_OR_TIERS)
        return PriceItem(
            unit=raw["unit"],
            per=raw.get("per", 1),
            level=raw.get("level"),
            tiers=_parse_tiers(raw["tiers"]),
        )
    if "price" not in raw:
        raise ScheduleError(
            'price: missing; give the price as a decimal string of yuan such as "0.10" '
            '(or, for rows, volume "tiers")'
        )
    return PriceItem(
        unit=raw["unit"],
        price=_parse_price(raw["price"]),
        per=raw.get("per", 1),
        level=raw.get("level"),
    )


def _parse_price(raw: object) -> Decimal:
    try:
        return parse_money(raw, what="price")  # type: ignore[arg-type]  # checked inside
    except MoneyError as error:
        raise ScheduleError(f"price: {error.message}") from None


def _parse_tiers(raw: object) -> tuple[PriceTier, ...]:
    if isinstance(raw, (str, bytes)) or not isinstance(raw, Sequence) or not raw:
        raise ScheduleError(f"tiers: must be a non-empty list of tiers such as {_EXAMPLE_TIERS}")
    return parse_list(
        raw, "tiers", _parse_tier, ScheduleError, "tier", '{"up_to": 1000000, "price": "0.10"}'
    )


def _parse_tier(raw: Mapping[str, Any]) -> PriceTier:
    for key in raw:
        if key not in _TIER_FIELDS:
            raise ScheduleError(f"{key}: unknown field; a tier has {', '.join(_TIER_FIELDS)}")
    if "up_to" not in raw:
        raise ScheduleError(
            "up_to: missing; give the monthly row count where the tier ends, "
            "or null for the last tier"
        )
    if "price" not in raw:
        raise ScheduleError(
            'price: missing; give the tier\'s price as a decimal string of yuan such as "0.10"'
        )
    return PriceTier(up_to=raw["up_to"], price=_parse_price(raw["price"]))


def _parse_multipliers(raw: object) -> Mapping[str, Decimal]:
    if not isinstance(raw, Mapping):
        raise ScheduleError(
            "multipliers: must be an object mapping a dataset name to a decimal string, "
            'e.g. {"population": "1.50"}'
        )
    parsed: dict[str, Decimal] = {}
    for name, value in raw.items():
        _check_dataset_name(name)
        parsed[name] = _parse_multiplier(name, value)
    return parsed


def _parse_multiplier(name: str, raw: object) -> Decimal:
    where = f"multipliers[{name!r}]"
    if isinstance(raw, float):
        raise ScheduleError(
            f'{where}: {raw!r} is a float; write it as a decimal string such as "1.50"'
        )
    if not isinstance(raw, str):
        raise ScheduleError(
            f'{where}: must be a decimal string such as "1.50", not {type(raw).__name__}'
        )
    try:
        value = Decimal(raw)
    except ArithmeticError:
        raise ScheduleError(
            f'{where}: {raw!r} is not a decimal number; write it like "1.50"'
        ) from None
    checked = _check_multiplier(name, value)
    if not _PLAIN_DECIMAL.fullmatch(raw):
        raise ScheduleError(
            f'{where}: {raw!r} is not written as plain digits; write it like "1.50"'
        )
    return checked


def _check_unit(unit: object) -> None:
    if unit not in UNITS:
        raise ScheduleError(f"unit: {unit!r} is not a billing unit; use one of {', '.join(UNITS)}")


def _check_price(price: object) -> Decimal:
    try:
        return check_money(price, what="price")  # type: ignore[arg-type]  # checked inside
    except MoneyError as error:
        raise ScheduleError(f"price: {error.message}") from None


def _check_up_to(up_to: object) -> None:
    if up_to is None:
        return
    if isinstance(up_to, bool) or not isinstance(up_to, int) or up_to < 1:
        raise ScheduleError(
            f"up_to: {up_to!r} is not a positive whole number of rows; give the cumulative "
            "count of rows scanned in the month where the tier ends, or null for the last tier"
        )


_PRICE_OR_TIERS = (
    "tiers: an item has either a flat price or volume tiers, not both; remove 'price' "
    "for volume pricing or 'tiers' for a flat price"
)


def _check_tiers(unit: object, price: object, tiers: object) -> tuple[PriceTier, ...]:
    if isinstance(tiers, (str, bytes)) or not isinstance(tiers, Sequence):
        raise ScheduleError(f"tiers: must be a sequence of PriceTier, e.g. {_EXAMPLE_TIERS}")
    checked = tuple(tiers)
    if price is not None and checked:
        raise ScheduleError(_PRICE_OR_TIERS)
    if price is None and not checked:
        raise ScheduleError(
            'price: missing; give the price as a decimal string of yuan such as "0.10" '
            "(or, for rows, volume tiers)"
        )
    if checked and unit != "rows":
        raise ScheduleError(
            f"tiers: only 'rows' items take tiers (volume pricing counts the rows scanned in "
            f"the month); give this {unit!r} item a flat 'price' instead"
        )
    for index, tier in enumerate(checked):
        if not isinstance(tier, PriceTier):
            raise ScheduleError(
                f"tiers[{index}]: expected a PriceTier, not {type(tier).__name__}; "
                "build schedules from JSON with parse_schedule"
            )
        _check_tier_order(checked, index)
    return checked


def _check_tier_order(tiers: tuple[PriceTier, ...], index: int) -> None:
    tier, last = tiers[index], index == len(tiers) - 1
    if tier.up_to is None and not last:
        raise ScheduleError(
            f"tiers[{index}].up_to: only the last tier is open-ended (null); give this tier "
            "the monthly row count where it ends, or remove the tiers after it"
        )
    if tier.up_to is not None and last:
        raise ScheduleError(
            f"tiers[{index}].up_to: the last tier must be open-ended; set its up_to to null "
            "so every row of the month has a price"
        )
    if index == 0:
        return
    previous = tiers[index - 1]
    if tier.up_to is not None and previous.up_to is not None and tier.up_to <= previous.up_to:
        raise ScheduleError(
            f"tiers[{index}].up_to: {tier.up_to} is not above tiers[{index - 1}].up_to "
            f"{previous.up_to}; list tiers in order with strictly increasing up_to"
        )
    if tier.price > previous.price:
        raise ScheduleError(
            f"tiers[{index}].price: {format_money(tier.price)} is above tiers[{index - 1}].price "
            f"{format_money(previous.price)}; tier prices must not increase with volume: a quote "
            "is priced at the month's rows so far and must stay an upper bound when other jobs "
            "of the same month settle first and move this job into later tiers"
        )


def _check_dataset_name(name: object) -> None:
    if not isinstance(name, str) or not name.strip():
        raise ScheduleError(
            f"multipliers: {name!r} is not a dataset name; key each multiplier by the name "
            'of the dataset it scales, e.g. {"population": "1.50"}'
        )


def _check_multipliers(multipliers: object) -> Mapping[str, Decimal]:
    if not isinstance(multipliers, Mapping):
        raise ScheduleError(
            "multipliers: must map a dataset name to a Decimal, "
            'e.g. {"population": Decimal("1.50")}'
        )
    checked: dict[str, Decimal] = {}
    for name in multipliers:
        _check_dataset_name(name)
    for name in sorted(multipliers):
        checked[name] = _check_multiplier(name, multipliers[name])
    # A sorted read-only copy: the caller's dict may change, a published schedule must not.
    return MappingProxyType(checked)


def _check_multiplier(name: str, value: object) -> Decimal:
    where = f"multipliers[{name!r}]"
    if isinstance(value, float) or not isinstance(value, Decimal) or not value.is_finite():
        raise ScheduleError(
            f"{where}: {value!r} is not a finite Decimal; "
            'write it as a decimal string such as "1.50"'
        )
    exact = Fraction(value)
    if (exact * 100).denominator != 1:
        raise ScheduleError(
            f'{where}: {value} has more than 2 decimal places; write it in hundredths like "1.25"'
        )
    if not 0 < exact <= MAX_MULTIPLIER:
        raise ScheduleError(
            f"{where}: {value} is not above 0 and at most {MAX_MULTIPLIER}; a multiplier scales "
            'a dataset\'s rows price, e.g. "1.50" for half as much again; remove the entry for '
            "the plain price"
        )
    return Decimal(format_money(value))


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
    return moment.astimezone(UTC)


def _check_items(items: object) -> tuple[PriceItem, ...]:
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise ScheduleError("items: must be a sequence of PriceItem")
    checked = tuple(items)
    if not checked:
        raise ScheduleError(
            "items: a price schedule needs at least one item, "
            'e.g. {"unit": "call", "price": "2.00"}'
        )
    return check_unit_levels(checked, PriceItem, ScheduleError, "priced", "parse_schedule")


def _iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
