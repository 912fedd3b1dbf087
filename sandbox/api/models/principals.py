"""Principals, their tokens and keys, and the service's health."""

from __future__ import annotations

from pydantic import Field

from sandbox.api.models.common import Open


class Jail(Open):
    seccomp: bool = Field(description="Whether job processes get their system-call filter")
    jobs_run: bool = Field(description="False when the filter is required but unavailable")
    problem: str | None = Field(None, description="Why the filter is unavailable (only then)")


class Health(Open):
    ok: bool
    jail: Jail


class Live(Open):
    ok: bool


class Ready(Open):
    ok: bool
    checks: dict[str, bool] = Field(description="database, ray, jail: each true when ready")


class Me(Open):
    id: str
    name: str
    role: str
    status: str | None = Field(None, description="Only when not active, e.g. suspended")
    status_reason: str | None = Field(None, description="Only when not active")


class HistoryEntry(Open):
    status: str
    at: str | None = None
    by: str | None = None
    reason: str | None = None


class PrincipalCreated(Open):
    id: str
    name: str
    role: str
    license_no: str | None
    license_valid_to: str | None
    key_id: str | None
    token: str = Field(description="The API token, shown this once")


class Principal(Open):
    id: str
    name: str
    role: str
    license_no: str | None
    license_valid_to: str | None
    status: str
    status_reason: str | None
    history: list[HistoryEntry]
    key_id: str | None
    created_at: str | None


class Principals(Open):
    principals: list[Principal]


class Key(Open):
    id: str
    principal_id: str
    public_key: str = Field(
        description="base64 raw public key: Ed25519, or SM2 (65-byte point) on an sm instance"
    )
    valid_from: str | None
    revoked_at: str | None
    revoked_reason: str | None
    registered_by: str | None
    current: bool


class Keys(Open):
    principal_id: str
    keys: list[Key]


class TokenIssued(Open):
    id: str
    token: str = Field(description="The new API token, shown this once")
    issued_at: str | None


class TokensRevoked(Open):
    id: str
    revoked_at: str | None
    token: str | None = Field(description="With `reissue`: a new token, shown this once")
