"""The (n, k) dominance rule for sums and means: a cell is suppressed when its n largest
contributions make up more than k of its total, since then the cell is close to those few
contributors' own values (one dominant firm's turnover, one very high income).

Defaults are the ABS's (1, 50 %) and (2, 67 %). Contributions are absolute values, so
negative values dominate as positive ones do. A cell whose total is zero has no dominant
contributor and is not suppressed by this rule (the minimum-contributor rule still applies).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

RULE = "dominance"


@dataclass(frozen=True)
class DominanceRule:
    n: int  # the largest n contributions …
    k: Fraction  # … may make up at most this share of the cell's total

    def __post_init__(self) -> None:
        if not 1 <= self.n <= 2:
            raise ValueError("dominance rules look at the 1 or 2 largest contributions")
        if not 0 < self.k <= 1:
            raise ValueError("a dominance share must be above 0 % and at most 100 %")

    def describe(self) -> str:
        return f"({self.n}, {float(self.k) * 100:g} %)"


DEFAULT_RULES = (DominanceRule(1, Fraction(1, 2)), DominanceRule(2, Fraction(67, 100)))


def parse_rules(text: str) -> tuple[DominanceRule, ...]:
    """'1:50,2:67' → the rules (n, k %); '' → none."""
    rules = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        n, sep, k = item.partition(":")
        if not sep or not n.strip().isdigit():
            raise ValueError(f"dominance rule {item!r} must look like 1:50 (n:percent)")
        rules.append(DominanceRule(int(n), Fraction(k.strip()) / 100))
    return tuple(rules)


@dataclass(frozen=True)
class Dominated:
    rule: DominanceRule
    share: float  # of the total held by the rule's n largest contributions


def dominated(top: list[float], mass: float, rules: tuple[DominanceRule, ...]) -> Dominated | None:
    """The first rule the cell breaks, given its largest |contributions| and their total."""
    if mass <= 0:
        return None
    ordered = sorted(top, reverse=True)
    mass_n, mass_d = float(mass).as_integer_ratio()
    for rule in rules:
        largest = sum(ordered[: rule.n])
        # largest > k × mass, exactly: in integers, without building fractions per cell.
        top_n, top_d = float(largest).as_integer_ratio()
        k = rule.k
        if top_n * k.denominator * mass_d > k.numerator * mass_n * top_d:
            return Dominated(rule, largest / mass)
    return None
