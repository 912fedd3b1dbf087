"""The second line of exact mode: attack patterns in an operator's jobs, for the regulator.

The release gate (`sandbox.disclosure`) decides what each release shows, and is safe on its
own. This module looks at what the engine saw of each collect() that the operator does not
(`JobResult.observations`: how many people the filters selected, the plan's shape and
constants, what each rule hid), next to the operator's recent observations, and names the
patterns that attacks leave behind. Flags go to the regulator only: a flag, or its absence,
would tell an attacker something about the data and how to stay unnoticed.

    pattern               score  what it catches
    small_selection         3    filters that isolate a few people in sensitive data
    one_sided_join          3    a few people joined onto many (fan-out past the threshold)
    search                  2    one plan run again and again with other constants (bisection,
                                 sweep over a parameter)
    near_duplicate          2    releases refused as near-duplicates of earlier ones, again
    repeated_suppression    1    asking again and again for what is then wholly hidden
    evaluation              2    plans the engine could not evaluate on the data
    padding                 3    aggregates whose rows mostly carry values that do not come
                                 from the sensitive data (constants around one person)
    fine_keys               2    groupings so fine that most groups are too small to show
    refused                 1    plans the disclosure rules refuse outright (identifiers in
                                 expressions, joins that could fan out, keys from literals)
    pinpoint                2    exact matches on identifiers or fine quasi-identifiers (an
                                 exact birth date): naming one person in a filter
    extreme                 1    quantiles at the very ends (below 1 % or above 99 %): asking
                                 for the oldest, the richest
    escape                  5    code reaching past the language for the host or the
                                 interpreter (language.signs), whether or not it compiled
    probe                   1    code trying what the language leaves out or treating its
                                 objects as something else
    exhaustion              1    code built or run to exhaust a limit (size, depth, time,
                                 memory, requests)

A job raises each pattern at most once; the flag's detail lists the releases (collects) that
matched. Releases under differential privacy are protected by their noise and raise only
`evaluation`. What a job is compared with is bounded: per plan shape, and overall, at most
the operator's RECENT_LIMIT newest observations and none older than RECENT_WINDOW, so the
cost never grows with the operator's history.

Pure: no database, web framework or cluster. `sandbox.records.flags` stores what goes in and out.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

RECENT_LIMIT = 200
RECENT_WINDOW = dt.timedelta(hours=24)
# `search`: other constants seen this many times (distinct values) with one plan shape.
SEARCH_DISTINCT = 3
# `repeated_suppression`: wholly hidden releases in this many other recent jobs.
SUPPRESSED_JOBS = 2
# How many earlier observations a flag's detail names.
DETAIL_EARLIER = 10

Observation = Mapping[str, Any]


@dataclass(frozen=True)
class Flag:
    pattern: str
    score: int
    detail: dict[str, Any]


@dataclass(frozen=True)
class Seen:
    """One earlier observation of the operator (a collect of one of its jobs), as kept:
    its constants by digest (`literals_key`); the values themselves only when loaded."""

    job_id: str
    index: int
    shape: str
    key: str
    hidden: bool
    differenced: bool  # a cell of it was refused by the difference rule
    at: dt.datetime
    literals: Any = None


@dataclass(frozen=True)
class _Context:
    job_id: str
    same_shape: Sequence[Seen]  # bounded, newest first; this job's earlier collects included
    overall: Sequence[Seen]  # likewise, of any shape


def hidden(obs: Observation) -> bool:
    """Whether a release showed nothing: every group left out, or every cell suppressed.

    `cells` (cells of the rows shown) is not part of the engine's observation; the caller
    adds it from the job's disclosure report when it has it."""
    groups, left_out = int(obs.get("groups") or 0), int(obs.get("left_out") or 0)
    if groups > 0 and left_out >= groups:
        return True
    cells = obs.get("cells")
    suppressed = sum(int(n) for n in (obs.get("rules") or {}).values())
    return cells is not None and int(cells) > 0 and suppressed >= int(cells)


def differenced(obs: Observation) -> bool:
    """Whether a cell of a release was refused as a near-duplicate of earlier releases."""
    return bool((obs.get("rules") or {}).get("difference"))


def literals_key(literals: Any) -> str:
    """A digest of a plan's constants: equal for equal constants, in order."""
    text = json.dumps(literals or [], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def seen(job_id: str, obs: Observation, at: dt.datetime) -> Seen:
    return Seen(
        job_id,
        int(obs.get("index", 0)),
        str(obs.get("shape", "")),
        literals_key(obs.get("literals")),
        hidden(obs),
        differenced(obs),
        at,
        obs.get("literals") or [],
    )


def bounded(recent: Iterable[Seen], now: dt.datetime) -> list[Seen]:
    """The newest RECENT_LIMIT of `recent` within RECENT_WINDOW of `now`, newest first."""
    since = now - RECENT_WINDOW
    return sorted((s for s in recent if s.at >= since), key=lambda s: s.at, reverse=True)[
        :RECENT_LIMIT
    ]


def _where(obs: Observation) -> dict[str, Any]:
    return {"index": obs.get("index"), "dataset": obs.get("dataset")}


def _earlier(items: Iterable[Seen]) -> list[dict[str, Any]]:
    return [
        {"job_id": s.job_id, "index": s.index, "literals": s.literals}
        for s in list(items)[:DETAIL_EARLIER]
    ]


# --- patterns ------------------------------------------------------------------------------


def small_selection(obs: Observation, ctx: _Context) -> dict[str, Any] | None:
    """Filters that single out a few people (fewer than twice the threshold) in sensitive data."""
    threshold = int(obs.get("threshold") or 0)
    selected = [int(n) for n in obs.get("selected") or ()]
    if not obs.get("sensitive") or not any(0 < n < 2 * threshold for n in selected):
        return None
    return {**_where(obs), "selected": selected, "threshold": threshold}


def one_sided_join(obs: Observation, ctx: _Context) -> dict[str, Any] | None:
    """A join fanning a few people (fewer than the threshold) out onto many, so cells pass."""
    threshold = int(obs.get("threshold") or 0)
    selected = [int(n) for n in obs.get("selected") or ()]
    if len(selected) < 2:
        return None
    if not (any(0 < n < threshold for n in selected) and any(n >= threshold for n in selected)):
        return None
    return {**_where(obs), "selected": selected, "threshold": threshold}


def search(obs: Observation, ctx: _Context) -> dict[str, Any] | None:
    """One plan asked again with other constants or parameters: a bisection or a sweep."""
    mine = literals_key(obs.get("literals"))
    others: dict[str, Seen] = {}
    for s in ctx.same_shape:
        if s.key != mine:
            others.setdefault(s.key, s)
    if len(others) < SEARCH_DISTINCT:
        return None
    return {
        **_where(obs),
        "shape": obs.get("shape"),
        "literals": obs.get("literals") or [],
        "distinct_earlier": len(others),
        "earlier": _earlier(others.values()),
    }


def near_duplicate(obs: Observation, ctx: _Context) -> dict[str, Any] | None:
    """Releases refused as near-duplicates of earlier ones (differencing) in the way attacks are.

    A refusal alone is no sign: an overview followed by a breakdown of one of its groups
    meets the rule by chance. It counts when the refused set was nearly an earlier one (a
    few people added or left out: two filters differing by a person, a tracker), or when
    this plan was asked before with other constants."""
    cells = int((obs.get("rules") or {}).get("difference", 0))
    if cells == 0:
        return None
    mine = literals_key(obs.get("literals"))
    varied = [s for s in ctx.same_shape if s.key != mine]
    again = [s for s in ctx.overall if s.differenced]
    # A set that is an earlier one (a union of released atoms) but for a few people is the
    # differencing attack itself. Cross-tabulations of people already released meet the rule
    # in ordinary work, with small pieces inside them; those are not near.
    if not varied and not obs.get("near"):
        return None
    # The very plan asked before, constants and all, refused now: only the data can have
    # changed under it (a new version of a dataset), which the operator does not choose.
    if not varied and any(s.key == mine for s in ctx.same_shape):
        return None
    return {
        **_where(obs),
        "cells": cells,
        "earlier_refused": _earlier(again),
        "earlier_same_shape": _earlier(varied),
    }


def repeated_suppression(obs: Observation, ctx: _Context) -> dict[str, Any] | None:
    """Wholly hidden releases, again and again: probing which cells exist or pass the rules."""
    if not hidden(obs):
        return None
    jobs: list[str] = []
    for s in ctx.overall:
        if s.hidden and s.job_id != ctx.job_id and s.job_id not in jobs:
            jobs.append(s.job_id)
    if len(jobs) < SUPPRESSED_JOBS:
        return None
    return {
        **_where(obs),
        "rules": dict(obs.get("rules") or {}),
        "left_out": obs.get("left_out", 0),
        "earlier_jobs": jobs[:DETAIL_EARLIER],
    }


def evaluation(obs: Observation, ctx: _Context) -> dict[str, Any] | None:
    """A plan the engine could not evaluate on the data: hunting for a value-dependent failure."""
    if "evaluated" in obs:
        failed = not obs["evaluated"]
    else:
        # A release the engine could not evaluate carries no contributor sets: an exact
        # release always has one per table read (`selected`), and a grouped one leaves no
        # cell to name the rule on.
        failed = bool((obs.get("rules") or {}).get("evaluation")) or (
            not obs.get("private") and not obs.get("selected")
        )
    return {**_where(obs), "rules": dict(obs.get("rules") or {})} if failed else None


def padding(obs: Observation, ctx: _Context) -> dict[str, Any] | None:
    """Cells with enough rows but too few contributions from the sensitive data: padding."""
    padded = int(obs.get("padded") or 0)
    return {**_where(obs), "cells": padded} if padded else None


# `fine_keys`: at least this many groups left out, and at least half of all groups.
FINE_LEFT_OUT = 10


def fine_keys(obs: Observation, ctx: _Context) -> dict[str, Any] | None:
    """Groupings so fine that most groups hold fewer people than the threshold: listing
    near-unique keys (exact dates, one-yuan bands) to see who is there."""
    groups, left_out = int(obs.get("groups") or 0), int(obs.get("left_out") or 0)
    if left_out < FINE_LEFT_OUT or 2 * left_out < groups:
        return None
    return {**_where(obs), "groups": groups, "left_out": left_out}


def pinpoint(obs: Observation, ctx: _Context) -> dict[str, Any] | None:
    """A plan matching an identifier or a fine quasi-identifier exactly: naming a person."""
    columns = list(obs.get("pinpoints") or ())
    return {**_where(obs), "columns": columns} if columns else None


def extreme(obs: Observation, ctx: _Context) -> dict[str, Any] | None:
    """Quantiles at the very ends of a distribution: one person's value is what they ask for."""
    columns = list(obs.get("extremes") or ())
    return {**_where(obs), "columns": columns} if columns else None


def refused(obs: Observation, ctx: _Context) -> dict[str, Any] | None:
    """A plan the disclosure rules refused outright, before reading anything."""
    if not obs.get("refused"):
        return None
    return {"index": obs.get("index"), "refused": obs["refused"], "reason": obs.get("reason")}


def about_code(obs: Observation) -> bool:
    """Whether an observation is of the job's code (its signs), not of a release."""
    return "signs" in obs


def _signs(obs: Observation, kind: str) -> dict[str, Any] | None:
    shown = list((obs.get("signs") or {}).get(kind) or ())
    return {"index": obs.get("index"), "signs": shown} if shown else None


def escape(obs: Observation, ctx: _Context) -> dict[str, Any] | None:
    """Code reaching past the language for the host or the interpreter's insides."""
    return _signs(obs, "escape")


def probe(obs: Observation, ctx: _Context) -> dict[str, Any] | None:
    """Code trying what the language leaves out, or its objects as something else."""
    return _signs(obs, "probe")


def exhaustion(obs: Observation, ctx: _Context) -> dict[str, Any] | None:
    """Code built or run to exhaust a limit: size, depth, time, memory, requests."""
    return _signs(obs, "exhaustion")


Check = Callable[[Observation, _Context], dict[str, Any] | None]


@dataclass(frozen=True)
class Pattern:
    name: str
    score: int
    check: Check
    private_too: bool = False  # also checked on differentially private releases
    summary: str = field(default="")


PATTERNS: tuple[Pattern, ...] = tuple(
    Pattern(check.__name__, score, check, private_too, (check.__doc__ or "").splitlines()[0])
    for check, score, private_too in (
        (small_selection, 3, False),
        (one_sided_join, 3, False),
        (search, 2, False),
        (near_duplicate, 2, False),
        (repeated_suppression, 1, False),
        (evaluation, 2, True),
        (padding, 3, False),
        (fine_keys, 2, False),
        (refused, 1, True),
        (pinpoint, 2, True),
        (extreme, 1, True),
        (escape, 5, True),
        (probe, 1, True),
        (exhaustion, 1, True),
    )
)
# Patterns about the code rather than a release: the only ones an observation of the code
# (one with `signs`) is checked against, and checked only against such observations.
# The kinds of sandbox.language.signs (detection imports nothing of the service).
CODE_PATTERNS = frozenset({"escape", "probe", "exhaustion"})
SCORES: dict[str, int] = {p.name: p.score for p in PATTERNS}


def detect(
    job_id: str, observations: Sequence[Observation], recent: Iterable[Seen], now: dt.datetime
) -> list[Flag]:
    """The patterns one job's observations raise, given the operator's recent observations
    (of other jobs; bounded here again). Each collect is compared with the job's earlier
    collects too. At most one flag per pattern, listing the releases that matched."""
    history = [s for s in recent if s.job_id != job_id]
    found: dict[str, list[dict[str, Any]]] = {}
    earlier: list[Seen] = []
    for obs in observations:
        pool = [*history, *earlier]
        ctx = _Context(
            job_id,
            bounded((s for s in pool if s.shape == obs.get("shape")), now),
            bounded(pool, now),
        )
        for pattern in PATTERNS:
            if obs.get("private") and not pattern.private_too:
                continue
            if obs.get("refused") and pattern.check is not refused:
                continue  # nothing was read: only the refusal itself says something
            if about_code(obs) != (pattern.name in CODE_PATTERNS):
                continue
            detail = pattern.check(obs, ctx)
            if detail is not None:
                found.setdefault(pattern.name, []).append(detail)
        if not about_code(obs):
            earlier.append(seen(job_id, obs, now))
    return [Flag(p.name, p.score, {"releases": found[p.name]}) for p in PATTERNS if p.name in found]
