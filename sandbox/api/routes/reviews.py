"""Output reviews: the bureau and departments check held releases; regulators read them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from sandbox.api.deps import Ctx, CurrentActor
from sandbox.api.models.common import ERRORS, SIGNED_IN, ModelRoute, errors
from sandbox.api.models.reviews import Review, ReviewDecided, Reviews
from sandbox.pipeline import reviews as acting
from sandbox.records import reviews

router = APIRouter(tags=["reviews"], route_class=ModelRoute, responses=ERRORS)


@router.get("/reviews", response_model=Reviews, responses=SIGNED_IN)
def list_reviews(ctx: Ctx, actor: CurrentActor, status: str | None = None) -> dict[str, Any]:
    """Reviews the caller may read, oldest first: the bureau's and regulators' all, a
    department's those reading its datasets. Without the held tables."""
    return {"reviews": reviews.listing(ctx, actor, status)}


@router.get("/reviews/{review_id}", response_model=Review, responses=SIGNED_IN | errors(404))
def get(review_id: str, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    return reviews.get(ctx, actor, review_id)


@router.post(
    "/reviews/{review_id}/decisions",
    response_model=Review,
    responses=SIGNED_IN | errors(404, 409),
)
def decide(review_id: str, body: ReviewDecided, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    """One reviewer's decision, once: `required` distinct reviewers must release; any one
    refusal (with a reason) refuses, and the job ends failed, `output_refused`."""
    return acting.decide(ctx, actor, review_id, body.decision, body.reason)
