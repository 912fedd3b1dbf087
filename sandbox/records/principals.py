"""Principals: creation, token authentication and rotation, keys, licences, suspension.

Keys are never deleted: a rotation revokes the key in force and registers the next one, so a
signature is always checked against the key that was current when it was made. A principal
registers its next key itself by signing `operators.rotation.rotation_bytes` with the key in
force; the bureau may register a key for anyone (the first key, or after a key is lost).
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from operators.errors import SignatureInvalid
from operators.keys import parse_public_key, verify
from operators.roles import Role
from operators.rotation import rotation_bytes
from operators.suite import DEFAULT_SUITE, Suite
from operators.tokens import hash_token, new_token
from sandbox.common import clock
from sandbox.context import Context
from sandbox.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    LicenseExpired,
    NotFound,
    PrincipalSuspended,
    TokenRevoked,
    Unauthenticated,
)
from sandbox.ledger import log
from sandbox.settings import Settings
from sandbox.store.models import Principal, PrincipalKey, PrincipalToken

ACTIVE, SUSPENDED = "active", "suspended"
# Only these can be suspended: suspending the bureau or a regulator would leave nobody to
# administer or oversee the instance.
SUSPENDABLE = (Role.operator, Role.provider)


@dataclass(frozen=True)
class Actor:
    id: str
    name: str
    role: Role
    status: str = ACTIVE
    status_reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.id, "name": self.name, "role": str(self.role)}
        if self.status != ACTIVE:
            body |= {"status": self.status, "status_reason": self.status_reason}
        return body


def history_entry(status: str, by: str | None, reason: str | None) -> dict[str, Any]:
    return {"status": status, "at": clock.text(clock.now()), "by": by, "reason": reason}


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


def require(actor: Actor, *roles: Role) -> None:
    if actor.role not in roles:
        raise Forbidden(f"this needs the role {' or '.join(roles)}; you are {actor.role}")


def require_reason(reason: str, what: str) -> str:
    if not reason.strip():
        raise BadRequest(f'{what} needs a reason: {{"reason": "…"}}')
    return reason.strip()


# --- authentication ------------------------------------------------------------------------


def authenticate(ctx: Context, token: str | None, *, allow_suspended: bool = False) -> Actor:
    """The principal holding ``token``.

    A suspended principal is refused unless ``allow_suspended`` (which only `GET /v1/me`
    passes, so that it can still learn who it is and why it is suspended).
    """
    if not token:
        raise Unauthenticated("send your API token as 'Authorization: Bearer <token>'")
    digest = hash_token(token, ctx.suite)
    with ctx.reading() as s:
        p = s.scalar(select(Principal).where(Principal.token_hash == digest))
        if p is None:
            _explain_unknown_token(s, digest)
    assert p is not None
    actor = actor_of(p)
    if p.status == SUSPENDED and not allow_suspended:
        raise PrincipalSuspended(
            f"{p.name} ({p.id}) is suspended: {p.status_reason}; until it is resumed (by the "
            "regulator, or by the bureau if the bureau suspended it) only GET /v1/me answers"
        )
    return actor


def actor_of(p: Principal) -> Actor:
    """The principal as the one acting in a request."""
    return Actor(p.id, p.name, Role(p.role), p.status, p.status_reason)


def _explain_unknown_token(session: Session, digest: str) -> None:
    old = session.get(PrincipalToken, digest)
    if old is not None and old.revoked_at is not None:
        raise TokenRevoked(
            f"this API token was revoked at {clock.text(old.revoked_at)} ({old.revoked_reason}); "
            "use the token that replaced it, or ask the bureau for a new one"
        )
    raise Unauthenticated("unknown API token; ask the bureau for a valid one")


# --- creation and reading ------------------------------------------------------------------


def parse_license_valid_to(raw: str | dt.datetime | None) -> dt.datetime | None:
    """An aware end of licence validity in the future, or None for no end date."""
    if raw is None:
        return None
    how = "write it like '2027-12-31T23:59:59+08:00' or '2027-12-31T16:00:00Z'"
    if isinstance(raw, str):
        try:
            raw = dt.datetime.fromisoformat(raw)
        except ValueError:
            raise BadRequest(
                f"license_valid_to {raw!r} is not an ISO 8601 date-time; {how}"
            ) from None
    if raw.tzinfo is None or raw.utcoffset() is None:
        raise BadRequest(f"license_valid_to has no time zone; {how}")
    if raw <= clock.now():
        raise BadRequest(
            f"license_valid_to {clock.text(raw)} is already past; give the end of "
            "the licence's validity as printed on the licence"
        )
    return raw.astimezone(dt.UTC)


def create_principal(
    ctx: Context,
    actor: Actor | None,
    name: str,
    role: str,
    license_no: str | None = None,
    public_key: str | None = None,
    license_valid_to: str | dt.datetime | None = None,
) -> tuple[Principal, str]:
    """Create a principal and return it with its API token (shown once, stored hashed)."""
    if actor is not None:
        require(actor, Role.bureau)
    if role not in Role.__members__:
        raise BadRequest(f"role must be one of {', '.join(Role.__members__)}")
    if not name.strip():
        raise BadRequest("name must not be empty")
    if public_key is not None:
        parse_public_key(public_key, ctx.suite)
    valid_to = parse_license_valid_to(license_valid_to)
    token = new_token()
    p = Principal(
        id=new_id(role[:1] if role != "provider" else "d"),
        name=name,
        role=role,
        license_no=license_no,
        public_key=public_key,
        token_hash=hash_token(token, ctx.suite),
        license_valid_to=clock.stored(valid_to) if valid_to else None,
        status=ACTIVE,
        history=[history_entry(ACTIVE, actor.id if actor else None, "created")],
    )
    with ctx.transaction() as s:
        s.add(p)
        s.flush()
        s.add(
            PrincipalToken(token_hash=p.token_hash, principal_id=p.id, issued_at=clock.stored_now())
        )
        key_id = None
        if public_key is not None:
            key_id = _add_key(s, p, public_key, actor.id if actor else None).id
        log.append(
            s,
            "principal.created",
            actor.id if actor else None,
            p.id,
            {
                "name": name,
                "role": role,
                "license_no": license_no,
                "license_valid_to": clock.text(valid_to),
                "public_key": public_key,
                "key_id": key_id,
            },
        )
    return p, token


def principal_view(session: Session, p: Principal) -> dict[str, Any]:
    key = current_key(session, p.id)
    return {
        "id": p.id,
        "name": p.name,
        "role": p.role,
        "license_no": p.license_no,
        "license_valid_to": clock.text(p.license_valid_to),
        "status": p.status,
        "status_reason": p.status_reason,
        "history": list(p.history or []),
        "key_id": key.id if key else None,
        "created_at": clock.text(p.created_at),
    }


def _target(session: Session, principal_id: str) -> Principal:
    p = session.get(Principal, principal_id)
    if p is None:
        raise NotFound(f"no principal {principal_id!r}")
    return p


def _require_self_or_overseer(actor: Actor, principal_id: str, what: str) -> None:
    if actor.id != principal_id and actor.role not in (Role.bureau, Role.regulator):
        raise Forbidden(
            f"only the bureau, the regulator and the principal itself can {what}; "
            f"you are {actor.role} {actor.id}"
        )


def get_principal(ctx: Context, actor: Actor, principal_id: str) -> dict[str, Any]:
    _require_self_or_overseer(actor, principal_id, "read a principal")
    with ctx.reading() as s:
        return principal_view(s, _target(s, principal_id))


def list_principals(ctx: Context, actor: Actor) -> list[dict[str, Any]]:
    """Every principal with its status, oldest first (the bureau and the regulator)."""
    require(actor, Role.bureau, Role.regulator)
    with ctx.reading() as s:
        rows = s.scalars(select(Principal).order_by(Principal.created_at, Principal.id))
        return [principal_view(s, p) for p in rows]


# --- licences ------------------------------------------------------------------------------


def check_license(session: Session, principal_id: str, at: dt.datetime) -> None:
    """Raise LicenseExpired if ``principal_id`` is an operator whose licence ended by ``at``."""
    p = session.get(Principal, principal_id)
    if p is None or p.role != Role.operator or p.license_valid_to is None:
        return
    if clock.stored(at) >= p.license_valid_to:
        raise LicenseExpired(
            f"the operating licence {p.license_no or '(no number)'} of {p.name} ({p.id}) expired "
            f"at {clock.text(p.license_valid_to)}; an operator without a valid licence cannot "
            "apply for contracts or submit jobs. Ask the bureau to record the renewed licence "
            f"(POST /v1/principals/{p.id}/license)"
        )


def update_license(
    ctx: Context,
    actor: Actor,
    principal_id: str,
    license_no: str | None,
    license_valid_to: str | None,
) -> dict[str, Any]:
    require(actor, Role.bureau)
    valid_to = parse_license_valid_to(license_valid_to)
    with ctx.transaction() as s:
        p = _target(s, principal_id)
        if license_no is not None:
            p.license_no = license_no
        p.license_valid_to = clock.stored(valid_to) if valid_to else None
        log.append(
            s,
            "principal.license_updated",
            actor.id,
            p.id,
            {"license_no": p.license_no, "license_valid_to": clock.text(valid_to)},
        )
        return principal_view(s, p)


# --- suspension ----------------------------------------------------------------------------


def suspend_principal(ctx: Context, actor: Actor, principal_id: str, reason: str) -> dict[str, Any]:
    require(actor, Role.bureau, Role.regulator)
    reason = require_reason(reason, "a suspension")
    with ctx.transaction() as s:
        p = _target(s, principal_id)
        if Role(p.role) not in SUSPENDABLE:
            raise Forbidden(f"{p.id} is a {p.role}; only operators and providers can be suspended")
        if p.status == SUSPENDED:
            raise Conflict(
                f"{p.id} is already suspended ({p.status_reason}); resume it first "
                "to suspend it for another reason"
            )
        _set_status(p, SUSPENDED, actor, reason)
        log.append(s, "principal.suspended", actor.id, p.id, {"reason": reason})
        return principal_view(s, p)


def resume_principal(ctx: Context, actor: Actor, principal_id: str, reason: str) -> dict[str, Any]:
    """The regulator lifts any suspension; the bureau only those the bureau imposed."""
    require(actor, Role.bureau, Role.regulator)
    reason = require_reason(reason, "resuming a principal")
    with ctx.transaction() as s:
        p = _target(s, principal_id)
        if p.status != SUSPENDED:
            raise Conflict(f"{p.id} is {p.status}, not suspended; there is nothing to resume")
        if actor.role == Role.bureau and _suspended_by_role(s, p) != Role.bureau:
            raise Forbidden(
                f"{p.id} was suspended by the regulator; only the regulator can resume it"
            )
        _set_status(p, ACTIVE, actor, reason)
        log.append(s, "principal.resumed", actor.id, p.id, {"reason": reason})
        return principal_view(s, p)


def _set_status(p: Principal, status: str, actor: Actor, reason: str) -> None:
    p.status, p.status_reason = status, reason if status != ACTIVE else None
    # Reassign rather than append: the JSON column only notices a new value.
    p.history = [*(p.history or []), history_entry(status, actor.id, reason)]


def _suspended_by_role(session: Session, p: Principal) -> Role | None:
    last = next((h for h in reversed(p.history or []) if h["status"] == SUSPENDED), None)
    by = session.get(Principal, last["by"]) if last and last.get("by") else None
    return Role(by.role) if by else None


# --- tokens --------------------------------------------------------------------------------


def rotate_token(ctx: Context, actor: Actor) -> dict[str, Any]:
    """A new token for the caller; the one used for this request stops working at once."""
    token = new_token()
    with ctx.transaction() as s:
        p = _target(s, actor.id)
        _revoke_tokens(s, p, "replaced by POST /v1/me/token")
        _issue(s, p, token)
        log.append(s, "principal.token_rotated", actor.id, p.id, {})
        return {"id": p.id, "token": token, "issued_at": clock.text(clock.now())}


def revoke_tokens(
    ctx: Context, actor: Actor, principal_id: str, reason: str, reissue: bool = False
) -> dict[str, Any]:
    """Revoke every token of a principal; with ``reissue`` return a new one (shown once)."""
    require(actor, Role.bureau)
    reason = require_reason(reason, "revoking tokens")
    if principal_id == actor.id:
        raise Forbidden(
            "you cannot revoke your own tokens here; replace your token with POST /v1/me/token"
        )
    token = new_token() if reissue else None
    with ctx.transaction() as s:
        p = _target(s, principal_id)
        _revoke_tokens(s, p, f"revoked by the bureau: {reason}")
        if token is not None:
            _issue(s, p, token)
        else:
            # The column must hold some hash; this one belongs to a token nobody ever saw.
            p.token_hash = hash_token(new_token(), log.suite(s))
        log.append(
            s,
            "principal.tokens_revoked",
            actor.id,
            p.id,
            {"reason": reason, "reissued": token is not None},
        )
        return {"id": p.id, "revoked_at": clock.text(clock.now()), "token": token}


def _revoke_tokens(session: Session, p: Principal, reason: str) -> None:
    at = clock.stored_now()
    live = list(
        session.scalars(
            select(PrincipalToken).where(
                PrincipalToken.principal_id == p.id, PrincipalToken.revoked_at.is_(None)
            )
        )
    )
    if session.get(PrincipalToken, p.token_hash) is None:
        # A principal created before tokens were recorded: record its token to revoke it.
        live.append(PrincipalToken(token_hash=p.token_hash, principal_id=p.id, issued_at=at))
        session.add(live[-1])
    for row in live:
        row.revoked_at, row.revoked_reason = at, reason


def _issue(session: Session, p: Principal, token: str) -> None:
    p.token_hash = hash_token(token, log.suite(session))
    session.add(
        PrincipalToken(token_hash=p.token_hash, principal_id=p.id, issued_at=clock.stored_now())
    )


# --- keys ----------------------------------------------------------------------------------


def current_key(session: Session, principal_id: str) -> PrincipalKey | None:
    return session.scalar(
        select(PrincipalKey)
        .where(PrincipalKey.principal_id == principal_id, PrincipalKey.revoked_at.is_(None))
        .order_by(PrincipalKey.valid_from.desc())
        .limit(1)
    )


def key_at(session: Session, principal_id: str, at: dt.datetime) -> PrincipalKey | None:
    """The key that was current at ``at``, to check a signature made then."""
    moment = clock.stored(at)
    for key in session.scalars(
        select(PrincipalKey)
        .where(PrincipalKey.principal_id == principal_id, PrincipalKey.valid_from <= moment)
        .order_by(PrincipalKey.valid_from.desc())
    ):
        if key.revoked_at is None or key.revoked_at > moment:
            return key
    return None


def key_view(key: PrincipalKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "principal_id": key.principal_id,
        "public_key": key.public_key,
        "valid_from": clock.text(key.valid_from),
        "revoked_at": clock.text(key.revoked_at),
        "revoked_reason": key.revoked_reason,
        "registered_by": key.registered_by,
        "current": key.revoked_at is None,
    }


def list_keys(ctx: Context, actor: Actor, principal_id: str) -> dict[str, Any]:
    _require_self_or_overseer(actor, principal_id, "list a principal's keys")
    with ctx.reading() as s:
        _target(s, principal_id)
        keys = s.scalars(
            select(PrincipalKey)
            .where(PrincipalKey.principal_id == principal_id)
            .order_by(PrincipalKey.valid_from)
        )
        return {"principal_id": principal_id, "keys": [key_view(k) for k in keys]}


def register_key(
    ctx: Context,
    actor: Actor,
    principal_id: str,
    public_key: str,
    signature: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """Make ``public_key`` the principal's current key, revoking the one in force.

    The bureau needs no signature. The principal itself signs
    ``rotation_bytes(principal_id, public_key, <id of its current key>)`` with that key.
    """
    if actor.role != Role.bureau and actor.id != principal_id:
        raise Forbidden(
            f"only the bureau, or the principal itself, registers a principal's "
            f"keys; you are {actor.role} {actor.id}"
        )
    parse_public_key(public_key, ctx.suite)
    with ctx.transaction() as s:
        p = _target(s, principal_id)
        previous = current_key(s, p.id)
        if actor.role != Role.bureau:
            _check_rotation_signature(p, previous, public_key, signature)
        _refuse_reused_key(s, p, public_key)
        if previous is not None:
            previous.revoked_at = clock.stored_now()
            previous.revoked_reason = reason or "rotated"
        key = _add_key(s, p, public_key, actor.id)
        log.append(
            s,
            "principal.key_registered",
            actor.id,
            p.id,
            {
                "key_id": key.id,
                "public_key": public_key,
                "previous_key_id": previous.id if previous else None,
                "by": "bureau" if actor.role == Role.bureau else "self",
                "reason": reason,
            },
        )
        return key_view(key)


def _check_rotation_signature(
    p: Principal, previous: PrincipalKey | None, public_key: str, signature: str | None
) -> None:
    if previous is None:
        raise Forbidden(f"{p.id} has no key yet; the bureau registers a principal's first key")
    if not signature:
        raise BadRequest(
            'registering your next key needs {"public_key": …, "signature": …}: base64 '
            f"signature by your current key ({previous.id}) over "
            "operators.rotation.rotation_bytes(your id, the new public key, "
            f"'{previous.id}')"
        )
    data = rotation_bytes(p.id, public_key, previous.id)
    try:
        verify(
            previous.public_key,
            data,
            signature,
            subject=f"the key rotation statement for {p.id} (previous key {previous.id})",
        )
    except SignatureInvalid as exc:
        raise SignatureInvalid(f"key rotation refused: {exc}") from exc


def _refuse_reused_key(session: Session, p: Principal, public_key: str) -> None:
    old = session.scalar(
        select(PrincipalKey).where(
            PrincipalKey.principal_id == p.id, PrincipalKey.public_key == public_key
        )
    )
    if old is not None:
        raise Conflict(
            f"this public key was already registered for {p.id} as {old.id}; "
            "generate a new key pair for a rotation"
        )


def _add_key(
    session: Session, p: Principal, public_key: str, registered_by: str | None
) -> PrincipalKey:
    key = PrincipalKey(
        id=new_id("k"),
        principal_id=p.id,
        public_key=public_key,
        valid_from=clock.stored_now(),
        registered_by=registered_by,
    )
    session.add(key)
    # The column keeps the key in force, for readers that know of one key only.
    p.public_key = public_key
    session.flush()
    return key


def bootstrap(
    settings: Settings, bureau_name: str = "数据局", suite: Suite = DEFAULT_SUITE
) -> tuple[Context, str]:
    """A new instance with its first principal, the bureau; returns the bureau's token."""
    from sandbox.context import create_instance

    ctx = create_instance(settings, suite)
    _, token = create_principal(ctx, None, bureau_name, Role.bureau)
    return ctx, token
