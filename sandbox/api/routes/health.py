from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from sandbox.api.deps import SelfActor

router = APIRouter(tags=["principals"])


@router.get("/health")
def health() -> dict[str, Any]:
    return {"ok": True}


@router.get("/me")
def me(actor: SelfActor) -> dict[str, Any]:
    return actor.to_json()
