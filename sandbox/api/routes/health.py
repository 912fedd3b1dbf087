from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from sandbox.api.deps import Ctx, SelfActor
from sandbox.jail import seccomp

router = APIRouter(tags=["principals"])


@router.get("/health")
def health(ctx: Ctx) -> dict[str, Any]:
    """Liveness, and whether job processes get their system-call filter on this host."""
    problem = seccomp.probe()
    refused = problem is not None and ctx.settings.jail_require_seccomp
    return {"ok": True, "jail": {"seccomp": problem is None, "jobs_run": not refused,
                                 **({"problem": problem} if problem else {})}}


@router.get("/me")
def me(actor: SelfActor) -> dict[str, Any]:
    return actor.to_json()
