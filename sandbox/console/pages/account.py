"""Signing in with an API token and out again."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from sandbox.console.render import SESSION_COOKIE, VisitOf, page
from sandbox.console.routing import ConsoleRoute, Submitted
from sandbox.errors import SandboxError
from sandbox.records.sessions import close_session, open_session

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)


def _safe_next(target: str | None) -> str:
    # Only a path of this site: never a redirect elsewhere.
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return "/"


@router.get("/signin")
def signin_form(visit: VisitOf, next: str | None = None) -> Response:
    return page(visit, "signin.html", next=_safe_next(next), error=None)


@router.post("/signin")
def signin(
    request: Request,
    visit: VisitOf,
    token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    try:
        opened = open_session(visit.ctx, token)
    except SandboxError as exc:
        message = getattr(exc, "message", str(exc))
        return page(visit, "signin.html", 401, next=_safe_next(next), error=message)
    response = RedirectResponse(_safe_next(next), 303)
    response.set_cookie(
        SESSION_COOKIE,
        opened.secret,
        max_age=int(visit.ctx.settings.console_session_hours * 3600),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/signout")
def signout(request: Request, visit: VisitOf, _: Submitted) -> Response:
    close_session(visit.ctx, request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/", 303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
