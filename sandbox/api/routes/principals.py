from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from sandbox.api.deps import Ctx, CurrentActor
from sandbox.api.models.common import ERRORS, SIGNED_IN, ModelRoute, errors
from sandbox.api.models.principals import (
    Key,
    Keys,
    Principal,
    PrincipalCreated,
    Principals,
    TokenIssued,
    TokensRevoked,
)
from sandbox.common import clock
from sandbox.records import principals

router = APIRouter(tags=["principals"], route_class=ModelRoute, responses=ERRORS)


class NewPrincipal(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    role: str
    license_no: str | None = Field(None, max_length=100)
    license_valid_to: str | None = Field(None, description="ISO 8601 with a time zone")
    public_key: str | None = None


class License(BaseModel):
    model_config = ConfigDict(extra="forbid")
    license_no: str | None = Field(None, max_length=100)
    license_valid_to: str | None = Field(None, description="ISO 8601; null: no end date")


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000)


class Revocation(Reason):
    reissue: bool = False


class NewKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    public_key: str = Field(min_length=1, max_length=200)
    signature: str | None = Field(
        None,
        description=(
            "needed when a principal registers its own next key: base64 signature (Ed25519, "
            "or SM2 on an sm instance) by "
            "its current key over operators.rotation.rotation_bytes"
        ),
    )
    reason: str | None = Field(None, max_length=2000)


@router.post(
    "/principals",
    status_code=201,
    response_model=PrincipalCreated,
    responses=SIGNED_IN | errors(409),
)
def create(body: NewPrincipal, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    p, token = principals.create_principal(
        ctx, actor, body.name, body.role, body.license_no, body.public_key, body.license_valid_to
    )
    with ctx.reading() as s:
        key = principals.current_key(s, p.id)
    return {
        "id": p.id,
        "name": p.name,
        "role": p.role,
        "license_no": p.license_no,
        "license_valid_to": clock.text(p.license_valid_to),
        "key_id": key.id if key else None,
        "token": token,
    }


@router.get("/principals", response_model=Principals, responses=SIGNED_IN)
def list_all(ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    """Every principal with its status (bureau, regulator); never a token."""
    return {"principals": principals.list_principals(ctx, actor)}


@router.get(
    "/principals/{principal_id}", response_model=Principal, responses=SIGNED_IN | errors(404)
)
def get(principal_id: str, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    return principals.get_principal(ctx, actor, principal_id)


@router.post(
    "/principals/{principal_id}/license",
    response_model=Principal,
    responses=SIGNED_IN | errors(404),
)
def update_license(
    principal_id: str, body: License, ctx: Ctx, actor: CurrentActor
) -> dict[str, Any]:
    """Bureau: record a renewed or changed operating licence."""
    return principals.update_license(
        ctx, actor, principal_id, body.license_no, body.license_valid_to
    )


@router.post(
    "/principals/{principal_id}/suspend",
    response_model=Principal,
    responses=SIGNED_IN | errors(404, 409),
)
def suspend(principal_id: str, body: Reason, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    return principals.suspend_principal(ctx, actor, principal_id, body.reason)


@router.post(
    "/principals/{principal_id}/resume",
    response_model=Principal,
    responses=SIGNED_IN | errors(404, 409),
)
def resume(principal_id: str, body: Reason, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    return principals.resume_principal(ctx, actor, principal_id, body.reason)


@router.post(
    "/principals/{principal_id}/revoke-tokens",
    response_model=TokensRevoked,
    responses=SIGNED_IN | errors(404),
)
def revoke_tokens(
    principal_id: str, body: Revocation, ctx: Ctx, actor: CurrentActor
) -> dict[str, Any]:
    """Bureau: every token of the principal stops working; `reissue` returns a new one once."""
    return principals.revoke_tokens(ctx, actor, principal_id, body.reason, body.reissue)


@router.get(
    "/principals/{principal_id}/keys", response_model=Keys, responses=SIGNED_IN | errors(404)
)
def list_keys(principal_id: str, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    return principals.list_keys(ctx, actor, principal_id)


@router.post(
    "/principals/{principal_id}/keys",
    status_code=201,
    response_model=Key,
    responses=SIGNED_IN | errors(404, 409),
)
def register_key(principal_id: str, body: NewKey, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    """Make a new public key current; the previous one is revoked but kept for verification."""
    return principals.register_key(
        ctx, actor, principal_id, body.public_key, body.signature, body.reason
    )


@router.post("/me/token", response_model=TokenIssued, responses=SIGNED_IN)
def rotate_token(ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    """A new API token for the caller (shown once); the one used for this call stops working."""
    return principals.rotate_token(ctx, actor)
