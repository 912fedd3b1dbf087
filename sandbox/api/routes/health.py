from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from sandbox.api.deps import Ctx, SelfActor
from sandbox.api.models.common import ERRORS, SIGNED_IN, ModelRoute
from sandbox.api.models.principals import Health, Me
from sandbox.jail import seccomp

router = APIRouter(tags=["principals"], route_class=ModelRoute, responses=ERRORS)


@router.get("/health", response_model=Health)
def health(ctx: Ctx) -> dict[str, Any]:
    """Liveness, and whether job processes get their system-call filter on this host."""
    problem = seccomp.probe()
    refused = problem is not None and ctx.settings.jail_require_seccomp
    return {
        "ok": True,
        "jail": {
            "seccomp": problem is None,
            "jobs_run": not refused,
            **({"problem": problem} if problem else {}),
        },
    }


@router.get("/me", response_model=Me, responses=SIGNED_IN)
def me(actor: SelfActor) -> dict[str, Any]:
    return actor.to_json()
