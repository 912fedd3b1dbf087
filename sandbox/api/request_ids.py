"""Each request's id: the client's `X-Request-ID` when it is well formed, else a new one; on
every log line written for the request and in the response's `X-Request-ID` header."""

from __future__ import annotations

import re
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.common import logs

HEADER = "X-Request-ID"
# Strict: the id is written into log lines and echoed in a header, so nothing that could end
# a line, start a field or carry much of anything is taken from the client.
WELL_FORMED = re.compile(r"[A-Za-z0-9._-]{1,64}")
# Where authentication leaves the caller's id for the request's last lines (`request.state`).
PRINCIPAL_KEY = "principal_id"


def request_id(sent: bytes | None) -> str:
    """The client's id if it is well formed, else a fresh one."""
    if sent is not None:
        text = sent.decode("latin-1")
        if WELL_FORMED.fullmatch(text):
            return text
    return uuid.uuid4().hex


def _sent(scope: Scope) -> bytes | None:
    name = HEADER.lower().encode("ascii")
    return next((value for key, value in scope.get("headers", ()) if key == name), None)


class RequestIds:
    """ASGI middleware binding the request's id (and, once known, the caller's) to its lines."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(_sent(scope))
        state = scope.setdefault("state", {})

        async def send_with_id(message: Message) -> None:
            if message["type"] != "http.response.start":
                await send(message)
                return
            MutableHeaders(scope=message)[HEADER] = rid
            # The caller authenticated in a thread of its own; its id is bound here, for the
            # access line the server writes as the response starts.
            with logs.bound(principal_id=state.get(PRINCIPAL_KEY)):
                await send(message)

        with logs.bound(request_id=rid):
            await self.app(scope, receive, send_with_id)
