"""Output review in the console: the queue of held releases and a held release's page, for
the bureau and departments (who decide) and regulators (who read). Each page calls what the
API's routes call, as the signed-in person, so what the API refuses is refused here."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote as percent_encode

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from sandbox.console.pages.demands import _when
from sandbox.console.render import Visit, VisitOf, page
from sandbox.console.routing import ConsoleRoute, Person, Submitted
from sandbox.errors import BadRequest, Conflict
from sandbox.pipeline import reviews as acting
from sandbox.records import reviews
from sandbox.records.failures import status_of
from sandbox.records.principals import Actor

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)


def reasons(t: Any, review: dict[str, Any]) -> list[str]:
    """The rules that held a release, in the visitor's words."""
    out = []
    for reason in review["reasons"]:
        rule, _, level = str(reason).partition(":")
        out.append(
            t(f"reviews.reason.{rule}", level=level) if level else t(f"reviews.reason.{rule}")
        )
    return out


def _grid(body: dict[str, Any] | None) -> dict[str, Any]:
    if not body or body.get("kind") != "table":
        return {"columns": [], "rows": []}
    names = [c["name"] for c in body["columns"]]
    hidden = {(i, c) for i, c in body.get("suppressed", [])}
    rows = [
        [{"text": "" if v is None else v, "hidden": (i, n) in hidden} for n, v in zip(names, row)]
        for i, row in enumerate(body["rows"])
    ]
    return {"columns": names, "rows": rows}


@router.get("/reviews")
def queue(visit: VisitOf, signed: Person, status: str = "pending") -> Response:
    actor = signed.actor
    picked = status if status in reviews.STATUSES else ""
    rows = reviews.listing(visit.ctx, actor, picked or None)
    return page(
        visit,
        "reviews.html",
        reviews=rows,
        statuses=reviews.STATUSES,
        picked=picked,
        when=_when,
        reasons=reasons,
        released=lambda r: sum(1 for d in r["decisions"] if d["decision"] == "release"),
    )


def _review_page(
    visit: Visit, actor: Actor, review_id: str, status: int = 200, **form: Any
) -> Response:
    review = reviews.get(visit.ctx, actor, review_id)
    return page(
        visit,
        "review.html",
        status,
        r=review,
        grid=_grid(review["held"]),
        when=_when,
        reasons=reasons,
        released=sum(1 for d in review["decisions"] if d["decision"] == "release"),
        error=form.get("error", ""),
        reason=form.get("reason", ""),
    )


@router.get("/reviews/{review_id}")
def one(visit: VisitOf, signed: Person, review_id: str) -> Response:
    return _review_page(visit, signed.actor, review_id)


@router.post("/reviews/{review_id}/decisions")
def decide(visit: VisitOf, sent: Submitted, review_id: str) -> Response:
    actor = sent.signed.actor
    decision, reason = sent.form.get("decision", ""), sent.form.get("reason", "")
    try:
        acting.decide(visit.ctx, actor, review_id, decision, reason or None)
    except (BadRequest, Conflict) as exc:
        return _review_page(
            visit, actor, review_id, status_of(exc), error=exc.message, reason=reason
        )
    return RedirectResponse(f"/reviews/{percent_encode(review_id, safe='')}", 303)
