"""Output reviews as reviewers, operators and regulators see them, and reviewers' decisions.

A held release is checked by people before the job's code receives it: the bureau, or a
department owning a dataset it reads. Reviewers see the held table (that is what they check);
the operator sees only the review's status and reasons, through its job; regulators read
everything. Each reviewer decides once; `required` distinct reviewers must release, and any
one refusal refuses.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from operators.roles import Role
from sandbox.common import clock
from sandbox.context import Context
from sandbox.errors import BadRequest, Conflict, NotFound
from sandbox.ledger import log
from sandbox.records.principals import Actor, require, require_reason
from sandbox.store.models import Dataset, Job, OutputReview

STATUSES = ("pending", "released", "refused")
DECISIONS = ("release", "refuse")
REVIEWERS = (Role.bureau, Role.provider, Role.regulator)


def datasets_of(review: OutputReview) -> list[str]:
    release = (review.held or {}).get("release", {})
    return [str(release.get("dataset", "")), *(release.get("joined") or [])]


def may_decide(session: Session, actor: Actor, review: OutputReview) -> bool:
    if actor.role == Role.bureau:
        return True
    if actor.role != Role.provider:
        return False
    owners = set(
        session.scalars(select(Dataset.provider_id).where(Dataset.name.in_(datasets_of(review))))
    )
    return actor.id in owners


def _may_read(session: Session, actor: Actor, review: OutputReview) -> bool:
    return actor.role == Role.regulator or may_decide(session, actor, review)


def load(session: Session, actor: Actor, review_id: str) -> OutputReview:
    review = session.get(OutputReview, review_id)
    if review is None or not _may_read(session, actor, review):
        raise NotFound(f"no output review {review_id!r} visible to you")
    return review


def view(session: Session, actor: Actor, review: OutputReview, job: Job) -> dict[str, Any]:
    held = review.held or {}
    waited_until = review.decided_at or clock.stored_now()
    decided = {d.get("by") for d in review.decisions}
    return {
        "id": review.id,
        "job_id": review.job_id,
        "operator_id": job.operator_id,
        "contract_id": job.contract_id,
        "release_index": review.release_index,
        "datasets": [d for d in datasets_of(review) if d],
        "reasons": list(review.reasons),
        "required": review.required,
        "status": review.status,
        "decisions": list(review.decisions),
        "created_at": clock.text(review.created_at),
        "decided_at": clock.text(review.decided_at),
        "waited_seconds": int(max(0.0, (waited_until - review.created_at).total_seconds())),
        # Cleared once refused: then nobody reads it again.
        "held": held.get("body"),
        "report": held.get("release"),
        "can_decide": review.status == "pending"
        and actor.id not in decided
        and may_decide(session, actor, review),
    }


def listing(ctx: Context, actor: Actor, status: str | None = None) -> list[dict[str, Any]]:
    require(actor, *REVIEWERS)
    if status is not None and status not in STATUSES:
        raise BadRequest(f"status must be one of {', '.join(STATUSES)}")
    with ctx.reading() as s:
        q = select(OutputReview, Job).join(Job, Job.id == OutputReview.job_id)
        if status:
            q = q.where(OutputReview.status == status)
        q = q.order_by(OutputReview.created_at, OutputReview.id)
        out = []
        for review, job in s.execute(q):
            if _may_read(s, actor, review):
                item = view(s, actor, review, job)
                del item["held"]  # the queue names releases; a review's page shows them
                out.append(item)
        return out


def get(ctx: Context, actor: Actor, review_id: str) -> dict[str, Any]:
    require(actor, *REVIEWERS)
    with ctx.reading() as s:
        review = load(s, actor, review_id)
        job = s.get(Job, review.job_id)
        assert job is not None
        return view(s, actor, review, job)


def decide(
    session: Session, actor: Actor, review_id: str, decision: str, reason: str | None
) -> OutputReview:
    """Record one reviewer's decision (logged); the review is decided once `required`
    distinct reviewers released it, or at the first refusal. The caller acts on the job."""
    require(actor, Role.bureau, Role.provider)
    if decision not in DECISIONS:
        raise BadRequest('decision must be "release" or "refuse"')
    review = session.get(OutputReview, review_id, with_for_update=True)
    if review is None or not may_decide(session, actor, review):
        raise NotFound(f"no output review {review_id!r} visible to you")
    if review.status != "pending":
        raise Conflict(f"output review {review_id} was decided already ({review.status})")
    if any(d.get("by") == actor.id for d in review.decisions):
        raise Conflict(
            f"you decided on output review {review_id} already; it needs "
            f"{review.required} different reviewers"
        )
    text = (
        require_reason(reason or "", "refusing a release")
        if decision == "refuse"
        else (reason or "").strip()
    )
    now = clock.stored_now()
    entry = {"by": actor.id, "role": str(actor.role), "decision": decision, "reason": text}
    review.decisions = [*review.decisions, {**entry, "at": clock.text(now)}]
    log.append(session, "output.reviewed", actor.id, review.id, {"job_id": review.job_id, **entry})
    released = sum(1 for d in review.decisions if d.get("decision") == "release")
    if decision == "refuse" or released >= review.required:
        review.status = "refused" if decision == "refuse" else "released"
        review.decided_at = now
        log.append(
            session,
            f"output.{review.status}",
            None,
            review.id,
            {
                "job_id": review.job_id,
                "release_index": review.release_index,
                "reviewers": [d["by"] for d in review.decisions],
            },
        )
    return review
