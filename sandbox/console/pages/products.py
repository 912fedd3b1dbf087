"""Data products in the console: the public list by scenario (signed out); an operator's
products with their calls and revenue, the publish form and its customers' keys (a new key
shown once); the bureau's caps per scenario; the bureau's and the regulator's list of every
product, with suspension and resumption.

Each page calls the functions the API's routes call, as the signed-in person: what the API
refuses is refused here in the same words, beside the form it concerns."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote as percent_encode

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select

from operators.roles import Role
from pricing.errors import PricingError
from sandbox.console.render import Visit, VisitOf, page
from sandbox.console.routing import ConsoleRoute, Person, Submitted
from sandbox.errors import BadRequest, Conflict, NotFound
from sandbox.records import products
from sandbox.records.principals import Actor, require
from sandbox.store.models import Contract, Template, TemplateVersion

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

FORM_REFUSALS = (BadRequest, Conflict, NotFound, PricingError)
PUBLISH_FIELDS = (
    "name",
    "scenario",
    "description",
    "contract_id",
    "template",
    "price",
    "trial_price",
    "trial_until",
)


def _choices(visit: Visit, actor: Actor) -> dict[str, Any]:
    """What an operator can build a product from: its active contracts and approved
    template versions."""
    with visit.ctx.reading() as s:
        contracts = [
            c.id
            for c in s.scalars(
                select(Contract)
                .where(Contract.operator_id == actor.id, Contract.status == "active")
                .order_by(Contract.id)
            )
        ]
        versions = [
            (f"{t.id}:{v.version}", f"{t.name} v{v.version}")
            for t, v in s.execute(
                select(Template, TemplateVersion)
                .join(TemplateVersion, TemplateVersion.template_id == Template.id)
                .where(Template.operator_id == actor.id, TemplateVersion.status == "approved")
                .order_by(Template.name, TemplateVersion.version)
            )
        ]
    return {"contracts": contracts, "versions": versions}


def _page(
    visit: Visit,
    actor: Actor,
    status: int = 200,
    *,
    typed: dict[str, str] | None = None,
    error: str = "",
    failed: str = "",
    issued: dict[str, Any] | None = None,
) -> Response:
    require(actor, Role.operator, Role.bureau, Role.regulator)
    rows = products.listing(visit.ctx, actor)
    keys = (
        {p["id"]: products.keys(visit.ctx, actor, p["id"]) for p in rows}
        if actor.role == Role.operator
        else {}
    )
    return page(
        visit,
        "products.html",
        status,
        products=rows,
        keys=keys,
        caps=products.caps(visit.ctx),
        choices=_choices(visit, actor) if actor.role == Role.operator else {},
        typed=typed or dict.fromkeys(PUBLISH_FIELDS, ""),
        error=error,
        failed=failed,
        issued=issued,
    )


@router.get("/products")
def product_list(visit: VisitOf, signed: Person) -> Response:
    return _page(visit, signed.actor)


@router.post("/products")
def product_publish(visit: VisitOf, sent: Submitted) -> Response:
    actor = sent.signed.actor
    typed = {k: sent.form.get(k, "") for k in PUBLISH_FIELDS}
    template_id, _, version = typed["template"].partition(":")
    body: dict[str, Any] = {
        **{k: typed[k] for k in ("name", "scenario", "description", "contract_id", "price")},
        "template_id": template_id,
        "template_version": int(version) if version.isdigit() else None,
    }
    if typed["trial_price"]:
        body |= {"trial_price": typed["trial_price"], "trial_until": typed["trial_until"]}
    try:
        made = products.publish(visit.ctx, actor, body)
    except FORM_REFUSALS as exc:
        return _page(visit, actor, 400, typed=typed, error=exc.message, failed="publish")
    return RedirectResponse(f"/products#product-{percent_encode(made['id'], safe='')}", 303)


@router.post("/products/caps")
def cap_set(visit: VisitOf, sent: Submitted) -> Response:
    actor = sent.signed.actor
    typed = {k: sent.form.get(k, "") for k in ("scenario", "max_price", "description")}
    try:
        products.set_cap(
            visit.ctx, actor, typed["scenario"], typed["max_price"], typed["description"]
        )
    except FORM_REFUSALS as exc:
        return _page(visit, actor, 400, error=exc.message, failed="caps")
    return RedirectResponse("/products#caps", 303)


@router.post("/products/{product_id}/keys")
def key_issue(visit: VisitOf, sent: Submitted, product_id: str) -> Response:
    actor = sent.signed.actor
    try:
        issued = products.issue_key(visit.ctx, actor, product_id, sent.form.get("customer"))
    except (BadRequest, Conflict) as exc:
        return _page(visit, actor, 400, error=exc.message, failed=product_id)
    # The key is in this answer only: shown once, never again.
    return _page(visit, actor, 201, issued=issued)


@router.post("/products/{product_id}/keys/{key_id}/revoke")
def key_revoke(visit: VisitOf, sent: Submitted, product_id: str, key_id: str) -> Response:
    actor = sent.signed.actor
    try:
        products.revoke_key(visit.ctx, actor, product_id, key_id)
    except Conflict as exc:
        return _page(visit, actor, 409, error=exc.message, failed=product_id)
    return RedirectResponse(f"/products#product-{percent_encode(product_id, safe='')}", 303)


@router.post("/products/{product_id}/{step}")
def product_status(visit: VisitOf, sent: Submitted, product_id: str, step: str) -> Response:
    actor = sent.signed.actor
    if step not in ("suspend", "resume"):
        raise NotFound(f"no step {step!r} for a product; suspend or resume")
    act = products.suspend if step == "suspend" else products.resume
    try:
        act(visit.ctx, actor, product_id, sent.form.get("reason"))
    except (BadRequest, Conflict) as exc:
        return _page(visit, actor, 400, error=exc.message, failed=product_id)
    return RedirectResponse(f"/products#product-{percent_encode(product_id, safe='')}", 303)


@router.get("/data-products")
def public_list(visit: VisitOf) -> Response:
    """Signed out too: the active products by scenario."""
    return page(visit, "products_public.html", scenarios=products.public_listing(visit.ctx))
