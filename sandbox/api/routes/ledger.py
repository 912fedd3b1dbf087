"""The ledger: public keys, signed checkpoints, entries, proofs and witness co-signatures."""

from __future__ import annotations

import base64
from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from operators.keys import parse_public_key, public_key_b64, public_raw, raw_public_bytes
from operators.roles import Role
from sandbox.api.deps import Ctx, CurrentActor
from sandbox.api.models.common import ERRORS, SIGNED_IN, ModelRoute, errors
from sandbox.api.models.ledger import (
    Checkpoint,
    ConsistencyProof,
    Entries,
    InclusionProof,
    ServiceKeys,
    Witnessed,
    WitnessedList,
)
from sandbox.context import Context
from sandbox.ledger import log
from sandbox.ledger.note import vkey
from sandbox.records.principals import require
from sandbox.store.models import Principal

router = APIRouter(tags=["ledger"], route_class=ModelRoute, responses=ERRORS)


@router.get("/keys", response_model=ServiceKeys)
def keys(ctx: Ctx) -> dict[str, Any]:
    public = public_key_b64(ctx.bureau_key)
    return {
        "bureau": public,
        "ledger_vkey": vkey(ctx.settings.log_origin, base64.b64decode(public)),
        "crypto_suite": ctx.suite.value,
    }


@router.get("/ledger/checkpoint", response_model=Checkpoint, responses=SIGNED_IN | errors(503))
def checkpoint(ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    require(actor, Role.regulator, Role.bureau)
    with ctx.reading() as s:
        return log.checkpoint(s, ctx.settings.log_origin, ctx.bureau_key)


@router.get("/ledger/entries", response_model=Entries, responses=SIGNED_IN)
def entries(
    ctx: Ctx, actor: CurrentActor, start: int = 0, end: int | None = None
) -> dict[str, Any]:
    require(actor, Role.regulator, Role.bureau)
    with ctx.reading() as s:
        return {"entries": log.entries(s, start, end)}


@router.get(
    "/ledger/proofs/inclusion", response_model=InclusionProof, responses=SIGNED_IN | errors(503)
)
def inclusion(index: int, size: int, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    require(actor, Role.regulator, Role.bureau)
    with ctx.reading() as s:
        return {"index": index, "size": size, "proof": log.inclusion_proof(s, index, size)}


@router.get(
    "/ledger/proofs/consistency", response_model=ConsistencyProof, responses=SIGNED_IN | errors(503)
)
def consistency(first: int, second: int, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    require(actor, Role.regulator, Role.bureau)
    with ctx.reading() as s:
        return {"first": first, "second": second, "proof": log.consistency_proof(s, first, second)}


class WitnessKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    public_key: str = Field(
        description="base64 of the witness's raw public key (Ed25519, or SM2 on an sm instance)"
    )


class Cosignature(BaseModel):
    model_config = ConfigDict(extra="forbid")
    checkpoint: str = Field(
        min_length=1,
        max_length=20_000,
        description="the bureau's signed note with the witness's line added",
    )
    witness: WitnessKey


@router.post(
    "/ledger/witness",
    status_code=201,
    response_model=Witnessed,
    responses={
        200: {"model": Witnessed, "description": "Already kept: the kept record"},
        **SIGNED_IN,
        **errors(409),
    },
)
def witness(body: Cosignature, ctx: Ctx, actor: CurrentActor, response: Response) -> dict[str, Any]:
    """Regulator: keep a checkpoint co-signed as a witness (idempotent per size and key)."""
    require(actor, Role.regulator)
    signer = log.Witness(body.witness.name, _raw_public_key(ctx, body.witness.public_key))
    with ctx.transaction() as s:
        principal = s.get(Principal, actor.id)
        record, created = log.add_witness(
            s,
            body.checkpoint,
            ctx.settings.log_origin,
            _bureau_public(ctx),
            signer,
            actor.id,
            registered_key=principal.public_key if principal else None,
        )
    if not created:
        response.status_code = 200
    return record


@router.get("/ledger/witnessed", response_model=WitnessedList, responses=SIGNED_IN)
def witnessed(ctx: Ctx, actor: CurrentActor, size: int | None = None) -> dict[str, Any]:
    require(actor, Role.regulator, Role.bureau)
    with ctx.reading() as s:
        return {"witnessed": log.witnessed(s, size)}


def _bureau_public(ctx: Context) -> bytes:
    return public_raw(ctx.bureau_key)


def _raw_public_key(ctx: Context, b64: str) -> bytes:
    return raw_public_bytes(parse_public_key(b64, ctx.suite))
