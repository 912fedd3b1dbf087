"""Minimum-contributor rule: a released cell needs at least `threshold` contributing rows.

Cells below the threshold are set to null and listed, never silently dropped. The report keeps
the contributor counts for the regulator; `operator_view` strips them, since a small count is
itself the kind of value this rule protects.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from sandbox.catalog.models import LEVELS

DEFAULT_THRESHOLDS: dict[str, int] = {"L1": 1, "L2": 5, "L3": 10, "L4": 10}
RULE = "min_contributors"
COARSEN_RULE = "significant_figures"
# Set by the engine on an output column whose exact value would be one person's value
# (a quantile of a sensitive column): the number of significant figures to release.
COARSEN_KEY = b"coarsen_significant_figures"


@dataclass(frozen=True)
class Release:
    body: dict[str, Any]          # API.md's released table
    suppressed: tuple[dict[str, Any], ...]   # {"row", "column", "rule", "threshold", "contributors"}
    # {"column", "rule", "digits", "reason"} per column released rounded, for the report.
    coarsened: tuple[dict[str, Any], ...] = ()


def threshold_for(level: str, thresholds: dict[str, int]) -> int:
    if level not in LEVELS:
        raise ValueError(f"unknown classification level {level!r}")
    return max(1, int(thresholds.get(level, DEFAULT_THRESHOLDS[level])))


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (dt.date, dt.datetime)):
        return v.isoformat()
    return v


def significant(value: Any, digits: int) -> Any:
    """`value` rounded to `digits` significant figures (None and 0 unchanged)."""
    if value is None or not isinstance(value, (int, float)) or value == 0:
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return value
    return round(float(value), digits - 1 - math.floor(math.log10(abs(value))))


def _coarsen_digits(result: pa.Table, name: str) -> int | None:
    meta = result.schema.field(name).metadata or {}
    return int(meta[COARSEN_KEY]) if COARSEN_KEY in meta else None


def apply_threshold(result: pa.Table, keys: tuple[str, ...], threshold: int) -> Release:
    values = [n for n in result.column_names if not n.startswith("__c:")]
    aggs = [n for n in values if n not in keys]
    coarse = {n: d for n in aggs if (d := _coarsen_digits(result, n)) is not None}
    columns = [result.column(n).to_pylist() for n in values]
    columns = [[significant(v, coarse[n]) for v in c] if n in coarse else c
               for n, c in zip(values, columns)]
    rows = [[_json_value(v) for v in r] for r in zip(*columns)]
    contributors = {a: result.column(f"__c:{a}").to_pylist() for a in aggs}
    suppressed: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        for a in aggs:
            n = contributors[a][i] or 0
            if n < threshold:
                row[values.index(a)] = None
                suppressed.append({"row": i, "column": a, "rule": RULE,
                                   "threshold": threshold, "contributors": n})
    body = {
        "kind": "table",
        "columns": [{"name": n, "type": str(result.schema.field(n).type)} for n in values],
        "rows": rows,
        "suppressed": [[s["row"], s["column"]] for s in suppressed],
    }
    coarsened = tuple(
        {"column": n, "rule": COARSEN_RULE, "digits": d,
         "reason": "a quantile of a sensitive column is one person's value; released rounded "
                   f"to {d} significant figures"} for n, d in coarse.items())
    return Release(body, tuple(suppressed), coarsened)


def operator_view(report: dict[str, Any]) -> dict[str, Any]:
    """The disclosure report without contributor counts."""
    return {
        **report,
        "releases": [
            {**r, "suppressed": [{k: v for k, v in s.items() if k != "contributors"}
                                 for s in r.get("suppressed", [])]}
            for r in report.get("releases", [])
        ],
    }
