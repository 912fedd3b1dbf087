"""Metered usage → charges, and settling an actual charge against its quote.

Public-interest use is free but metered: its lines carry the schedule's list
price in ``list_amount`` and 0 in ``amount``. Commercial use pays list price.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from types import MappingProxyType
from typing import Any, Literal, get_args

from pricing.errors import ChargeError, MeteringError, MoneyError, SettlementError
from pricing.money import ZERO, check_money, format_money, parse_money, round_fen, sum_money
from pricing.schedule import LEVELS, UNITS, PriceSchedule, Unit

PurposeClass = Literal["public_interest", "commercial"]
PURPOSE_CLASSES: tuple[PurposeClass, ...] = get_args(PurposeClass)
CURRENCY = "CNY"

# Decimal NaN can never be a real amount, so it marks "derive list_amount from
# the lines" while keeping the field typed as Decimal.
_FROM_LINES = Decimal("NaN")
_PLAIN_DECIMAL = re.compile(r"\d+(\.\d+)?")
_LINE_FIELDS = ("unit", "quantity", "amount", "list_amount", "level")
_CHARGE_FIELDS = ("amount", "currency", "lines", "list_amount")


@dataclass(frozen=True)
class Metered:
    """What a job used: calls, rows scanned per classification level, compute seconds, outputs."""

    calls: int = 1
    rows_by_level: Mapping[str, int] = field(default_factory=dict)
    compute_seconds: Decimal = Decimal(0)
    outputs: int = 0

    def __post_init__(self) -> None:
        _check_count("calls", self.calls)
        _check_count("outputs", self.outputs)
        object.__setattr__(self, "rows_by_level", _check_rows(self.rows_by_level))
        object.__setattr__(self, "compute_seconds", _check_seconds(self.compute_seconds))

    @property
    def rows_scanned(self) -> int:
        return sum(self.rows_by_level.values())


@dataclass(frozen=True)
class ChargeLine:
    """One billed unit; ``quantity`` is an int, or a decimal string for compute_seconds."""

    unit: Unit
    quantity: int | str
    amount: Decimal
    list_amount: Decimal
    level: str | None = None

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

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "unit": self.unit,
            "quantity": self.quantity,
            "amount": format_money(self.amount),
            "list_amount": format_money(self.list_amount),
        }
        if self.level is not None:
            out["level"] = self.level
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


def price(schedule: PriceSchedule, metered: Metered, purpose_class: PurposeClass) -> Charge:
    """Price metered usage under ``schedule`` for a contract of ``purpose_class``.

    One line per unit that the schedule prices and that was used; rows get one
    line per classification level. A rows level with no applicable item is free.
    """
    if purpose_class not in PURPOSE_CLASSES:
        raise ChargeError(
            f"purpose_class {purpose_class!r} is not known; use one of {', '.join(PURPOSE_CLASSES)}"
        )
    if not isinstance(metered, Metered):
        raise ChargeError(f"metered usage must be a Metered, not {type(metered).__name__}")
    lines = [
        _price_line(schedule, unit, quantity, level, purpose_class)
        for unit, quantity, level in _quantities(metered)
        if quantity > 0
    ]
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


def _quantities(metered: Metered) -> Iterator[tuple[Unit, int | Decimal, str | None]]:
    yield "call", metered.calls, None
    for level, rows in metered.rows_by_level.items():
        yield "rows", rows, level
    yield "compute_seconds", metered.compute_seconds, None
    yield "output", metered.outputs, None


def _price_line(
    schedule: PriceSchedule,
    unit: Unit,
    quantity: int | Decimal,
    level: str | None,
    purpose_class: PurposeClass,
) -> ChargeLine | None:
    item = schedule.price_for(unit, level)
    if item is None:
        return None
    list_amount = round_fen(Fraction(quantity) * Fraction(item.price) / item.per)
    return ChargeLine(
        unit=unit,
        quantity=format(quantity, "f") if isinstance(quantity, Decimal) else quantity,
        amount=list_amount if purpose_class == "commercial" else ZERO,
        list_amount=list_amount,
        level=level,
    )


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MeteringError(f"{name}: {value!r} is not a count; use a whole number, 0 or more")


def _check_rows(rows_by_level: object) -> Mapping[str, int]:
    if not isinstance(rows_by_level, Mapping):
        raise MeteringError('rows_by_level: must map a level to rows scanned, e.g. {"L3": 120000}')
    for level, rows in rows_by_level.items():
        if level not in LEVELS:
            raise MeteringError(
                f"rows_by_level: {level!r} is not a classification level; "
                f"use one of {', '.join(LEVELS)}"
            )
        _check_count(f"rows_by_level[{level!r}]", rows)
    # A sorted read-only copy: the caller's dict may change, a charge's input must not.
    return MappingProxyType({level: rows_by_level[level] for level in sorted(rows_by_level)})


def _check_seconds(seconds: object) -> Decimal:
    if isinstance(seconds, float):
        raise MeteringError(
            "compute_seconds: is a float; pass a Decimal, e.g. Decimal(str(round(seconds, 3)))"
        )
    if isinstance(seconds, int) and not isinstance(seconds, bool):
        seconds = Decimal(seconds)
    if not isinstance(seconds, Decimal) or not seconds.is_finite() or seconds.is_signed():
        raise MeteringError(f"compute_seconds: {seconds!r} is not a Decimal of 0 or more seconds")
    return seconds


def _check_quantity(unit: str, quantity: object) -> None:
    if unit == "compute_seconds":
        if not isinstance(quantity, str) or not _PLAIN_DECIMAL.fullmatch(quantity):
            raise ChargeError(
                f"quantity: {quantity!r} is not a decimal string of seconds; write e.g. \"12.5\""
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
