"""Sign-ins to the browser console: a server-side session per browser.

The browser holds a random secret in an HttpOnly cookie; the database holds its hash, the
principal, the hash of the API token the person signed in with, a CSRF token and an expiry.
Every request through the console is the principal's own, with the API's checks: a session
whose token was rotated or revoked, or whose principal is suspended, no longer answers.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import delete

from operators.suite import Suite, digest
from operators.tokens import hash_token
from sandbox.common import clock
from sandbox.context import Context
from sandbox.errors import Unauthenticated
from sandbox.records.principals import ACTIVE, Actor, actor_of, authenticate
from sandbox.store.models import ConsoleSession, Principal


@dataclass(frozen=True)
class Opened:
    secret: str  # for the cookie, and nowhere else
    csrf: str
    actor: Actor
    expires_at: dt.datetime


@dataclass(frozen=True)
class Signed:
    """The person behind a console request."""

    actor: Actor
    csrf: str


def _hash(secret: str, suite: Suite) -> str:
    return digest(suite, secret.encode("utf-8")).hex()


def open_session(ctx: Context, token: str) -> Opened:
    """Sign in with an API token: the same check as the API's (a suspended principal, a
    revoked or unknown token are refused with the API's message)."""
    actor = authenticate(ctx, token.strip())
    secret, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    now = clock.now()
    expires = now + dt.timedelta(hours=ctx.settings.console_session_hours)
    with ctx.transaction() as s:
        # Sessions that ended are cleared as new ones begin: the table holds live ones only.
        s.execute(delete(ConsoleSession).where(ConsoleSession.expires_at < clock.stored(now)))
        s.add(
            ConsoleSession(
                secret_hash=_hash(secret, ctx.suite),
                principal_id=actor.id,
                token_hash=hash_token(token.strip(), ctx.suite),
                csrf=csrf,
                created_at=clock.stored(now),
                expires_at=clock.stored(expires),
            )
        )
    return Opened(secret, csrf, actor, expires)


def signed_in(ctx: Context, secret: str | None) -> Signed | None:
    """The session's person, or None when there is no live session (never an error: a page
    for everyone shows then, and a page that needs a person asks to sign in)."""
    if not secret:
        return None
    with ctx.reading() as s:
        row = s.get(ConsoleSession, _hash(secret, ctx.suite))
        if row is None or row.expires_at <= clock.stored(clock.now()):
            return None
        p = s.get(Principal, row.principal_id)
        if p is None or not hmac.compare_digest(p.token_hash, row.token_hash):
            return None  # the token it was opened with was rotated or revoked
        actor = actor_of(p)
        csrf = row.csrf
    if actor.status != ACTIVE:
        return None
    return Signed(actor, csrf)


def close_session(ctx: Context, secret: str | None) -> None:
    if not secret:
        return
    with ctx.transaction() as s:
        s.execute(
            delete(ConsoleSession).where(ConsoleSession.secret_hash == _hash(secret, ctx.suite))
        )


def check_csrf(signed: Signed, given: str | None) -> None:
    if not given or not hmac.compare_digest(signed.csrf, given):
        raise Unauthenticated(
            "this form did not come from your console page (its security token is missing "
            "or stale); reload the page and try again"
        )
