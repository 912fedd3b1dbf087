"""Principals: creation, token authentication, role checks."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from operators.keys import parse_public_key
from operators.roles import Role
from operators.tokens import hash_token, new_token
from sandbox.context import Context
from sandbox.settings import Settings
from sandbox.errors import BadRequest, Forbidden, Unauthenticated
from sandbox.ledger import log
from sandbox.store.models import Principal


@dataclass(frozen=True)
class Actor:
    id: str
    name: str
    role: Role

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "role": str(self.role)}


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


def require(actor: Actor, *roles: Role) -> None:
    if actor.role not in roles:
        raise Forbidden(f"this needs the role {' or '.join(roles)}; you are {actor.role}")


def authenticate(ctx: Context, token: str | None) -> Actor:
    if not token:
        raise Unauthenticated("send your API token as 'Authorization: Bearer <token>'")
    with ctx.reading() as s:
        p = s.scalar(select(Principal).where(Principal.token_hash == hash_token(token)))
    if p is None:
        raise Unauthenticated("unknown API token; ask the bureau for a valid one")
    return Actor(p.id, p.name, Role(p.role))


def create_principal(ctx: Context, actor: Actor | None, name: str, role: str,
                     license_no: str | None = None, public_key: str | None = None
                     ) -> tuple[Principal, str]:
    """Create a principal and return it with its API token (shown once, stored hashed)."""
    if actor is not None:
        require(actor, Role.bureau)
    if role not in Role.__members__:
        raise BadRequest(f"role must be one of {', '.join(Role.__members__)}")
    if not name.strip():
        raise BadRequest("name must not be empty")
    if public_key is not None:
        parse_public_key(public_key)
    token = new_token()
    p = Principal(id=new_id(role[:1] if role != "provider" else "d"), name=name, role=role,
                  license_no=license_no, public_key=public_key, token_hash=hash_token(token))
    with ctx.transaction() as s:
        s.add(p)
        s.flush()
        log.append(s, "principal.created", actor.id if actor else None, p.id,
                   {"name": name, "role": role, "license_no": license_no,
                    "public_key": public_key})
    return p, token


def bootstrap(settings: Settings, bureau_name: str = "数据局") -> tuple[Context, str]:
    """A new instance with its first principal, the bureau; returns the bureau's token."""
    from sandbox.context import create_instance

    ctx = create_instance(settings)
    _, token = create_principal(ctx, None, bureau_name, Role.bureau)
    return ctx, token
