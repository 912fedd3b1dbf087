"""Turning an engine result into a released table: every disclosure rule, in order.

1. minimum contributors per cell (`threshold`): distinct people of every table read whose
   rows count for the cell; a row none of whose cells reaches it is left out, key and all;
2. dominance of magnitudes (`dominance`: sums, means, variances, quantiles), per table read;
3. the audit of each row's people against everything the operator was released before
   (`audit`, through the gate, which records what passes); a row that fails loses all its
   cells;
4. secondary suppression: in any line of the table (cells that share every key but one, the
   whole table for one key) where exactly one cell of a column is hidden (suppressed, or its
   row left out), the smallest other cell of the line is suppressed too, so the hidden cell
   cannot be recovered by subtracting the released ones from a total published elsewhere.
   Repeated until every line has none or at least two hidden cells.

Suppressed cells become null and are listed; rows left out are counted in the regulator's
report.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from sandbox.catalog.revisions import Revisions
from sandbox.disclosure import audit as audit_rules
from sandbox.disclosure import dominance, threshold
from sandbox.disclosure.dominance import DominanceRule
from sandbox.disclosure.gate import Recorded
from sandbox.engine import internal, protection

SECONDARY_RULE = "secondary"


@dataclass(frozen=True)
class Policy:
    threshold: int
    dominance: tuple[DominanceRule, ...] = dominance.DEFAULT_RULES
    # Off for noisy releases: noise already hides what subtracting from a total would show.
    secondary: bool = True
    # Released tables are summaries: rows beyond this many (in key order) are left out, and
    # the report says so. A cap on released rows, not a refusal: whether a job fails must not
    # depend on how many groups the data has.
    max_rows: int = 10_000
    # Per magnitude aggregate (output name), what it measures (engine: CheckedPlan.measures):
    # the audit keeps the people contributing to each measure as sets of their own.
    measures: tuple[tuple[str, str], ...] = ()
    # Per table read, the people revised in the version read (catalog.revisions): in the sets
    # of those contributing to a magnitude, each goes by the number of their current state.
    revisions: tuple[Revisions | None, ...] = ()
    # Aggregates of a condition (count_if, mean_of): the people for whom it holds are
    # released as a set of their own, beside the row's group.
    conditions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Margins:
    """A release with totals (with_totals()) or shares: which rows of the engine's result
    are margins, and what to do with them. Every margin row passes every rule, as any row
    does, and the lines of secondary suppression run through it: a total with one hidden
    cell under it would give that cell away."""

    # Per row of the result, the keys it is grouped by: the plan's keys for its own groups,
    # fewer for a margin (None in the others, which it adds up over).
    groupings: tuple[tuple[str, ...], ...]
    # The margin groupings released as rows; the others only serve shares, and are audited
    # and recorded all the same (a share times its cell gives its total).
    shown: frozenset[tuple[str, ...]] = frozenset()
    # Aggregates released as shares: (name, within keys). Each share is its cell divided by
    # the total it is taken of, both as released: hidden when either is.
    shares: tuple[tuple[str, tuple[str, ...]], ...] = ()


MARGIN_RULE = "margin"


@dataclass(frozen=True)
class Release:
    body: dict[str, Any]  # API.md's released table
    suppressed: tuple[dict[str, Any], ...]  # {"row", "column", "rule", …} per cell
    # {"column", "rule", "digits", "reason"} per column released rounded, for the report.
    coarsened: tuple[dict[str, Any], ...] = ()
    # The people (serialized bitmaps) of the rows released here, with what they were released
    # about (control.Sets): for the operator's recorded history.
    new_sets: tuple[tuple[str, bytes], ...] = ()
    # Rows left out: groups with too few contributors in every cell (`small`), and groups
    # beyond `Policy.max_rows` (`truncated`).
    small: int = 0
    truncated: int = 0


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (dt.date, dt.datetime)):
        return v.isoformat()
    return v


def _coarsen_digits(result: pa.Table, name: str) -> int | None:
    meta = result.schema.field(name).metadata or {}
    return int(meta[internal.COARSEN_KEY]) if internal.COARSEN_KEY in meta else None


Cell = tuple[int, str]


def _small_groups(
    result: pa.Table, keys: tuple[str, ...], minimum: int, margins: Margins | None = None
) -> list[bool]:
    """Per row, whether every one of its cells has fewer than `minimum` contributors.

    Such rows are left out of the release: which rows appear must not depend on a group
    smaller than the threshold (a key shown with its cells hidden still says "someone here
    matched the filter"). A whole-table aggregate keeps its one row (its key is no one's),
    and so does the grand total of a table with totals."""
    counts = internal.contributor_columns(result.column_names)
    if not keys or not counts:
        return [False] * result.num_rows
    enough = None
    for name in counts:
        ok = pc.greater_equal(pc.fill_null(result.column(name), 0), minimum)
        enough = ok if enough is None else pc.or_(enough, ok)
    assert enough is not None
    small = [not v for v in enough.to_pylist()]
    if margins is not None:
        small = [s and g != () for s, g in zip(small, margins.groupings)]
    return small


def _beyond_cap(small: list[bool], cap: int) -> int:
    """Index of the first row after the first `cap` rows that are shown (len: none)."""
    shown = 0
    for i, s in enumerate(small):
        if not s:
            shown += 1
            if shown > cap:
                return i
    return len(small)


def release(
    result: pa.Table,
    keys: tuple[str, ...],
    policy: Policy,
    audit: Audit | None = None,
    margins: Margins | None = None,
) -> Release:
    small = _small_groups(result, keys, policy.threshold, margins)
    end = _beyond_cap(small, policy.max_rows)
    truncated = sum(1 for s in small[end:] if not s)
    if end < result.num_rows:
        result, small = result.slice(0, end), small[:end]
        if margins is not None:
            margins = dataclasses.replace(margins, groupings=margins.groupings[:end])
    values = internal.released(result.column_names)
    aggs = [n for n in values if n not in keys]
    coarse = {n: d for n in aggs if (d := _coarsen_digits(result, n)) is not None}
    columns = [result.column(n).to_pylist() for n in values]
    columns = [
        [threshold.significant(v, coarse[n]) for v in c] if n in coarse else c
        for n, c in zip(values, columns)
    ]
    rows = [[_json_value(v) for v in r] for r in zip(*columns)]
    contributors = {a: result.column(internal.contributors(a)).to_pylist() for a in aggs}

    out: dict[Cell, dict[str, Any]] = {}
    for i in range(len(rows)):
        for a in aggs:
            n = contributors[a][i] or 0
            if n < policy.threshold:
                out[(i, a)] = {
                    "rule": threshold.RULE,
                    "threshold": policy.threshold,
                    "contributors": n,
                }
    _dominance(result, aggs, policy, out)
    new_sets = _differences(result, aggs, policy, audit, out)
    if policy.secondary:
        # Left-out rows count as hidden cells here: a total published elsewhere minus the
        # rows shown would otherwise give a left-out group's value.
        _secondary(result, keys, aggs, contributors, out, margins)
    shared = _shares(values, rows, small, out, margins)

    # Shown rows, renumbered.
    place: dict[int, int] = {}
    for i, s in enumerate(small):
        if not s and _shown(i, keys, margins):
            place[i] = len(place)
    suppressed = []
    for (i, a), why in sorted(out.items(), key=lambda kv: (kv[0][0], aggs.index(kv[0][1]))):
        rows[i][values.index(a)] = None
        if i in place:
            if "protects" in why:
                why = {**why, "protects": [place.get(why["protects"][0]), a]}
            suppressed.append({"row": place[i], "column": a, **why})
    body: dict[str, Any] = {
        "kind": "table",
        "columns": [
            {"name": n, "type": "double" if n in shared else str(result.schema.field(n).type)}
            for n in values
        ],
        "rows": [rows[i] for i in place],
        "suppressed": [[s["row"], s["column"]] for s in suppressed],
    }
    if margins is not None and margins.shown:
        body["margins"] = [place[i] for i in place if margins.groupings[i] != keys]
    coarsened = tuple(
        {
            "column": n,
            "rule": threshold.COARSEN_RULE,
            "digits": d,
            "reason": "a quantile of a sensitive column is one person's value; released rounded "
            f"to {d} significant figures",
        }
        for n, d in coarse.items()
    )
    left_out = sum(1 for i, s in enumerate(small) if s and _shown(i, keys, margins))
    return Release(body, tuple(suppressed), coarsened, new_sets, left_out, truncated)


def _shown(i: int, keys: tuple[str, ...], margins: Margins | None) -> bool:
    """Whether row `i` is released as a row: the plan's own groups and the totals asked for."""
    if margins is None:
        return True
    grouping = margins.groupings[i]
    return grouping == keys or grouping in margins.shown


def _shares(
    values: list[str],
    rows: list[list[Any]],
    small: list[bool],
    out: dict[Cell, dict[str, Any]],
    margins: Margins | None,
) -> set[str]:
    """Each share's cells turned into fractions of their totals, after every rule has run on
    the cells and totals themselves: a share is hidden when its cell or its total is (a
    share beside its cell gives the total). Returns the names of the shares."""
    if margins is None or not margins.shares:
        return set()

    def key(i: int, names: tuple[str, ...]) -> tuple[Any, ...]:
        return tuple(rows[i][values.index(k)] for k in names)

    place = {(g, key(i, g)): i for i, g in enumerate(margins.groupings)}
    for name, within in margins.shares:
        at = values.index(name)
        for i, g in enumerate(margins.groupings):
            if (i, name) in out:
                continue
            t = place.get((within, key(i, within))) if set(within) <= set(g) else None
            if t is None:
                rows[i][at] = None  # a total over keys the share is taken within: no share
                continue
            if (t, name) in out or small[t]:
                out[(i, name)] = {"rule": MARGIN_RULE, "protects": [t, name]}
                continue
            cell, total = rows[i][at], rows[t][at]
            rows[i][at] = None if not total or cell is None else cell / total
    return {name for name, _ in margins.shares}


UNEVALUABLE_RULE = "evaluation"


def unevaluable(keys: tuple[str, ...], columns: list[tuple[str, str]]) -> Release:
    """The release of a plan the engine could not evaluate on this data: no group, or the one
    whole-table row with every cell hidden. Evaluation is total (failures give null), so this
    is a last resort that still keeps the job's outcome independent of the data."""
    aggs = [n for n, _ in columns if n not in keys]
    rows = [] if keys else [[None] * len(columns)]
    suppressed = [] if keys else [{"row": 0, "column": a, "rule": UNEVALUABLE_RULE} for a in aggs]
    body = {
        "kind": "table",
        "columns": [{"name": n, "type": t} for n, t in columns],
        "rows": rows,
        "suppressed": [[s["row"], s["column"]] for s in suppressed],
    }
    return Release(body, tuple(suppressed))


def apply_threshold(result: pa.Table, keys: tuple[str, ...], minimum: int) -> Release:
    """The minimum-contributor rule alone."""
    return release(result, keys, Policy(minimum, dominance=(), secondary=False))


def _dominance(
    result: pa.Table, aggs: list[str], policy: Policy, out: dict[Cell, dict[str, Any]]
) -> None:
    names = set(result.column_names)
    for a in aggs:
        if not policy.dominance or protection.MASS + a not in names:
            continue
        masses = result.column(protection.MASS + a).to_pylist()
        # Per table read: one person's contributions through one table (a person repeated by
        # a join contributes each time).
        j = 0
        while protection.top(j, a) in names:
            tops = result.column(protection.top(j, a)).to_pylist()
            for i, (top, mass) in enumerate(zip(tops, masses)):
                hit = dominance.dominated(top or [], mass or 0.0, policy.dominance)
                if hit is not None and (i, a) not in out:
                    out[(i, a)] = {
                        "rule": dominance.RULE,
                        "n": hit.rule.n,
                        "k": float(hit.rule.k),
                        "share": round(hit.share, 4),
                    }
            j += 1


# The people (serialized bitmaps) of one released row, by what they were released about:
# "people" for the row's groups (one set per table read), "measure:<columns>" for those who
# contribute to a magnitude (sum, mean…) of those columns.
Sets = list[tuple[str, bytes]]
Audit = Callable[[list[Sets | None]], list[Any]]
PEOPLE = "people"


def _row_sets(
    result: pa.Table, aggs: list[str], policy: Policy, out: dict[Cell, dict[str, Any]]
) -> list[Sets | None]:
    names = set(result.column_names)
    measures = dict(policy.measures)
    columns: list[tuple[str, str | None, str]] = []  # (space, aggregate or None, column)
    for j in range(protection.reads_in(names)):
        columns.append((PEOPLE, None, protection.ids(j)))
        for a in aggs:
            if a in measures and protection.nonzero_set(j, a) in names:
                columns.append((f"measure:{measures[a]}", a, protection.nonzero_set(j, a)))
            elif a in policy.conditions and protection.nonzero_set(j, a) in names:
                # Counting those for whom a condition holds counts a set of people, as a
                # filter would: with the group's count beside it, the difference is those
                # for whom it does not.
                columns.append((PEOPLE, a, protection.nonzero_set(j, a)))
            if protection.matched_set(j, a) in names:
                columns.append((PEOPLE, a, protection.matched_set(j, a)))
    values = {c: result.column(c).to_pylist() for _, _, c in columns}
    for j, revised in enumerate(policy.revisions):
        for a in aggs:
            column = protection.nonzero_set(j, a)
            if a in measures and revised is not None and len(revised) and column in values:
                values[column] = [
                    revised.apply(blob) if blob is not None else None for blob in values[column]
                ]
    rows: list[Sets | None] = []
    for i in range(result.num_rows):
        if all((i, a) in out for a in aggs):
            rows.append(None)
            continue
        row: Sets = []
        for space, of, c in columns:
            blob = values[c][i]
            # The same people in the same space twice (those who count for a group's median
            # and for its 90th percentile) are one set to audit, send and record.
            if (of is None or (i, of) not in out) and (space, blob) not in row:
                row.append((space, blob))
        rows.append(row)
    return rows


def _differences(
    result: pa.Table,
    aggs: list[str],
    policy: Policy,
    audit: Audit | None,
    out: dict[Cell, dict[str, Any]],
) -> tuple[tuple[str, bytes], ...]:
    """Audit each row still to be released (its people, per table read and per measure)
    against everything the operator was released before (disclosure.audit); a row that
    fails loses every cell. Returns the (space, set) pairs released that the recorded
    history may not hold yet (a row the audit says is `Recorded` adds none)."""
    if audit is None or protection.ids(0) not in result.column_names:
        return ()
    rows = _row_sets(result, aggs, policy, out)
    released: list[tuple[str, bytes]] = []
    for i, (row, conflict) in enumerate(zip(rows, audit(rows))):
        if row is None or isinstance(conflict, Recorded):
            continue
        if conflict is None:
            released += row
            continue
        for a in aggs:
            out.setdefault(
                (i, a),
                {
                    "rule": audit_rules.RULE,
                    "threshold": policy.threshold,
                    "via": conflict.via,
                    "differs_by": conflict.differs_by,
                    "near": conflict.near,
                },
            )
    return tuple(released)


# A margin's value in the keys it adds up over, for telling its rows apart from null keys.
_TOTAL = ("__total__",)


def _lines(
    result: pa.Table, keys: tuple[str, ...], margins: Margins | None = None
) -> list[list[int]]:
    """Rows that share every key but one, for each key; one line of all rows for one key.
    With margins, a line holds its total too: the margin that adds up over that key."""
    if not keys or result.num_rows < 2:
        return []
    key_values = list(zip(*(result.column(k).to_pylist() for k in keys)))
    if margins is not None:
        key_values = [
            tuple(v if k in g else _TOTAL for k, v in zip(keys, kv))
            for kv, g in zip(key_values, margins.groupings)
        ]
    lines: list[list[int]] = []
    for j in range(len(keys)):
        by_rest: dict[tuple[Any, ...], list[int]] = {}
        for i, kv in enumerate(key_values):
            by_rest.setdefault(kv[:j] + kv[j + 1 :], []).append(i)
        lines += [rows for rows in by_rest.values() if len(rows) >= 2]
    return lines


def _secondary(
    result: pa.Table,
    keys: tuple[str, ...],
    aggs: list[str],
    contributors: dict[str, list[Any]],
    out: dict[Cell, dict[str, Any]],
    margins: Margins | None = None,
) -> None:
    lines = _lines(result, keys, margins)
    changed = True
    while changed:
        changed = False
        for a in aggs:
            for line in lines:
                hidden = [i for i in line if (i, a) in out]
                if len(hidden) != 1:
                    continue
                partner = min(
                    (i for i in line if (i, a) not in out),
                    key=lambda i: (contributors[a][i] or 0, i),
                )
                out[(partner, a)] = {"rule": SECONDARY_RULE, "protects": [hidden[0], a]}
                changed = True
