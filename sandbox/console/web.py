"""The console in the API's app: its pages at `/`, its assets at `/static`, and the security
headers every console page carries."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles

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

    @app.middleware("http")
    async def _headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        if not request.url.path.startswith(_NOT_CONSOLE):
            response.headers.update(HEADERS)
            if request.url.scheme == "https":
                response.headers["Strict-Transport-Security"] = "max-age=31536000"
        return response
