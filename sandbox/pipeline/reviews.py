"""Acting on reviewers' decisions: a released job runs on from where it was held (its code
runs again, its earlier releases replayed); a refused one ends failed, charged for what it
read, with nothing of the held release kept or shown."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from sandbox.context import Context
from sandbox.errors import JobError, JobStatus
from sandbox.ledger import log
from sandbox.pipeline import execution
from sandbox.pipeline.driver import JobResult, Replay, carried_usage
from sandbox.pipeline.settlement import settle_job
from sandbox.records import registry, reviews
from sandbox.records.principals import Actor
from sandbox.store.models import Job, OutputReview


def decide(
    ctx: Context, actor: Actor, review_id: str, decision: str, reason: str | None
) -> dict[str, Any]:
    refused: JobResult | None = None
    resumed: Job | None = None
    with ctx.transaction() as s:
        review = reviews.decide(s, actor, review_id, decision, reason)
        job_id = review.job_id
        job = s.get(Job, job_id)
        assert job is not None
        if review.status == "released":
            job.status = JobStatus.QUEUED
            job.runner = ctx.runner_id()
            log.append(s, "job.resumed", None, job.id, {"review_id": review.id, "queued": True})
            s.flush()
            resumed = job
        elif review.status == "refused":
            refused = _refused_result(ctx, s, review)
            # Nobody reads the refused release again: only which dataset it read stays.
            release = (review.held or {}).get("release", {})
            kept = {k: release[k] for k in ("index", "dataset", "joined") if k in release}
            review.held = {"release": kept}
            review.state = None
        if resumed is not None:
            s.expunge(resumed)
    if resumed is not None:
        execution.dispatch(ctx, resumed)
    if refused is not None:
        settle_job(ctx, job_id, refused)
    return reviews.get(ctx, actor, review_id)


def _refused_result(ctx: Context, session: Session, review: OutputReview) -> JobResult:
    assert review.held is not None and review.state is not None
    replay = Replay.from_json(review.state, review.held)
    levels = {n: registry.get(ctx, session, n).level for n in replay.rows_by_dataset}
    reasons = "; ".join(
        str(d.get("reason")) for d in review.decisions if d.get("decision") == "refuse"
    )
    shown = [dict(r["release"]) for r in replay.releases[:-1]]
    held = replay.releases[-1]["release"]
    return JobResult(
        status=JobStatus.FAILED,
        outputs={},
        usage=carried_usage(replay, levels),
        disclosure={
            "releases": [
                *shown,
                {"index": held["index"], "dataset": held["dataset"], "refused": "output_refused"},
            ]
        },
        error=JobError(
            "output_refused",
            f"reviewers refused release number {review.release_index + 1} of this job, so "
            f"the job ended without it and without outputs: {reasons}",
        ),
        observations=list(replay.observations),
    )
