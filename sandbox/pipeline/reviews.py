"""Acting on reviewers' decisions: a released job runs on from where it was held (its code
runs again, its earlier releases replayed); a refused one ends failed, charged for what it
read, with nothing of the held release kept or shown."""

from __future__ import annotations

from typing import Any

from sandbox.context import Context
from sandbox.errors import JobStatus
from sandbox.ledger import log
from sandbox.pipeline import execution
from sandbox.pipeline.settlement import conclude_refused
from sandbox.records import reviews
from sandbox.records.principals import Actor
from sandbox.store.models import Job


def decide(
    ctx: Context, actor: Actor, review_id: str, decision: str, reason: str | None
) -> dict[str, Any]:
    refused = False
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
        refused = review.status == "refused"
        if resumed is not None:
            s.expunge(resumed)
    if resumed is not None:
        execution.dispatch(ctx, resumed, resumed=True)
    if refused:
        conclude_refused(ctx, review_id)
    return reviews.get(ctx, actor, review_id)
