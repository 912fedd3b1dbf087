from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from sandbox import accounts
from sandbox.api.deps import Ctx, CurrentActor

router = APIRouter(tags=["principals"])


class NewPrincipal(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    role: str
    license_no: str | None = Field(None, max_length=100)
    public_key: str | None = None


@router.post("/principals", status_code=201)
def create(body: NewPrincipal, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    p, token = accounts.create_principal(ctx, actor, body.name, body.role, body.license_no,
                                         body.public_key)
    return {"id": p.id, "name": p.name, "role": p.role, "license_no": p.license_no,
            "token": token}
