"""The console in the API's app: its pages at `/`, its assets at `/static`, and the security
headers every console page carries."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.console.pages import PAGES

STATIC = Path(__file__).parent / "static"

# Nothing inline, nothing from elsewhere, no framing: the pages' scripts are the files in
# static/, and user text reaches the page escaped.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}
# The API and its documentation pages keep their own (Swagger UI loads its assets itself).
_NOT_CONSOLE = ("/v1/", "/docs", "/redoc", "/openapi.json", "/metrics")


def install(app: FastAPI) -> None:
    for router in PAGES:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(SecurityHeaders)


class SecurityHeaders:
    """ASGI middleware adding the console's headers to its responses (not the API's). Plain
    ASGI, not a BaseHTTPMiddleware: the response goes out in the request's own context, so
    the ids bound for its access line (`api.request_ids`) are still there."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path.startswith(_NOT_CONSOLE):
            await self.app(scope, receive, send)
            return
        secure = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers[name] = value
                if secure:
                    headers["Strict-Transport-Security"] = "max-age=31536000"
            await send(message)

        await self.app(scope, receive, send_with_headers)
