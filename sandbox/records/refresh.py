"""Datasets mounted from a department's database (接口对接): the source a dataset is pulled
from, pulls on command and on the source's schedule, and the record of every pull.

A pull streams the source (catalog.sources) into a new version (records.versions.publish):
either the version is published whole, or nothing changes. Every pull is recorded
(`dataset_refreshes`) with its outcome; a failed pull is logged with its reason, and the
bureau and the department see it. The password of a source is only ever referenced (an
environment variable or a file of the service's), never stored here or in the log.

Schedules are kept with the source (`next_run_at`). Whichever process finds a pull due claims
it by moving `next_run_at` on, in one conditional update: with several workers, one of them
runs it.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from sandbox.catalog import sources
from sandbox.catalog.schedule import Schedule
from sandbox.common import clock, logs
from sandbox.context import Context
from sandbox.errors import NotFound, SandboxError
from sandbox.ledger import log
from sandbox.records import versions
from sandbox.records.principals import Actor
from sandbox.store.models import DatasetRefresh, DatasetSource

logger = logging.getLogger(__name__)
# Kept of a failure's message in the record and the log: enough to act on.
_REASON_CHARS = 1000


def source_json(row: DatasetSource) -> dict[str, Any]:
    return {
        "dataset": row.dataset,
        "url": row.url,
        "password_ref": row.password_ref,
        "table": row.table,
        "query": row.query,
        "mode": row.mode,
        "schedule": row.schedule,
        "next_run_at": clock.text(row.next_run_at) if row.next_run_at else None,
        "updated_at": clock.text(row.updated_at),
        "updated_by": row.updated_by,
    }


def spec_of(row: DatasetSource) -> sources.SourceSpec:
    return sources.parse_source(
        {
            k: v
            for k, v in (
                ("url", row.url),
                ("password_ref", row.password_ref),
                ("table", row.table),
                ("query", row.query),
                ("mode", row.mode),
                ("schedule", row.schedule),
            )
            if v is not None
        }
    )


def _next_run(schedule: str | None, after: dt.datetime) -> dt.datetime | None:
    if not schedule:
        return None
    aware = after.replace(tzinfo=dt.UTC) if after.tzinfo is None else after
    return clock.stored(Schedule.parse(schedule).next_after(aware))


def set_source(ctx: Context, actor: Actor, name: str, raw: Any) -> dict[str, Any]:
    """Where dataset `name` is pulled from from now on (replacing what was set before)."""
    versions.owned(ctx, actor, name)
    spec = sources.parse_source(raw)
    now = clock.now()
    with ctx.transaction() as s:
        row = s.get(DatasetSource, name)
        if row is None:
            row = DatasetSource(dataset=name)
            s.add(row)
        row.url, row.password_ref = spec.url, spec.password_ref
        row.table, row.query, row.mode = spec.table, spec.query, spec.mode
        row.schedule = spec.schedule
        row.next_run_at = _next_run(spec.schedule, now)
        row.updated_at, row.updated_by = clock.stored(now), actor.id
        s.flush()
        log.append(
            s,
            "dataset.source_set",
            actor.id,
            name,
            {"source": sources.describe(spec), "mode": spec.mode, "schedule": spec.schedule},
        )
        return source_json(row)


def get_source(ctx: Context, actor: Actor, name: str) -> dict[str, Any]:
    versions.owned(ctx, actor, name)
    with ctx.reading() as s:
        return source_json(_source(s, name))


def _source(session: Session, name: str) -> DatasetSource:
    row = session.get(DatasetSource, name)
    if row is None:
        raise NotFound(
            f"dataset {name!r} has no source; set one with PUT /v1/datasets/{name}/source"
        )
    return row


def refresh_json(row: DatasetRefresh) -> dict[str, Any]:
    return {
        "id": row.id,
        "dataset": row.dataset,
        "trigger": row.trigger,
        "actor": row.actor,
        "status": row.status,
        "started_at": clock.text(row.started_at),
        "finished_at": clock.text(row.finished_at) if row.finished_at else None,
        "version": row.version,
        "rows": row.rows,
        "error": row.error,
    }


def history(ctx: Context, actor: Actor, name: str, limit: int = 50) -> list[dict[str, Any]]:
    versions.owned(ctx, actor, name)
    with ctx.reading() as s:
        rows = s.scalars(
            select(DatasetRefresh)
            .where(DatasetRefresh.dataset == name)
            .order_by(DatasetRefresh.id.desc())
            .limit(limit)
        )
        return [refresh_json(r) for r in rows]


def begin(ctx: Context, actor: Actor | None, name: str, trigger: str) -> tuple[int, dict[str, Any]]:
    """Record a pull as running (refused at once when the dataset has no source): its id and
    its record as it starts."""
    with ctx.transaction() as s:
        _source(s, name)
        row = DatasetRefresh(
            dataset=name,
            trigger=trigger,
            actor=actor.id if actor is not None else None,
            status="running",
            started_at=clock.stored(clock.now()),
            runner=ctx.runner_id(),
        )
        s.add(row)
        s.flush()
        return row.id, refresh_json(row)


def run(ctx: Context, actor: Actor | None, name: str, refresh_id: int) -> dict[str, Any]:
    """Pull dataset `name` from its source into a new version; the pull's record, whatever
    became of it. Never raises for a failure of the pull itself: it is recorded."""
    with ctx.reading() as s:
        source = s.get(DatasetSource, name)
        assert source is not None
        spec = spec_of(source)
    try:
        published = versions.publish(
            ctx,
            actor,
            name,
            sources.stream(spec),
            mode=spec.mode,
            source="connector",
        )
    except Exception as exc:  # noqa: BLE001 - any failure is the pull's outcome, recorded
        reason = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, SandboxError):
            logger.exception("a dataset pull failed unexpectedly")
        return _finish(ctx, name, refresh_id, "failed", error=str(reason)[:_REASON_CHARS])
    versions.retire(ctx)
    return _finish(
        ctx, name, refresh_id, "published", version=published.version, rows=published.row_count
    )


def _finish(
    ctx: Context,
    name: str,
    refresh_id: int,
    status: str,
    *,
    version: int | None = None,
    rows: int | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    with ctx.transaction() as s:
        row = s.get(DatasetRefresh, refresh_id)
        assert row is not None
        if row.status != "running":
            return refresh_json(row)  # already settled (as interrupted, by recovery)
        row.status, row.version, row.rows, row.error = status, version, rows, error
        row.finished_at = clock.stored(clock.now())
        row.runner = None
        if status == "failed":
            log.append(
                s,
                "dataset.refresh_failed",
                row.actor,
                name,
                {"refresh": refresh_id, "trigger": row.trigger, "reason": error},
            )
        body = refresh_json(row)
    if status == "failed":
        logger.warning("dataset pull failed", extra=logs.fields(dataset=name, reason=error))
    else:
        logger.info("dataset pulled", extra=logs.fields(dataset=name, version=version, rows=rows))
    return body


def refresh(ctx: Context, actor: Actor | None, name: str, trigger: str) -> dict[str, Any]:
    """Pull `name` now, in this thread; the pull's record."""
    if actor is not None:
        versions.owned(ctx, actor, name)
    return run(ctx, actor, name, begin(ctx, actor, name, trigger)[0])


def refresh_in_background(ctx: Context, actor: Actor, name: str, trigger: str) -> dict[str, Any]:
    """Start a pull in a thread of its own; its record as it starts (GET …/refreshes follows
    it): a pull of millions of rows outlasts an HTTP request."""
    versions.owned(ctx, actor, name)
    refresh_id, started = begin(ctx, actor, name, trigger)
    threading.Thread(
        target=run, args=(ctx, actor, name, refresh_id), name=f"pull-{name}", daemon=True
    ).start()
    return started


def run_due(ctx: Context, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Pull every dataset whose scheduled time has come (each claimed by one process)."""
    moment = clock.stored(now or clock.now())
    with ctx.reading() as s:
        due = [
            (r.dataset, r.next_run_at, r.schedule)
            for r in s.scalars(
                select(DatasetSource).where(
                    DatasetSource.next_run_at.is_not(None), DatasetSource.next_run_at <= moment
                )
            )
        ]
    done = []
    for name, at, schedule in due:
        with ctx.transaction() as s:
            result = s.execute(
                update(DatasetSource)
                .where(DatasetSource.dataset == name, DatasetSource.next_run_at == at)
                .values(next_run_at=_next_run(schedule, moment))
            )
            claimed = cast(CursorResult[Any], result).rowcount
        if claimed:
            done.append(refresh(ctx, None, name, "schedule"))
    return done


def recover(ctx: Context) -> int:
    """Pulls left running by a process that is gone failed (nothing of them was published:
    a version is kept only once its pull finishes)."""
    with ctx.reading() as s:
        left = list(
            s.execute(
                select(DatasetRefresh.id, DatasetRefresh.dataset, DatasetRefresh.runner).where(
                    DatasetRefresh.status == "running"
                )
            )
        )
    own = ctx.lease.id if ctx.lease is not None else None
    recovered = 0
    for refresh_id, name, runner in left:
        if runner == own or (runner is not None and ctx.runner_alive(runner)):
            continue
        _finish(
            ctx,
            name,
            refresh_id,
            "failed",
            error="the service stopped while this pull was under way; nothing changed. Pull again",
        )
        recovered += 1
    return recovered


def keep_pulling(ctx: Context, stop: threading.Event) -> None:
    """Run due pulls every `refresh_check_seconds` until `stop`; pulls of processes that
    stopped are failed first."""
    try:
        recover(ctx)
    except Exception:  # noqa: BLE001 - the next round tries again
        logger.exception("recovering interrupted dataset pulls failed")
    while not stop.wait(ctx.settings.refresh_check_seconds):
        try:
            recover(ctx)
            run_due(ctx)
            versions.retire(ctx)
        except Exception:  # noqa: BLE001 - the next round tries again
            logger.exception("scheduled dataset pulls failed")
