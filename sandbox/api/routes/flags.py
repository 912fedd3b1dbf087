"""Flags: attack patterns detected in operators' jobs, for the regulator only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from sandbox.api.deps import Ctx, CurrentActor
from sandbox.api.models.common import ERRORS, SIGNED_IN, ModelRoute, errors
from sandbox.api.models.oversight import Flag, Flags
from sandbox.records import flags

router = APIRouter(tags=["flags"], route_class=ModelRoute, responses=ERRORS)


class Review(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = Field(
        max_length=flags.NOTE_MAX,
        description="What the regulator found, kept with the flag and logged",
    )


@router.get("/flags", response_model=Flags, responses=SIGNED_IN)
def list_flags(
    ctx: Ctx,
    actor: CurrentActor,
    operator_id: str | None = None,
    contract_id: str | None = None,
    pattern: str | None = None,
    unreviewed: bool = False,
    limit: int = 100,
    offset: int = 0,
    job_id: str | None = None,
) -> dict[str, Any]:
    """Regulator: flags newest first, each naming its job, with the job's code and params.
    `unreviewed=true` lists only those not yet reviewed; `job_id` those of one job."""
    return {
        "flags": flags.listing(
            ctx, actor, operator_id, contract_id, pattern, unreviewed, limit, offset, job_id
        )
    }


@router.post("/flags/{flag_id}/review", response_model=Flag, responses=SIGNED_IN | errors(404, 409))
def review(flag_id: int, body: Review, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    """Regulator: mark a flag reviewed, with a note. Reviewed flags no longer count towards
    the contract's automatic suspension."""
    return flags.review(ctx, actor, flag_id, body.note)
