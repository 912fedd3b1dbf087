from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body
from pydantic import BaseModel, ConfigDict, Field

from sandbox import agreements
from sandbox.api.deps import Ctx, CurrentActor

router = APIRouter(tags=["contracts"])


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000)


class Signature(BaseModel):
    model_config = ConfigDict(extra="forbid")
    signature: str | None = None


@router.post("/contracts", status_code=201)
def apply(ctx: Ctx, actor: CurrentActor, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
    return agreements.apply(ctx, actor, body)


@router.get("/contracts/{contract_id}")
def get(contract_id: str, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    return agreements.get(ctx, actor, contract_id)


@router.post("/contracts/{contract_id}/approve")
def approve(contract_id: str, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    return agreements.approve(ctx, actor, contract_id)


@router.post("/contracts/{contract_id}/refuse")
def refuse(contract_id: str, body: Reason, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    return agreements.refuse(ctx, actor, contract_id, body.reason)


@router.post("/contracts/{contract_id}/sign")
def sign(contract_id: str, ctx: Ctx, actor: CurrentActor,
         body: Signature | None = None) -> dict[str, Any]:
    return agreements.sign(ctx, actor, contract_id, body.signature if body else None)


@router.post("/contracts/{contract_id}/suspend")
def suspend(contract_id: str, body: Reason, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    return agreements.suspend(ctx, actor, contract_id, body.reason)
