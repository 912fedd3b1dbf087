"""Pages from templates: who is looking, in which language, and the HTML they get.

Templates escape every value (autoescape): dataset titles, names, reasons and code typed by
users reach the page as text, never as markup."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined

from sandbox.console import nav
from sandbox.console.i18n import DEFAULT, LANGUAGES, translator
from sandbox.context import Context
from sandbox.records.sessions import Signed, signed_in

SESSION_COOKIE = "sandbox_session"
LANG_COOKIE = "sandbox_lang"

TEMPLATES = Environment(
    loader=PackageLoader("sandbox.console", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True)
class Visit:
    """One request to the console: the instance, the signed-in person (if any), the language."""

    ctx: Context
    signed: Signed | None
    lang: str
    path: str
    secure: bool

    @property
    def role(self) -> str | None:
        return str(self.signed.actor.role) if self.signed else None


def _visit(request: Request) -> Visit:
    ctx: Context = request.app.state.ctx
    lang = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE) or DEFAULT
    return Visit(
        ctx,
        signed_in(ctx, request.cookies.get(SESSION_COOKIE)),
        lang if lang in LANGUAGES else DEFAULT,
        request.url.path,
        request.url.scheme == "https",
    )


VisitOf = Annotated[Visit, Depends(_visit)]


def page(visit: Visit, template: str, status: int = 200, **values: Any) -> HTMLResponse:
    html = TEMPLATES.get_template(template).render(
        t=translator(visit.lang),
        lang=visit.lang,
        me=visit.signed.actor if visit.signed else None,
        role=visit.role,
        csrf=visit.signed.csrf if visit.signed else "",
        path=visit.path,
        nav=nav.items(visit.role),
        **values,
    )
    response = HTMLResponse(html, status_code=status)
    # The language chosen (by ?lang=) is kept for the next pages.
    response.set_cookie(LANG_COOKIE, visit.lang, samesite="strict", secure=visit.secure)
    return response
