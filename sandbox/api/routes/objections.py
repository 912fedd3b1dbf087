"""Objections (异议) to a dataset version's quality or to a job's refusal, and their answers."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from sandbox.api.deps import Ctx, CurrentActor
from sandbox.api.models.common import ERRORS, SIGNED_IN, ModelRoute, errors
from sandbox.api.models.demands import Objection, ObjectionAnswered, ObjectionRaised, Objections
from sandbox.records import objections

router = APIRouter(tags=["objections"], route_class=ModelRoute, responses=ERRORS)


@router.post(
    "/objections", status_code=201, response_model=Objection, responses=SIGNED_IN | errors(404, 409)
)
def raise_objection(body: ObjectionRaised, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    """`quality`: an operator or a department objects to a dataset version (`dataset`,
    `version`); its department answers. `refusal`: an operator objects to the refusal of one
    of its jobs (`job_id`); the bureau answers."""
    return objections.raise_objection(ctx, actor, body.model_dump(exclude_unset=True))


@router.get("/objections", response_model=Objections, responses=SIGNED_IN)
def list_objections(
    ctx: Ctx,
    actor: CurrentActor,
    status: str | None = None,
    kind: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> dict[str, Any]:
    """Objections visible to the caller, newest first: its own, those it must answer; the
    bureau and the regulator all."""
    return {"objections": objections.listing(ctx, actor, status, kind, limit, offset)}


@router.get(
    "/objections/{objection_id}", response_model=Objection, responses=SIGNED_IN | errors(404)
)
def get(objection_id: str, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    return objections.get(ctx, actor, objection_id)


@router.post(
    "/objections/{objection_id}/answer",
    response_model=Objection,
    responses=SIGNED_IN | errors(404, 409),
)
def answer(
    objection_id: str, body: ObjectionAnswered, ctx: Ctx, actor: CurrentActor
) -> dict[str, Any]:
    """Its owner answers, once: the dataset's department (or the bureau) a quality
    objection, the bureau an objection to a refusal."""
    return objections.answer(ctx, actor, objection_id, body.answer)
