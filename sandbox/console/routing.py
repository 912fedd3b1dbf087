"""How console routes answer errors: a page that says what went wrong, in the visitor's
language, with the service's own message; a page that needs a person asks them to sign in."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute

from sandbox.console.render import VisitOf, _visit, page
from sandbox.errors import Forbidden
from sandbox.records.failures import DOMAIN_ERRORS, status_of
from sandbox.records.sessions import Signed, check_csrf


class SignInNeeded(Exception):
    """The page is for a signed-in person."""


class ConsoleRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInNeeded:
                return RedirectResponse(f"/signin?next={quote(request.url.path)}", 303)
            except DOMAIN_ERRORS as exc:
                message = getattr(exc, "message", None) or str(exc)
                return page(_visit(request), "error.html", status_of(exc), message=message)

        return answer


def person(visit: VisitOf) -> Signed:
    if visit.signed is None:
        raise SignInNeeded()
    return visit.signed


Person = Annotated[Signed, Depends(person)]


@dataclass(frozen=True)
class Posted:
    """A form sent by a signed-in person from one of the console's own pages."""

    signed: Signed
    form: dict[str, str]
    lists: dict[str, list[str]]


async def posted(request: Request, signed: Person) -> Posted:
    _same_origin(request)
    data = await request.form()
    check_csrf(signed, _text(data.get("csrf")))
    form = {k: _text(v) for k, v in data.items() if k != "csrf"}
    lists = {k: [_text(v) for v in data.getlist(k)] for k in data.keys()}
    return Posted(signed, form, lists)


Submitted = Annotated[Posted, Depends(posted)]


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _same_origin(request: Request) -> None:
    """A change comes from a page of this service, not from a page elsewhere posting here
    (the SameSite=Strict cookie already stays home; this holds even where it would not)."""
    site = request.headers.get("sec-fetch-site")
    if site not in (None, "same-origin", "none"):
        raise Forbidden("a change to the console must be made from the console's own pages")
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise Forbidden("a change to the console must be made from the console's own pages")
