from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from sandbox.api.deps import Ctx, CurrentActor
from sandbox.api.files import ListingFormat, export_response
from sandbox.api.models.common import ERRORS, SIGNED_IN, ModelRoute, errors, files
from sandbox.api.models.contracts import (
    ApplicationBody,
    Contract,
    ContractBudgets,
    Contracts,
    ContractVersion,
)
from sandbox.records import agreements, listings

router = APIRouter(tags=["contracts"], route_class=ModelRoute, responses=ERRORS)

# Every transition can find the contract in a state that does not allow it.
TRANSITION = SIGNED_IN | errors(404, 409)


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000)


class Signature(BaseModel):
    model_config = ConfigDict(extra="forbid")
    signature: str | None = None


@router.post("/contracts", status_code=201, response_model=Contract, responses=SIGNED_IN)
def apply(body: ApplicationBody, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    """Apply for a contract; with `"draft": true` it stays an editable draft until submitted."""
    return agreements.apply(ctx, actor, body.as_sent())


@router.get("/contracts", response_model=Contracts, responses=SIGNED_IN | files("csv", "xlsx"))
def list_contracts(
    ctx: Ctx,
    actor: CurrentActor,
    status: str | None = None,
    operator_id: str | None = None,
    limit: int = 100,
    offset: int = 0,
    format: ListingFormat = "json",
) -> Any:
    """Contracts visible to the caller, with status history; `format=csv` or `xlsx` for an
    inspection, one row per contract with its terms in columns."""
    rows = listings.contracts(ctx, actor, status, operator_id, limit, offset)
    if format != "json":
        return export_response(listings.contracts_table(ctx, rows), format, "contracts")
    return {"contracts": rows}


@router.get("/contracts/{contract_id}", response_model=Contract, responses=SIGNED_IN | errors(404))
def get(contract_id: str, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    return agreements.get(ctx, actor, contract_id)


@router.get(
    "/contracts/{contract_id}/budget",
    response_model=ContractBudgets,
    responses=SIGNED_IN | errors(404),
)
def budget(contract_id: str, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    """Privacy budgets (ε) per dataset under differential privacy: total, spent, reserved by
    running jobs, remaining."""
    return agreements.budget(ctx, actor, contract_id)


@router.post("/contracts/{contract_id}/approve", response_model=Contract, responses=TRANSITION)
def approve(contract_id: str, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    return agreements.approve(ctx, actor, contract_id)


@router.post("/contracts/{contract_id}/refuse", response_model=Contract, responses=TRANSITION)
def refuse(contract_id: str, body: Reason, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    return agreements.refuse(ctx, actor, contract_id, body.reason)


@router.post("/contracts/{contract_id}/sign", response_model=Contract, responses=TRANSITION)
def sign(
    contract_id: str, ctx: Ctx, actor: CurrentActor, body: Signature | None = None
) -> dict[str, Any]:
    return agreements.sign(ctx, actor, contract_id, body.signature if body else None)


@router.post("/contracts/{contract_id}/suspend", response_model=Contract, responses=TRANSITION)
def suspend(contract_id: str, body: Reason, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    return agreements.suspend(ctx, actor, contract_id, body.reason)


@router.put("/contracts/{contract_id}", response_model=Contract, responses=TRANSITION)
def edit(contract_id: str, body: ApplicationBody, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    """Replace the terms of a draft (same body as an application, without `draft`)."""
    return agreements.edit(ctx, actor, contract_id, body.as_sent())


@router.post("/contracts/{contract_id}/submit", response_model=Contract, responses=TRANSITION)
def submit(contract_id: str, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    """Send a draft for approval."""
    return agreements.submit(ctx, actor, contract_id)


@router.post("/contracts/{contract_id}/resume", response_model=Contract, responses=TRANSITION)
def resume(contract_id: str, body: Reason, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    return agreements.resume(ctx, actor, contract_id, body.reason)


@router.post("/contracts/{contract_id}/terminate", response_model=Contract, responses=TRANSITION)
def terminate(contract_id: str, body: Reason, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    return agreements.terminate(ctx, actor, contract_id, body.reason)


@router.post(
    "/contracts/{contract_id}/amend", status_code=201, response_model=Contract, responses=TRANSITION
)
def amend(contract_id: str, body: ApplicationBody, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    """Propose new terms (same body as an application) as the contract's next version."""
    return agreements.amend(ctx, actor, contract_id, body.as_sent())


@router.get(
    "/contracts/{contract_id}/versions/{version}",
    response_model=ContractVersion,
    responses=SIGNED_IN | errors(404),
)
def get_version(contract_id: str, version: int, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    return agreements.get_version(ctx, actor, contract_id, version)
