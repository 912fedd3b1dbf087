"""Revenue over a period, against the highest allowed revenue (最高准许收入).

Revenue above the allowed revenue is not kept: the excess is deducted from the
allowed revenue of the next period, so each report carries the deduction it
inherited and hands on the one the next period inherits.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from types import MappingProxyType
from typing import Any, TypeVar

from pricing.charge import CURRENCY, PURPOSE_CLASSES, Charge, PurposeClass
from pricing.errors import MoneyError, RevenueError
from pricing.money import ZERO, check_money, format_money, round_fen, sum_money
from pricing.schedule import UNITS, Unit

_K = TypeVar("_K", bound=Hashable)


@dataclass(frozen=True)
class RevenueLine:
    """What one operator paid (``amount``) and the list value of that use (``list_amount``).

    ``dataset`` names the dataset of a rows line; it is None for other units and
    for rows metered without a dataset.
    """

    operator_id: str
    dataset: str | None
    unit: Unit
    purpose_class: PurposeClass
    amount: Decimal
    list_amount: Decimal

    def __post_init__(self) -> None:
        # Messages start with the field name so callers can prefix the line's index.
        if not isinstance(self.operator_id, str) or not self.operator_id.strip():
            raise RevenueError("operator_id: must be the operator's non-empty id")
        if self.unit not in UNITS:
            raise RevenueError(
                f"unit: {self.unit!r} is not a billing unit; use one of {', '.join(UNITS)}"
            )
        _check_dataset(self.unit, self.dataset)
        if self.purpose_class not in PURPOSE_CLASSES:
            raise RevenueError(
                f"purpose_class: {self.purpose_class!r} is not known; "
                f"use one of {', '.join(PURPOSE_CLASSES)}"
            )
        object.__setattr__(self, "amount", _money("amount", self.amount))
        object.__setattr__(self, "list_amount", _money("list_amount", self.list_amount))
        if self.amount > self.list_amount:
            raise RevenueError(
                f"amount: {format_money(self.amount)} is above the list amount "
                f"{format_money(self.list_amount)}; nothing is charged above the schedule price"
            )
        if self.purpose_class == "public_interest" and self.amount != ZERO:
            raise RevenueError(
                f"amount: public-interest use is charged 0, not {format_money(self.amount)}; "
                "record its value at list price in list_amount"
            )


@dataclass(frozen=True)
class RevenueTotals:
    """Amount paid and list value of a group of lines; each is the sum of the lines."""

    amount: Decimal
    list_amount: Decimal

    def to_json(self) -> dict[str, str]:
        return {"amount": format_money(self.amount), "list_amount": format_money(self.list_amount)}


@dataclass(frozen=True)
class RevenueReport:
    """A period's revenue, broken down, and where it stands against the allowed revenue.

    ``effective_allowed`` is the allowed revenue less the deduction carried from
    the previous period (never below 0); ``excess`` is the revenue above it and
    becomes ``carry_forward``, the next period's deduction. With no allowed
    revenue recorded both are None/0 and nothing is carried forward.
    """

    revenue: Decimal
    list_value: Decimal
    public_interest_list_value: Decimal
    allowed_revenue: Decimal | None
    carried_deduction: Decimal
    effective_allowed: Decimal | None
    excess: Decimal
    carry_forward: Decimal
    by_operator: Mapping[str, RevenueTotals]
    by_dataset: Mapping[str | None, RevenueTotals]
    by_unit: Mapping[Unit, RevenueTotals]
    currency: str = CURRENCY

    def to_json(self) -> dict[str, Any]:
        return {
            "currency": self.currency,
            "revenue": format_money(self.revenue),
            "list_value": format_money(self.list_value),
            "public_interest_list_value": format_money(self.public_interest_list_value),
            "allowed_revenue": _money_or_none(self.allowed_revenue),
            "carried_deduction": format_money(self.carried_deduction),
            "effective_allowed": _money_or_none(self.effective_allowed),
            "excess": format_money(self.excess),
            "carry_forward": format_money(self.carry_forward),
            "by_operator": [
                {"operator_id": key, **totals.to_json()} for key, totals in self.by_operator.items()
            ],
            "by_dataset": [
                {"dataset": key, **totals.to_json()} for key, totals in self.by_dataset.items()
            ],
            "by_unit": [{"unit": key, **totals.to_json()} for key, totals in self.by_unit.items()],
        }


def revenue_report(
    lines: Iterable[RevenueLine], allowed: Decimal | None, carried_deduction: Decimal
) -> RevenueReport:
    """Total ``lines`` and compare the revenue with ``allowed`` less ``carried_deduction``.

    ``allowed`` is the highest allowed revenue recorded for the period, or None
    when none is; ``carried_deduction`` is the previous report's carry_forward.
    """
    checked = _check_lines(lines)
    allowed = None if allowed is None else _money("allowed", allowed)
    carried = _money("carried_deduction", carried_deduction)
    revenue = sum_money(line.amount for line in checked)
    effective: Decimal | None = None
    excess = ZERO
    if allowed is not None:
        effective = _at_least_zero(Fraction(allowed) - Fraction(carried))
        excess = _at_least_zero(Fraction(revenue) - Fraction(effective))
    return RevenueReport(
        revenue=revenue,
        list_value=sum_money(line.list_amount for line in checked),
        public_interest_list_value=sum_money(
            line.list_amount for line in checked if line.purpose_class == "public_interest"
        ),
        allowed_revenue=allowed,
        carried_deduction=carried,
        effective_allowed=effective,
        excess=excess,
        carry_forward=excess,
        by_operator=_totals(checked, lambda line: line.operator_id, _as_is),
        by_dataset=_totals(checked, lambda line: line.dataset, _none_last),
        by_unit=_totals(checked, lambda line: line.unit, UNITS.index),
    )


def charge_revenue_lines(
    operator_id: str, purpose_class: PurposeClass, charge: Charge
) -> list[RevenueLine]:
    """One revenue line per charge line; rows lines keep their dataset."""
    if not isinstance(charge, Charge):
        raise RevenueError(f"charge: must be a Charge, not {type(charge).__name__}")
    lines: list[RevenueLine] = []
    for index, line in enumerate(charge.lines):
        try:
            lines.append(
                RevenueLine(
                    operator_id=operator_id,
                    dataset=line.dataset,
                    unit=line.unit,
                    purpose_class=purpose_class,
                    amount=line.amount,
                    list_amount=line.list_amount,
                )
            )
        except RevenueError as error:
            raise RevenueError(f"lines[{index}].{error.message}") from None
    return lines


def _totals(
    lines: tuple[RevenueLine, ...],
    key: Callable[[RevenueLine], _K],
    order: Callable[[_K], Any],
) -> Mapping[_K, RevenueTotals]:
    groups: dict[_K, list[RevenueLine]] = {}
    for line in lines:
        groups.setdefault(key(line), []).append(line)
    return MappingProxyType(
        {
            group: RevenueTotals(
                amount=sum_money(line.amount for line in groups[group]),
                list_amount=sum_money(line.list_amount for line in groups[group]),
            )
            for group in sorted(groups, key=order)
        }
    )


def _as_is(key: str) -> str:
    return key


def _none_last(key: str | None) -> tuple[bool, str]:
    return (key is None, key or "")


def _check_lines(lines: object) -> tuple[RevenueLine, ...]:
    if isinstance(lines, (str, bytes, Mapping)) or not isinstance(lines, Iterable):
        raise RevenueError("lines: must be an iterable of RevenueLine")
    checked = tuple(lines)
    for index, line in enumerate(checked):
        if not isinstance(line, RevenueLine):
            raise RevenueError(
                f"lines[{index}]: expected a RevenueLine, not {type(line).__name__}; "
                "split charges with charge_revenue_lines"
            )
    return checked


def _check_dataset(unit: str, dataset: object) -> None:
    if dataset is None:
        return
    if not isinstance(dataset, str) or not dataset.strip():
        raise RevenueError(
            f"dataset: {dataset!r} is not a dataset name; name the dataset, or give None"
        )
    if unit != "rows":
        raise RevenueError(
            f"dataset: only rows lines name a dataset; give None for this {unit!r} line"
        )


def _money(name: str, value: object) -> Decimal:
    try:
        return check_money(value, what=name)  # type: ignore[arg-type]  # checked inside
    except MoneyError as error:
        raise RevenueError(error.message) from None


def _money_or_none(value: Decimal | None) -> str | None:
    return None if value is None else format_money(value)


def _at_least_zero(x: Fraction) -> Decimal:
    return round_fen(max(x, Fraction(0)))
