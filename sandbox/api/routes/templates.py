"""Analysis templates: operators submit parametrised code, departments review it, operators
run what they approved."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from sandbox.api.deps import Ctx, CurrentActor
from sandbox.api.models.common import ERRORS, SIGNED_IN, ModelRoute, errors
from sandbox.api.models.jobs import Job
from sandbox.api.models.templates import (
    Template,
    TemplateReviewed,
    TemplateRun,
    Templates,
    TemplateSubmitted,
)
from sandbox.pipeline import templates as runs
from sandbox.records import templates

router = APIRouter(tags=["templates"], route_class=ModelRoute, responses=ERRORS)

STEP = SIGNED_IN | errors(404, 409)


@router.post(
    "/templates", status_code=201, response_model=Template, responses=SIGNED_IN | errors(409)
)
def submit(body: TemplateSubmitted, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    """Operator: submit code and its parameters' schema for review by the departments whose
    data it reads. Under a name used before, other code becomes the next version."""
    return templates.submit(ctx, actor, body.model_dump())


@router.get("/templates", response_model=Templates, responses=SIGNED_IN)
def list_templates(
    ctx: Ctx,
    actor: CurrentActor,
    status: str | None = None,
    awaiting: bool = False,
    limit: int = 100,
    offset: int = 0,
) -> dict[str, Any]:
    """Templates visible to the caller, without code: an operator its own, a department those
    reading its data (`awaiting=true`: those waiting for its review), the bureau and the
    regulator all."""
    return {"templates": templates.listing(ctx, actor, status, awaiting, limit, offset)}


@router.get("/templates/{template_id}", response_model=Template, responses=SIGNED_IN | errors(404))
def get(template_id: str, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    """A template with its versions: code, schema, each department's decision."""
    return templates.get(ctx, actor, template_id)


@router.post(
    "/templates/{template_id}/versions/{version}/reviews", response_model=Template, responses=STEP
)
def review(
    template_id: str, version: int, body: TemplateReviewed, ctx: Ctx, actor: CurrentActor
) -> dict[str, Any]:
    """A department whose data the version reads: approve or refuse (with the reason) its
    exact code, once, with optional conditions."""
    return templates.review(
        ctx, actor, template_id, version, body.decision, body.reason, body.conditions
    )


@router.post(
    "/templates/{template_id}/versions/{version}/withdraw", response_model=Template, responses=STEP
)
def withdraw(template_id: str, version: int, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    """Operator: take back a version still waiting for review."""
    return templates.withdraw(ctx, actor, template_id, version)


@router.post(
    "/templates/{template_id}/runs",
    status_code=201,
    response_model=Job,
    responses=STEP | errors(429, 503),
)
async def run(
    template_id: str, body: TemplateRun, ctx: Ctx, actor: CurrentActor, wait: bool = False
) -> dict[str, Any]:
    """Operator: run an approved version with parameters its schema allows; the job goes
    through every check a job goes through. `wait` (in the body or the query) returns once
    it has finished."""
    return await run_in_threadpool(
        runs.run,
        ctx,
        actor,
        template_id,
        body.contract_id,
        body.params,
        body.version,
        body.idempotency_key,
        wait or body.wait,
    )
