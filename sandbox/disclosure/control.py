"""Turning an engine result into a released table: every disclosure rule, in order.

1. minimum contributors per cell (`threshold`);
2. dominance of sums and means (`dominance`), where the engine measured contributions;
3. difference checks of each row's contributing set against the contract's earlier releases
   (`difference`), where the engine reported the sets; a row that fails loses all its cells;
4. secondary suppression: in any line of the table (cells that share every key but one, the
   whole table for one key) where exactly one cell of a column is suppressed, the smallest
   other cell of the line is suppressed too, so the suppressed cell cannot be recovered by
   subtracting the released ones from a total published elsewhere. Repeated until every line
   has none or at least two suppressed cells.

Suppressed cells become null and are listed; nothing is dropped silently.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from sandbox.disclosure import difference, dominance, threshold
from sandbox.disclosure.dominance import DominanceRule
from sandbox.engine import protection

SECONDARY_RULE = "secondary"


@dataclass(frozen=True)
class Policy:
    threshold: int
    dominance: tuple[DominanceRule, ...] = dominance.DEFAULT_RULES
    # Off for noisy releases: noise already hides what subtracting from a total would show.
    secondary: bool = True


@dataclass(frozen=True)
class Release:
    body: dict[str, Any]          # API.md's released table
    suppressed: tuple[dict[str, Any], ...]   # {"row", "column", "rule", …} per cell
    # {"column", "rule", "digits", "reason"} per column released rounded, for the report.
    coarsened: tuple[dict[str, Any], ...] = ()
    # Contributing sets (serialized bitmaps) of the rows released here, new to the history.
    new_sets: tuple[bytes, ...] = ()


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (dt.date, dt.datetime)):
        return v.isoformat()
    return v


def _coarsen_digits(result: pa.Table, name: str) -> int | None:
    meta = result.schema.field(name).metadata or {}
    return int(meta[threshold.COARSEN_KEY]) if threshold.COARSEN_KEY in meta else None


Cell = tuple[int, str]


def release(result: pa.Table, keys: tuple[str, ...], policy: Policy,
            history: difference.History | None = None) -> Release:
    values = [n for n in result.column_names if not n.startswith("__")]
    aggs = [n for n in values if n not in keys]
    coarse = {n: d for n in aggs if (d := _coarsen_digits(result, n)) is not None}
    columns = [result.column(n).to_pylist() for n in values]
    columns = [[threshold.significant(v, coarse[n]) for v in c] if n in coarse else c
               for n, c in zip(values, columns)]
    rows = [[_json_value(v) for v in r] for r in zip(*columns)]
    contributors = {a: result.column(f"__c:{a}").to_pylist() for a in aggs}

    out: dict[Cell, dict[str, Any]] = {}
    for i in range(len(rows)):
        for a in aggs:
            n = contributors[a][i] or 0
            if n < policy.threshold:
                out[(i, a)] = {"rule": threshold.RULE, "threshold": policy.threshold,
                               "contributors": n}
    _dominance(result, aggs, policy, out)
    new_sets = _differences(result, aggs, policy, history, out)
    if policy.secondary:
        _secondary(result, keys, aggs, contributors, out)

    suppressed = []
    for (i, a), why in sorted(out.items(), key=lambda kv: (kv[0][0], aggs.index(kv[0][1]))):
        rows[i][values.index(a)] = None
        suppressed.append({"row": i, "column": a, **why})
    body = {
        "kind": "table",
        "columns": [{"name": n, "type": str(result.schema.field(n).type)} for n in values],
        "rows": rows,
        "suppressed": [[s["row"], s["column"]] for s in suppressed],
    }
    coarsened = tuple(
        {"column": n, "rule": threshold.COARSEN_RULE, "digits": d,
         "reason": "a quantile of a sensitive column is one person's value; released rounded "
                   f"to {d} significant figures"} for n, d in coarse.items())
    return Release(body, tuple(suppressed), coarsened, new_sets)


def apply_threshold(result: pa.Table, keys: tuple[str, ...], minimum: int) -> Release:
    """The minimum-contributor rule alone."""
    return release(result, keys, Policy(minimum, dominance=(), secondary=False))


def _dominance(result: pa.Table, aggs: list[str], policy: Policy,
               out: dict[Cell, dict[str, Any]]) -> None:
    for a in aggs:
        if not policy.dominance or protection.TOP + a not in result.column_names:
            continue
        tops = result.column(protection.TOP + a).to_pylist()
        masses = result.column(protection.MASS + a).to_pylist()
        for i, (top, mass) in enumerate(zip(tops, masses)):
            hit = dominance.dominated(top or [], mass or 0.0, policy.dominance)
            if hit is not None and (i, a) not in out:
                out[(i, a)] = {"rule": dominance.RULE, "n": hit.rule.n,
                               "k": float(hit.rule.k), "share": round(hit.share, 4)}


def _differences(result: pa.Table, aggs: list[str], policy: Policy,
                 history: difference.History | None,
                 out: dict[Cell, dict[str, Any]]) -> tuple[bytes, ...]:
    if history is None or protection.IDS not in result.column_names:
        return ()
    new: list[bytes] = []
    for i, blob in enumerate(result.column(protection.IDS).to_pylist()):
        open_cells = [a for a in aggs if (i, a) not in out]
        if not open_cells:
            continue
        d = difference.digest(blob)
        conflict = history.conflict(blob, policy.threshold, d)
        if conflict is not None:
            for a in open_cells:
                out[(i, a)] = {"rule": difference.RULE, "threshold": policy.threshold,
                               "via": conflict.via, "differs_by": conflict.differs_by}
            continue
        if history.add(blob, d):
            new.append(blob)
    return tuple(new)


def _lines(result: pa.Table, keys: tuple[str, ...]) -> list[list[int]]:
    """Rows that share every key but one, for each key; one line of all rows for one key."""
    if not keys or result.num_rows < 2:
        return []
    key_values = list(zip(*(result.column(k).to_pylist() for k in keys)))
    lines: list[list[int]] = []
    for j in range(len(keys)):
        by_rest: dict[tuple[Any, ...], list[int]] = {}
        for i, kv in enumerate(key_values):
            by_rest.setdefault(kv[:j] + kv[j + 1:], []).append(i)
        lines += [rows for rows in by_rest.values() if len(rows) >= 2]
    return lines


def _secondary(result: pa.Table, keys: tuple[str, ...], aggs: list[str],
               contributors: dict[str, list[Any]], out: dict[Cell, dict[str, Any]]) -> None:
    lines = _lines(result, keys)
    changed = True
    while changed:
        changed = False
        for a in aggs:
            for line in lines:
                hidden = [i for i in line if (i, a) in out]
                if len(hidden) != 1:
                    continue
                partner = min((i for i in line if (i, a) not in out),
                              key=lambda i: (contributors[a][i] or 0, i))
                out[(partner, a)] = {"rule": SECONDARY_RULE, "protects": [hidden[0], a]}
                changed = True
