from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from sandbox.api.deps import Ctx, SelfActor
from sandbox.api.models.common import ERRORS, SIGNED_IN, ModelRoute, errors
from sandbox.api.models.principals import Health, Live, Me, Ready
from sandbox.context import Context
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


@router.get("/health/live", response_model=Live)
def live() -> dict[str, Any]:
    """Liveness: the process answers (for an orchestrator's restart decisions)."""
    return {"ok": True}


@router.get("/health/ready", response_model=Ready, responses=errors(503))
def ready(ctx: Ctx) -> Any:
    """Readiness: the database answers, Ray is up where jobs run on it, and job processes
    can get their system-call filter (unless the settings allow running without)."""
    checks = {"database": _database(ctx), "ray": _ray(ctx), "jail": _jail(ctx)}
    failing = sorted(name for name, ok in checks.items() if not ok)
    if not failing:
        return {"ok": True, "checks": checks}
    return JSONResponse(
        status_code=503,
        content={
            "ok": False,
            "status": 503,
            "code": "not_ready",
            "error": f"not ready: {', '.join(failing)} failing; see `checks`",
            "checks": checks,
        },
    )


def _database(ctx: Context) -> bool:
    try:
        with ctx.reading() as s:
            s.execute(text("SELECT 1"))
        return True
    except SQLAlchemyError:
        return False


def _ray(ctx: Context) -> bool:
    if ctx.settings.executor != "ray":
        return True
    import ray

    return bool(ray.is_initialized())


def _jail(ctx: Context) -> bool:
    return seccomp.probe() is None or not ctx.settings.jail_require_seccomp


@router.get("/me", response_model=Me, responses=SIGNED_IN)
def me(actor: SelfActor) -> dict[str, Any]:
    return actor.to_json()
