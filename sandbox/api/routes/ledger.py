from __future__ import annotations

import base64
from typing import Any

from fastapi import APIRouter

from operators.keys import public_key_b64
from operators.roles import Role
from sandbox.accounts import require
from sandbox.api.deps import Ctx, CurrentActor
from sandbox.ledger import log
from sandbox.ledger.note import vkey

router = APIRouter(tags=["ledger"])


@router.get("/keys")
def keys(ctx: Ctx) -> dict[str, Any]:
    public = public_key_b64(ctx.bureau_key)
    return {"bureau": public,
            "ledger_vkey": vkey(ctx.settings.log_origin, base64.b64decode(public))}


@router.get("/ledger/checkpoint")
def checkpoint(ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    require(actor, Role.regulator, Role.bureau)
    with ctx.reading() as s:
        return log.checkpoint(s, ctx.settings.log_origin, ctx.bureau_key)


@router.get("/ledger/entries")
def entries(ctx: Ctx, actor: CurrentActor, start: int = 0, end: int | None = None) -> dict[str, Any]:
    require(actor, Role.regulator, Role.bureau)
    with ctx.reading() as s:
        return {"entries": log.entries(s, start, end)}


@router.get("/ledger/proofs/inclusion")
def inclusion(index: int, size: int, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    require(actor, Role.regulator, Role.bureau)
    with ctx.reading() as s:
        return {"index": index, "size": size, "proof": log.inclusion_proof(s, index, size)}


@router.get("/ledger/proofs/consistency")
def consistency(first: int, second: int, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    require(actor, Role.regulator, Role.bureau)
    with ctx.reading() as s:
        return {"first": first, "second": second,
                "proof": log.consistency_proof(s, first, second)}
