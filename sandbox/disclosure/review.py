"""Which releases people check before a job's code receives them (output review).

Decided from the catalog, the contract and the release's size alone, so the decision is the
same wherever the driver runs. The reasons are shown to the operator: they name rules, never
a value or a size of the held release.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

LEVEL = "level"
CELLS = "cells"
CONTRACT = "contract"


@dataclass(frozen=True)
class ReviewRules:
    """The instance's rules (settings) and the contract's term `review: {"outputs": true}`."""

    levels: frozenset[str] = frozenset({"L4"})
    max_cells: int = 0  # 0: no size rule
    reviewers: int = 1
    reviewers_l4: int = 2
    contract: bool = False

    def __post_init__(self) -> None:
        if self.max_cells < 0 or self.reviewers < 1 or self.reviewers_l4 < 1:
            raise ValueError("review rules need max_cells ≥ 0 and at least one reviewer")


@dataclass(frozen=True)
class Hold:
    reasons: tuple[str, ...]  # e.g. ("level:L4", "contract")
    required: int  # distinct reviewers who must release it


def hold(rules: ReviewRules, levels: Iterable[str], cells: int) -> Hold | None:
    """Whether a release reading data of `levels` with `cells` cells is held, why, and by how
    many reviewers it must be released; None releases it at once."""
    read = sorted(set(levels))
    reasons = [f"{LEVEL}:{level}" for level in read if level in rules.levels]
    if rules.max_cells and cells > rules.max_cells:
        reasons.append(CELLS)
    if rules.contract:
        reasons.append(CONTRACT)
    if not reasons:
        return None
    required = max(rules.reviewers, rules.reviewers_l4) if "L4" in read else rules.reviewers
    return Hold(tuple(reasons), required)
