"""Request dependencies as `Annotated` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from sandbox.api.request_ids import PRINCIPAL_KEY
from sandbox.context import Context
from sandbox.records.principals import Actor, authenticate

_bearer = HTTPBearer(auto_error=False)


def context_of(request: Request) -> Context:
    return request.app.state.ctx  # type: ignore[no-any-return]


async def get_context(request: Request) -> Context:
    # async: FastAPI runs a plain function dependency on a thread of its pool, a hand-over
    # there and back on every request for what is only an attribute read.
    return context_of(request)


def get_actor(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Actor:
    return _known(
        request,
        authenticate(context_of(request), credentials.credentials if credentials else None),
    )


def get_self(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Actor:
    """The caller even when suspended, so that it can still learn who it is and why."""
    return _known(
        request,
        authenticate(
            context_of(request),
            credentials.credentials if credentials else None,
            allow_suspended=True,
        ),
    )


def _known(request: Request, actor: Actor) -> Actor:
    """The caller's id, for the request's access line (`request_ids`)."""
    setattr(request.state, PRINCIPAL_KEY, actor.id)
    return actor


Ctx = Annotated[Context, Depends(get_context)]
CurrentActor = Annotated[Actor, Depends(get_actor)]
SelfActor = Annotated[Actor, Depends(get_self)]
