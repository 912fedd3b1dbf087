"""Minimum-contributor rule: a released cell needs at least `threshold` contributing rows.

Cells below the threshold are set to null and listed, never silently dropped (see
`disclosure.control`, which applies every rule). A whole-table aggregate over no rows is a
cell of zero contributors and is suppressed like any small cell: "nobody here" is itself a
disclosure about the people the filter describes. Groups with no rows never appear at all,
since group keys come from the data. The report keeps the contributor counts for the
regulator; `operator_view` strips them, since a small count is itself the kind of value this
rule protects.
"""

from __future__ import annotations

import math
from typing import Any

from sandbox.catalog.models import LEVELS

DEFAULT_THRESHOLDS: dict[str, int] = {"L1": 1, "L2": 5, "L3": 10, "L4": 10}
RULE = "min_contributors"
COARSEN_RULE = "significant_figures"


def threshold_for(level: str, thresholds: dict[str, int]) -> int:
    if level not in LEVELS:
        raise ValueError(f"unknown classification level {level!r}")
    return max(1, int(thresholds.get(level, DEFAULT_THRESHOLDS[level])))


def cell_threshold(level: str, thresholds: dict[str, int], contract_minimum: int | None) -> int:
    """The threshold of a dataset's cells under a contract: a contract may only make the
    level's threshold stricter."""
    return max(threshold_for(level, thresholds), contract_minimum or 1)


def significant(value: Any, digits: int) -> Any:
    """`value` rounded to `digits` significant figures (None and 0 unchanged)."""
    if value is None or not isinstance(value, (int, float)) or value == 0:
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return value
    return round(float(value), digits - 1 - math.floor(math.log10(abs(value))))


# Report fields derived from the data (how many contributed, how much the largest held, by how
# many rows two releases differ): the regulator sees them, the operator does not.
REGULATOR_ONLY = frozenset({"contributors", "share", "differs_by", "near"})
# Per release: how many groups were left out for being too small (that small groups exist is
# what the rule hides).
REGULATOR_ONLY_RELEASE = frozenset({"left_out"})


def operator_view(report: dict[str, Any]) -> dict[str, Any]:
    """The disclosure report without the values its rules looked at."""
    return {
        **report,
        "releases": [
            {
                **{k: v for k, v in r.items() if k not in REGULATOR_ONLY_RELEASE},
                "suppressed": [
                    {k: v for k, v in s.items() if k not in REGULATOR_ONLY}
                    for s in r.get("suppressed", [])
                ],
            }
            for r in report.get("releases", [])
        ],
    }
