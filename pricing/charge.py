"""Metered usage → charges, and settling an actual charge against its quote.

Public-interest use is free but metered: its lines carry the schedule's list
price in ``list_amount`` and 0 in ``amount``. Commercial use pays list price.
Rows lines are per dataset, and per volume tier when a dataset's rows straddle tiers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from types import MappingProxyType
from typing import Any, Literal, get_args

from pricing.errors import ChargeError, MoneyError, SettlementError
from pricing.metering import UNNAMED, Metered, RowsUse, check_month_to_date
from pricing.money import (
    ZERO,
    check_money,
    format_money,
    parse_money,
    round_fen,
    sum_money,
)
from pricing.schedule import LEVELS, UNITS, PriceSchedule, Unit
from pricing.volume import rows_segments

__all__ = [
    "CURRENCY",
    "PURPOSE_CLASSES",
    "Charge",
    "ChargeLine",
    "Metered",
    "PurposeClass",
    "RowsUse",
    "price",
    "settle",
]

PurposeClass = Literal["public_interest", "commercial"]
PURPOSE_CLASSES: tuple[PurposeClass, ...] = get_args(PurposeClass)
CURRENCY = "CNY"

# Decimal NaN can never be a real amount, so it marks "derive list_amount from
# the lines" while keeping the field typed as Decimal.
_FROM_LINES = Decimal("NaN")
_PLAIN_DECIMAL = re.compile(r"\d+(\.\d+)?")
_LINE_FIELDS = ("unit", "quantity", "amount", "list_amount", "level", "dataset", "tier")
_NOTHING_YET: Mapping[str, int] = MappingProxyType({})
_CHARGE_FIELDS = ("amount", "currency", "lines", "list_amount")


@dataclass(frozen=True)
class ChargeLine:
    """One billed unit; ``quantity`` is an int, or a decimal string for compute_seconds.

    Rows lines name the ``dataset`` scanned (None for rows metered by level
    only) and, when priced by volume tiers, the ``tier`` index the rows fell in.
    """

    unit: Unit
    quantity: int | str
    amount: Decimal
    list_amount: Decimal
    level: str | None = None
    dataset: str | None = None
    tier: int | None = None

    def __post_init__(self) -> None:
        # Messages start with the field name so Charge.from_json can prefix the line's index.
        if self.unit not in UNITS:
            raise ChargeError(
                f"unit: {self.unit!r} is not a billing unit; use one of {', '.join(UNITS)}"
            )
        _check_quantity(self.unit, self.quantity)
        object.__setattr__(self, "amount", _charge_money("amount", self.amount))
        object.__setattr__(self, "list_amount", _charge_money("list_amount", self.list_amount))
        if self.amount > self.list_amount:
            raise ChargeError(
                f"amount: {format_money(self.amount)} is above the list amount "
                f"{format_money(self.list_amount)}; a line never costs more than the schedule price"
            )
        _check_line_level(self.unit, self.level)
        _check_line_dataset(self.unit, self.dataset)
        _check_line_tier(self.unit, self.tier)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "unit": self.unit,
            "quantity": self.quantity,
            "amount": format_money(self.amount),
            "list_amount": format_money(self.list_amount),
        }
        if self.level is not None:
            out["level"] = self.level
        if self.dataset is not None:
            out["dataset"] = self.dataset
        if self.tier is not None:
            out["tier"] = self.tier
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> ChargeLine:
        if not isinstance(obj, Mapping):
            raise ChargeError(f"a charge line must be an object with {', '.join(_LINE_FIELDS)}")
        _reject_unknown(obj, _LINE_FIELDS, "a charge line")
        _require(obj, ("unit", "quantity", "amount", "list_amount"))
        return cls(
            unit=obj["unit"],
            quantity=obj["quantity"],
            amount=_parse_charge_money("amount", obj["amount"]),
            list_amount=_parse_charge_money("list_amount", obj["list_amount"]),
            level=obj.get("level"),
            dataset=obj.get("dataset"),
            tier=obj.get("tier"),
        )


@dataclass(frozen=True)
class Charge:
    """A priced job: ``amount`` payable, the sum of its lines.

    ``list_amount`` is the same usage at list price; leave it out to derive it
    from the lines.
    """

    amount: Decimal
    lines: tuple[ChargeLine, ...]
    currency: str = CURRENCY
    list_amount: Decimal = _FROM_LINES

    def __post_init__(self) -> None:
        lines = _check_lines(self.lines)
        object.__setattr__(self, "lines", lines)
        if self.currency != CURRENCY:
            raise ChargeError(
                f"currency: {self.currency!r} is not billed here; the sandbox bills in {CURRENCY}"
            )
        object.__setattr__(self, "amount", _charge_money("amount", self.amount))
        _check_total("amount", self.amount, sum_money(line.amount for line in lines))
        line_list_total = sum_money(line.list_amount for line in lines)
        if isinstance(self.list_amount, Decimal) and self.list_amount.is_nan():
            object.__setattr__(self, "list_amount", line_list_total)
        else:
            object.__setattr__(self, "list_amount", _charge_money("list_amount", self.list_amount))
            _check_total("list_amount", self.list_amount, line_list_total)

    @classmethod
    def from_lines(cls, lines: Sequence[ChargeLine]) -> Charge:
        """The charge whose totals are the sums of ``lines``."""
        return cls(amount=sum_money(line.amount for line in lines), lines=tuple(lines))

    def to_json(self) -> dict[str, Any]:
        return {
            "amount": format_money(self.amount),
            "currency": self.currency,
            "lines": [line.to_json() for line in self.lines],
            "list_amount": format_money(self.list_amount),
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Charge:
        """Read the form written by ``to_json``; errors name the offending line and field."""
        if not isinstance(obj, Mapping):
            raise ChargeError(f"a charge must be an object with {', '.join(_CHARGE_FIELDS)}")
        _reject_unknown(obj, _CHARGE_FIELDS, "a charge")
        _require(obj, _CHARGE_FIELDS)
        raw_lines = obj["lines"]
        if isinstance(raw_lines, (str, bytes)) or not isinstance(raw_lines, Sequence):
            raise ChargeError(
                f"lines: must be a list of charge lines, not {type(raw_lines).__name__}"
            )
        lines: list[ChargeLine] = []
        for index, raw_line in enumerate(raw_lines):
            if not isinstance(raw_line, Mapping):
                raise ChargeError(
                    f"lines[{index}]: a charge line must be an object with "
                    f"{', '.join(_LINE_FIELDS)}"
                )
            try:
                lines.append(ChargeLine.from_json(raw_line))
            except ChargeError as error:
                raise ChargeError(f"lines[{index}].{error.message}") from None
        return cls(
            amount=_parse_charge_money("amount", obj["amount"]),
            lines=tuple(lines),
            currency=obj["currency"],
            list_amount=_parse_charge_money("list_amount", obj["list_amount"]),
        )


def price(
    schedule: PriceSchedule,
    metered: Metered,
    purpose_class: PurposeClass,
    month_to_date: Mapping[str, int] = _NOTHING_YET,
) -> Charge:
    """Price metered usage under ``schedule`` for a contract of ``purpose_class``.

    One line per unit that the schedule prices and that was used. Rows get one
    line per dataset, at the dataset's level price times its multiplier; rows at
    a level with no applicable item are free. Under a tiered item a dataset gets
    one line per tier its rows reach: ``month_to_date`` maps a level to the rows
    the operator already scanned this billing month at that level before this
    job, and the job's rows continue the count from there (see pricing.volume).
    More rows already scanned this month never make a job dearer, so a quote
    priced before other jobs of the month settle stays an upper bound.

    Each line is computed exactly and rounded half-up to the fen, except that the
    lines under one tiered item are rounded on their running total.
    """
    if purpose_class not in PURPOSE_CLASSES:
        raise ChargeError(
            f"purpose_class {purpose_class!r} is not known; use one of {', '.join(PURPOSE_CLASSES)}"
        )
    if not isinstance(metered, Metered):
        raise ChargeError(f"metered usage must be a Metered, not {type(metered).__name__}")
    if not isinstance(schedule, PriceSchedule):
        raise ChargeError(f"schedule must be a PriceSchedule, not {type(schedule).__name__}")
    so_far = check_month_to_date(month_to_date)
    commercial = purpose_class == "commercial"
    lines = [_flat_line(schedule, "call", metered.calls, commercial)]
    lines.extend(
        ChargeLine(
            unit="rows",
            quantity=segment.rows,
            amount=segment.list_amount if commercial else ZERO,
            list_amount=segment.list_amount,
            level=segment.level,
            dataset=segment.dataset if segment.dataset != UNNAMED else None,
            tier=segment.tier,
        )
        for segment in rows_segments(schedule, metered.rows, so_far)
    )
    lines.append(_flat_line(schedule, "compute_seconds", metered.compute_seconds, commercial))
    lines.append(_flat_line(schedule, "output", metered.outputs, commercial))
    return Charge.from_lines([line for line in lines if line is not None])


def settle(quote: Charge, actual: Charge) -> Charge:
    """Return ``actual``, refusing loudly if it is above ``quote``.

    The engine keeps usage within the quoted bounds, so an actual above its
    quote (payable or at list price) is a metering fault, never a bill.
    """
    for what, quoted, billed in (
        ("charge", quote.amount, actual.amount),
        ("list amount", quote.list_amount, actual.list_amount),
    ):
        if billed > quoted:
            raise SettlementError(
                f"the actual {what} {format_money(billed)} {actual.currency} is above the "
                f"quoted {format_money(quoted)} {quote.currency}; jobs are never billed above "
                "their quote, so the engine let usage go past the quoted bounds; do not bill "
                "this charge: fail the job and report its metering to the bureau"
            )
    return actual


def _flat_line(
    schedule: PriceSchedule, unit: Unit, quantity: int | Decimal, commercial: bool
) -> ChargeLine | None:
    item = schedule.price_for(unit)
    if item is None or quantity <= 0:
        return None
    assert item.price is not None  # only rows items take tiers
    list_amount = round_fen(Fraction(quantity) * Fraction(item.price) / item.per)
    return ChargeLine(
        unit=unit,
        quantity=format(quantity, "f") if isinstance(quantity, Decimal) else quantity,
        amount=list_amount if commercial else ZERO,
        list_amount=list_amount,
    )


def _check_quantity(unit: str, quantity: object) -> None:
    if unit == "compute_seconds":
        if not isinstance(quantity, str) or not _PLAIN_DECIMAL.fullmatch(quantity):
            raise ChargeError(
                f'quantity: {quantity!r} is not a decimal string of seconds; write e.g. "12.5"'
            )
    elif isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
        raise ChargeError(
            f"quantity: {quantity!r} is not a count of {unit}; use a whole number, 0 or more"
        )


def _check_line_level(unit: str, level: object) -> None:
    if level is None:
        return
    if level not in LEVELS:
        raise ChargeError(
            f"level: {level!r} is not a classification level; use one of {', '.join(LEVELS)}"
        )
    if unit != "rows":
        raise ChargeError(
            f"level: only 'rows' lines have a level; remove it from this {unit!r} line"
        )


def _check_line_dataset(unit: str, dataset: object) -> None:
    if dataset is None:
        return
    if not isinstance(dataset, str) or not dataset.strip():
        raise ChargeError(
            f"dataset: {dataset!r} is not a dataset name; name the dataset scanned, "
            "or leave dataset out"
        )
    if unit != "rows":
        raise ChargeError(
            f"dataset: only 'rows' lines name a dataset; remove it from this {unit!r} line"
        )


def _check_line_tier(unit: str, tier: object) -> None:
    if tier is None:
        return
    if isinstance(tier, bool) or not isinstance(tier, int) or tier < 0:
        raise ChargeError(
            f"tier: {tier!r} is not a tier index; use the 0-based position of the tier in "
            "the schedule item, or leave tier out for a flat price"
        )
    if unit != "rows":
        raise ChargeError(f"tier: only 'rows' lines have a tier; remove it from this {unit!r} line")


def _check_lines(lines: object) -> tuple[ChargeLine, ...]:
    if isinstance(lines, (str, bytes)) or not isinstance(lines, Sequence):
        raise ChargeError("lines: must be a sequence of ChargeLine")
    for index, line in enumerate(lines):
        if not isinstance(line, ChargeLine):
            raise ChargeError(
                f"lines[{index}]: expected a ChargeLine, not {type(line).__name__}; "
                "read JSON with Charge.from_json"
            )
    return tuple(lines)


def _check_total(name: str, total: Decimal, line_sum: Decimal) -> None:
    if total != line_sum:
        raise ChargeError(
            f"{name}: {format_money(total)} is not the sum of the lines "
            f"({format_money(line_sum)}); a charge's total is the sum of its rounded lines; "
            "build it with Charge.from_lines"
        )


def _charge_money(name: str, value: object) -> Decimal:
    try:
        return check_money(value, what=name)  # type: ignore[arg-type]  # checked inside
    except MoneyError as error:
        raise ChargeError(error.message) from None


def _parse_charge_money(name: str, value: object) -> Decimal:
    try:
        return parse_money(value, what=name)  # type: ignore[arg-type]  # checked inside
    except MoneyError as error:
        raise ChargeError(error.message) from None


def _reject_unknown(obj: Mapping[str, Any], known: tuple[str, ...], what: str) -> None:
    for key in obj:
        if key not in known:
            raise ChargeError(f"{key}: unknown field; {what} has {', '.join(known)}")


def _require(obj: Mapping[str, Any], names: tuple[str, ...]) -> None:
    for name in names:
        if name not in obj:
            raise ChargeError(f"{name}: missing; a charge is written as Charge.to_json() writes it")
