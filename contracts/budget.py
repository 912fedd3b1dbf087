"""Privacy budgets: ε as an exact value, and the check that a job's ε fits what is left.

ε is never a float. Contract terms and job submissions spell it as a decimal string with at
most three decimal places; budgets are kept in whole micro-ε (10⁻⁶), so reservations, spends
and refunds add up exactly. Splitting a job's ε across its releases may give fractions with
no finite decimal form (0.1 / 3): those stay exact as a `Fraction` until they are charged,
when they are rounded up to the next micro-ε so the budget never under-counts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from contracts.errors import ContractBudgetExceeded, ContractInvalid

MAX_EPSILON = Fraction(10)
MICRO = 10**6
_TERM = re.compile(r"^\d+(\.\d{1,3})?$")
_STORED = re.compile(r"^\d+(\.\d{1,6})?$")
_HOW = 'write it as a decimal string above 0 and at most 10 with up to 3 decimal places, e.g. "0.5"'


@dataclass(frozen=True, order=True)
class Epsilon:
    """A non-negative privacy loss ε, exact."""

    value: Fraction

    def __post_init__(self) -> None:
        if isinstance(self.value, (bool, float)) or not isinstance(
            self.value, (Fraction, int, Decimal)
        ):
            raise TypeError(f"ε must be exact (int, Decimal or Fraction), got {self.value!r}")
        value = Fraction(self.value)
        if value < 0:
            raise ValueError(f"ε cannot be negative, got {value}")
        object.__setattr__(self, "value", value)

    @classmethod
    def parse(cls, raw: object, what: str = "epsilon") -> Epsilon:
        """A term as written in a contract or a submission: "0.5", never 0.5 (a float)."""
        if isinstance(raw, Epsilon):
            raw = str(raw)
        if not isinstance(raw, str):
            raise ContractInvalid(f"{what} must be a decimal string, got {_kind(raw)}; {_HOW}")
        if not _TERM.match(raw):
            raise ContractInvalid(
                f"{what} {raw!r} is not a decimal with at most 3 decimal places; {_HOW}"
            )
        eps = cls(Fraction(Decimal(raw)))
        if eps.value <= 0 or eps.value > MAX_EPSILON:
            raise ContractInvalid(f"{what} {raw!r} is out of range; {_HOW}")
        return eps

    @classmethod
    def from_text(cls, raw: str) -> Epsilon:
        """Read back what `str` wrote for a whole number of micro-ε (stored values)."""
        if not _STORED.match(raw):
            raise ValueError(f"not a stored ε: {raw!r}")
        return cls(Fraction(Decimal(raw)))

    @classmethod
    def from_micro(cls, micro: int) -> Epsilon:
        return cls(Fraction(micro, MICRO))

    def micro(self) -> int:
        """Whole micro-ε, rounded up: what is charged for this ε."""
        return math.ceil(self.value * MICRO)

    def __add__(self, other: Epsilon) -> Epsilon:
        return Epsilon(self.value + other.value)

    def __sub__(self, other: Epsilon) -> Epsilon:
        """The difference, never below zero: what is left of a budget."""
        return Epsilon(max(self.value - other.value, Fraction(0)))

    def __truediv__(self, parts: int) -> Epsilon:
        if isinstance(parts, bool) or not isinstance(parts, int) or parts < 1:
            raise ValueError(f"ε splits into a positive whole number of parts, not {parts!r}")
        return Epsilon(self.value / parts)

    def __float__(self) -> float:
        # For noise scales only; budgets are never computed in floats.
        return float(self.value)

    def __str__(self) -> str:
        """A decimal with no exponent and no trailing zeros; `p/q` when there is no such
        decimal (a split of 0.1 into three releases is "1/30")."""
        q = self.value.denominator
        while q % 2 == 0:
            q //= 2
        while q % 5 == 0:
            q //= 5
        if q != 1:
            return f"{self.value.numerator}/{self.value.denominator}"
        text = format(Decimal(self.value.numerator) / Decimal(self.value.denominator), "f")
        return text.rstrip("0").rstrip(".") if "." in text else text


ZERO = Epsilon(Fraction(0))


@dataclass(frozen=True)
class PrivacyTerm:
    """A dataset's differential-privacy terms in a contract: the total ε the contract may
    spend on it, and the ε a job spends when it does not declare its own."""

    epsilon: Epsilon
    per_job_epsilon: Epsilon

    @classmethod
    def parse(cls, dataset: str, raw: object) -> PrivacyTerm:
        if isinstance(raw, PrivacyTerm):
            return raw
        example = '{"epsilon": "1.0", "per_job_epsilon": "0.1"}'
        if not isinstance(raw, Mapping):
            raise ContractInvalid(
                f"privacy terms for dataset '{dataset}' must be an object "
                f"like {example}, got {_kind(raw)}"
            )
        unknown = sorted(str(k) for k in raw if k not in ("epsilon", "per_job_epsilon"))
        missing = [k for k in ("epsilon", "per_job_epsilon") if k not in raw]
        if unknown or missing:
            wrong = f"unknown field '{unknown[0]}'" if unknown else f"missing '{missing[0]}'"
            raise ContractInvalid(
                f"privacy terms for dataset '{dataset}': {wrong}; give exactly {example}"
            )
        total = Epsilon.parse(raw["epsilon"], f"privacy epsilon of dataset '{dataset}'")
        per_job = Epsilon.parse(
            raw["per_job_epsilon"], f"privacy per_job_epsilon of dataset '{dataset}'"
        )
        if per_job > total:
            raise ContractInvalid(
                f"per_job_epsilon {per_job} of dataset '{dataset}' is above its total epsilon "
                f"{total}; a job cannot spend more than the whole budget, so lower it"
            )
        return cls(total, per_job)

    def to_json(self) -> dict[str, str]:
        return {"epsilon": str(self.epsilon), "per_job_epsilon": str(self.per_job_epsilon)}


def remaining(total: Epsilon, spent: Epsilon, reserved: Epsilon) -> Epsilon:
    return total - spent - reserved


def check_budget(
    spent: Epsilon,
    reserved: Epsilon,
    requested: Epsilon,
    total: Epsilon,
    *,
    dataset: str,
    contract_id: str,
) -> None:
    """Raise unless `requested` fits in what `total` leaves after `spent` and `reserved`
    (the ε of jobs still running)."""
    left = remaining(total, spent, reserved)
    if requested <= left:
        return
    usable = _floor_term(left)
    if usable == ZERO:
        how = "The budget is used up: apply to amend the contract for a larger epsilon" + (
            ", or wait for running jobs to settle (a failed job's ε is refunded)"
            if reserved > ZERO
            else ""
        )
    else:
        how = (
            f'Declare a smaller epsilon for this job (e.g. "epsilon": {{"{dataset}": '
            f'"{usable}"}}; less ε means more noise), wait for running jobs '
            "to settle, or apply to amend the contract for a larger epsilon"
        )
    raise ContractBudgetExceeded(
        f"this job would spend ε={requested} on dataset '{dataset}' but contract "
        f"{contract_id} has ε={left} left of its {total} ({spent} spent, {reserved} reserved "
        f"by running jobs). {how}"
    )


def _floor_term(eps: Epsilon) -> Epsilon:
    """The largest ε with three decimal places not above `eps`: one a submission may send."""
    return Epsilon(Fraction(math.floor(eps.value * 1000), 1000))


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    return f"a {type(value).__name__}"
