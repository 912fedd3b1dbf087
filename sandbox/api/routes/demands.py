"""Demand lists (需求清单): operators ask for data, the bureau routes, departments answer."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from sandbox.api.deps import Ctx, CurrentActor
from sandbox.api.models.common import ERRORS, SIGNED_IN, ModelRoute, errors
from sandbox.api.models.demands import Demand, DemandAnswered, DemandRaised, DemandRouted, Demands
from sandbox.records import demands

router = APIRouter(tags=["demands"], route_class=ModelRoute, responses=ERRORS)

# Every step can find the demand in a state that does not allow it.
STEP = SIGNED_IN | errors(404, 409)


@router.post("/demands", status_code=201, response_model=Demand, responses=SIGNED_IN)
def raise_demand(body: DemandRaised, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    """Operator: ask for data the catalog lacks, or (`dataset` + `columns`) for more columns
    of a dataset it has, saying what for."""
    return demands.raise_demand(ctx, actor, body.model_dump())


@router.get("/demands", response_model=Demands, responses=SIGNED_IN)
def list_demands(
    ctx: Ctx,
    actor: CurrentActor,
    status: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> dict[str, Any]:
    """Demands visible to the caller, newest first: an operator its own, a department those
    routed to it, the bureau and the regulator all. `status` filters by one status."""
    return {"demands": demands.listing(ctx, actor, status, limit, offset)}


@router.get("/demands/{demand_id}", response_model=Demand, responses=SIGNED_IN | errors(404))
def get(demand_id: str, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    return demands.get(ctx, actor, demand_id)


@router.post("/demands/{demand_id}/route", response_model=Demand, responses=STEP)
def route(demand_id: str, body: DemandRouted, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    """Bureau: send an open demand to the department that could provide the data (or a
    routed one to another department)."""
    return demands.route(ctx, actor, demand_id, body.provider_id, body.note)


@router.post("/demands/{demand_id}/answer", response_model=Demand, responses=STEP)
def answer(demand_id: str, body: DemandAnswered, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    """The department it is routed to, or the bureau: `planned` (with a note), `refused`
    (with the reason) or `published` (naming the dataset in `answer_dataset`). A planned
    demand may later be published or refused; those two are final."""
    return demands.answer(ctx, actor, demand_id, body.status, body.answer, body.answer_dataset)
