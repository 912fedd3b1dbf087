"""Flags: attack patterns detected in operators' jobs, kept for the regulator, and the
automatic suspension of a contract whose unreviewed flags add up.

    settle_job ─ record: keep the job's observations ─ detect (sandbox.disclosure.detection) ─ keep flags
               ─ log them ─ unreviewed scores of the contract over the window ≥ the limit?
               ─ suspend the contract, as a regulator's suspension does, logged alike
    GET  /v1/flags              the regulator lists them, with each job's code and params
    POST /v1/flags/{id}/review  the regulator marks one reviewed, with a note

Flags are never shown to the operator: no route an operator may call returns them, the
suspension's reason (which the operator reads on its contract) names no pattern, and the log
events that do name them are readable by the regulator and the bureau only
(`sandbox.api.routes.ledger`). The bureau does not list flags either: they carry the job's
code, which only the regulator reads.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import bindparam, func, insert, or_, select
from sqlalchemy.orm import Session

from contracts import lifecycle
from contracts.lifecycle import Status
from operators.roles import Role
from sandbox.common import clock
from sandbox.context import Context
from sandbox.disclosure import detection
from sandbox.errors import BadRequest, Conflict, NotFound
from sandbox.ledger import log
from sandbox.records import agreements, listings
from sandbox.records.principals import Actor, require
from sandbox.store import core
from sandbox.store.models import Contract, Flag, Job, JobObservation

NOTE_MAX = 4000
# What the operator reads on its suspended contract: why in general, never which patterns.
SUSPENSION_REASON = (
    "suspended automatically pending the regulator's review of this "
    "contract's recent jobs; only the regulator can resume it"
)


# --- recording (inside settle_job's transaction) --------------------------------------------


def record(
    session: Session,
    job: Job,
    observations: Sequence[Mapping[str, Any]],
    *,
    suspend_score: int,
    window: dt.timedelta,
) -> list[Flag]:
    """Keep a settled job's observations, detect patterns against the operator's recent ones,
    keep the flags, and suspend the contract once its unreviewed flags of the last `window`
    score `suspend_score` or more (0: never). Runs in the caller's transaction."""
    if not observations:
        return []
    now = clock.stored_now()
    observed = _with_cells(observations, job.disclosure)
    recent = _recent(session, job, observed, now)
    found = detection.detect(job.id, observed, recent, now)
    kept = [
        dict(
            job_id=job.id,
            operator_id=job.operator_id,
            contract_id=job.contract_id,
            index=int(o.get("index", i)),
            shape=str(o.get("shape", "")),
            literals=list(o.get("literals") or []),
            literals_key=detection.literals_key(o.get("literals")),
            dataset=str(o.get("dataset", "")),
            hidden=detection.hidden(o),
            differenced=detection.differenced(o),
            created_at=now,
        )
        for i, o in enumerate(observed)
        if not detection.about_code(o)
    ]
    if kept:
        # A Core insert: the rows are never updated, so need no unit-of-work bookkeeping.
        core.execute(session, _INSERT_OBSERVATIONS, kept)
    if not found:
        return []
    _name_earlier_constants(session, job.operator_id, [f.detail for f in found])
    rows = [
        Flag(
            job_id=job.id,
            operator_id=job.operator_id,
            contract_id=job.contract_id,
            pattern=f.pattern,
            score=f.score,
            detail=f.detail,
            created_at=now,
        )
        for f in found
    ]
    session.add_all(rows)
    session.flush()
    log.append(
        session,
        "flag.raised",
        None,
        job.id,
        {
            "contract_id": job.contract_id,
            "operator_id": job.operator_id,
            "flags": [{"id": r.id, "pattern": r.pattern, "score": r.score} for r in rows],
        },
    )
    if suspend_score > 0:
        _suspend_if_due(session, job.contract_id, suspend_score, now - window)
    return rows


_INSERT_OBSERVATIONS = insert(JobObservation)


def _with_cells(
    observations: Sequence[Mapping[str, Any]], disclosure: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """The observations with the number of cells each release showed, from the report."""
    cells = {r.get("index"): r.get("cells") for r in (disclosure or {}).get("releases", [])}
    out = []
    for o in observations:
        shown = cells.get(o.get("index"))
        out.append({**o, "cells": shown} if "cells" not in o and shown is not None else dict(o))
    return out


def _recent(
    session: Session, job: Job, observed: Sequence[Mapping[str, Any]], now: dt.datetime
) -> list[detection.Seen]:
    """The operator's observations detection compares with, from the newest RECENT_LIMIT of
    the last RECENT_WINDOW: per shape of this job, the newest of each distinct set of
    constants; and (when a release of this job hid everything or met the difference rule)
    those of any shape that did too. Index range scans, bounded; a dashboard refreshed all
    day costs one row."""
    window = {
        "operator_id": job.operator_id,
        "since": now - detection.RECENT_WINDOW,
        "limit": detection.RECENT_LIMIT,
    }
    by_constants, refused, load = _recent_queries()
    ids: set[int] = set()
    for shape in sorted(
        {
            str(x.get("shape", ""))
            for x in observed
            if not x.get("private") and not detection.about_code(x)
        }
    ):
        ids.update(core.execute(session, by_constants, {**window, "shape": shape}).scalars())
    if any(detection.hidden(x) or detection.differenced(x) for x in observed):
        ids.update(core.execute(session, refused, window).scalars())
    if not ids:
        return []
    return [detection.Seen(*row) for row in core.execute(session, load, {"ids": list(ids)})]


@functools.cache
def _recent_queries() -> tuple[Any, Any, Any]:
    # Built once (composing them costs more than running them), with bound parameters.
    o = JobObservation
    mine = (o.operator_id == bindparam("operator_id"), o.created_at >= bindparam("since"))
    newest = (o.created_at.desc(), o.id.desc())
    shaped = (
        select(o.id, o.literals_key)
        .where(*mine, o.shape == bindparam("shape"))
        .order_by(*newest)
        .limit(bindparam("limit"))
        .subquery()
    )
    by_constants = select(func.max(shaped.c.id)).group_by(shaped.c.literals_key)
    recent = (
        select(o.id, o.hidden, o.differenced)
        .where(*mine)
        .order_by(*newest)
        .limit(bindparam("limit"))
        .subquery()
    )
    refused = select(recent.c.id).where(or_(recent.c.hidden, recent.c.differenced))
    load = select(
        o.job_id, o.index, o.shape, o.literals_key, o.hidden, o.differenced, o.created_at
    ).where(o.id.in_(bindparam("ids", expanding=True)))
    return by_constants, refused, load


def _name_earlier_constants(
    session: Session, operator_id: str, details: Sequence[dict[str, Any]]
) -> None:
    """Fill in the constants of the earlier observations flags name (recent ones are read
    without them), so the regulator sees the values a search went through."""
    named = [
        e
        for d in details
        for r in d.get("releases", [])
        for v in r.values()
        if isinstance(v, list)
        for e in v
        if isinstance(e, dict) and {"job_id", "index"} <= set(e) and e.get("literals") is None
    ]
    if not named:
        return
    o = JobObservation
    known = {
        (j, i): lits
        for j, i, lits in session.execute(
            select(o.job_id, o.index, o.literals).where(
                o.operator_id == operator_id, o.job_id.in_(sorted({e["job_id"] for e in named}))
            )
        )
    }
    for e in named:
        e["literals"] = known.get((e["job_id"], e["index"]))


def _suspend_if_due(session: Session, contract_id: str, limit: int, since: dt.datetime) -> None:
    """Suspend an active contract whose unreviewed flags since `since` score `limit` or more:
    the lifecycle's suspension, moved and logged as `agreements.suspend` does for a regulator,
    by the service (no actor) and with the flags it is for (the log is not the operator's)."""
    pending = session.execute(
        select(Flag.id, Flag.pattern, Flag.score)
        .where(
            Flag.contract_id == contract_id, Flag.reviewed_at.is_(None), Flag.created_at >= since
        )
        .order_by(Flag.id)
    ).all()
    score = sum(s for _, _, s in pending)
    if score < limit:
        return
    # Locked (where the database can), so that two settlements at once suspend it once.
    row = session.get(Contract, contract_id, with_for_update=True)
    if row is None or row.status != Status.active:
        return  # already suspended, or no longer in force
    current = agreements._current(session, row)  # noqa: SLF001 - the same move as a suspension
    status = lifecycle.suspend(Status(current.status))
    agreements._move(row, current, status, None, SUSPENSION_REASON)  # noqa: SLF001
    log.append(
        session,
        "contract.suspended",
        None,
        row.id,
        {
            "reason": SUSPENSION_REASON,
            "version": current.version,
            "automatic": True,
            "score": score,
            "limit": limit,
            "patterns": sorted({p for _, p, _ in pending}),
            "flags": [i for i, _, _ in pending],
        },
    )


# --- the regulator's routes ---------------------------------------------------------------


def view(flag: Flag, job: Job | None) -> dict[str, Any]:
    return {
        "id": flag.id,
        "job_id": flag.job_id,
        "operator_id": flag.operator_id,
        "contract_id": flag.contract_id,
        "pattern": flag.pattern,
        "score": flag.score,
        "about": _ABOUT.get(flag.pattern, ""),
        "detail": flag.detail,
        "created_at": clock.text(flag.created_at),
        "reviewed_at": clock.text(flag.reviewed_at),
        "reviewed_by": flag.reviewed_by,
        "note": flag.note,
        "job": None
        if job is None
        else {
            "id": job.id,
            "status": job.status,
            "code": job.code,
            "params": job.params,
            "created_at": clock.text(job.created_at),
        },
    }


_ABOUT = {p.name: p.summary for p in detection.PATTERNS}


def listing(
    ctx: Context,
    actor: Actor,
    operator_id: str | None = None,
    contract_id: str | None = None,
    pattern: str | None = None,
    unreviewed: bool = False,
    limit: int = 100,
    offset: int = 0,
    job_id: str | None = None,
) -> list[dict[str, Any]]:
    """Flags, newest first, each with its job's code and params. Regulator only."""
    require(actor, Role.regulator)
    limit, offset = listings.checked_page(limit, offset)
    if pattern is not None and pattern not in detection.SCORES:
        raise BadRequest(f"no pattern {pattern!r}; filter by one of: {', '.join(detection.SCORES)}")
    q = select(Flag, Job).join(Job, Job.id == Flag.job_id)
    if operator_id:
        q = q.where(Flag.operator_id == operator_id)
    if contract_id:
        q = q.where(Flag.contract_id == contract_id)
    if job_id:
        q = q.where(Flag.job_id == job_id)
    if pattern:
        q = q.where(Flag.pattern == pattern)
    if unreviewed:
        q = q.where(Flag.reviewed_at.is_(None))
    q = q.order_by(Flag.created_at.desc(), Flag.id.desc()).offset(offset).limit(limit)
    with ctx.reading() as s:
        return [view(flag, job) for flag, job in s.execute(q).all()]


def review(ctx: Context, actor: Actor, flag_id: int, note: str) -> dict[str, Any]:
    """Mark a flag reviewed, with the regulator's note; logged. Regulator only."""
    require(actor, Role.regulator)
    note = note.strip()
    if not note:
        raise BadRequest('a review needs a note saying what was found: {"note": "…"}')
    if len(note) > NOTE_MAX:
        raise BadRequest(f"the note is {len(note)} characters; keep it to {NOTE_MAX}")
    with ctx.transaction() as s:
        flag = s.get(Flag, flag_id)
        if flag is None:
            raise NotFound(f"no flag {flag_id}; the flags are listed at GET /v1/flags")
        if flag.reviewed_at is not None:
            raise Conflict(
                f"flag {flag_id} was already reviewed at "
                f"{clock.text(flag.reviewed_at)} by {flag.reviewed_by}; a flag is "
                "reviewed once (GET /v1/flags?unreviewed=true lists those left)"
            )
        flag.reviewed_at, flag.reviewed_by, flag.note = clock.stored_now(), actor.id, note
        log.append(
            s,
            "flag.reviewed",
            actor.id,
            flag.job_id,
            {
                "flag_id": flag.id,
                "contract_id": flag.contract_id,
                "pattern": flag.pattern,
                "note": note,
            },
        )
        return view(flag, s.get(Job, flag.job_id))
