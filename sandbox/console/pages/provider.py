"""A department's pages: the contract requests that touch its datasets (approve, or refuse with
a reason) and how its datasets are used. Each calls the function the API's route calls, as
the signed-in department, so what the API refuses is refused here too."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from operators.roles import Role
from sandbox.console.charts import bars
from sandbox.console.i18n import translator
from sandbox.console.render import Visit, VisitOf, page
from sandbox.console.routing import ConsoleRoute, Person, Submitted
from sandbox.errors import SandboxError
from sandbox.records import agreements, directory, listings, provision
from sandbox.records.principals import Actor, require

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

# Newest requests are few; a department with more pages through the API.
SHOWN = 500


def _requests(visit: Visit, actor: Actor) -> list[dict[str, Any]]:
    """The contracts the department is asked to approve, waiting ones first, each with the
    terms of the version its decision acts on (an amendment in progress, else the current)."""
    rows = listings.contracts(visit.ctx, actor, limit=SHOWN)
    with visit.ctx.reading() as s:
        names = directory.load(s)
    shown = []
    for row in rows:
        terms = row
        if row["amendment"]:
            terms = agreements.get_version(visit.ctx, actor, row["id"], row["amendment"]["version"])
        waiting = (
            terms["status"] == "pending_approval" and actor.id not in terms["approvals"]["given"]
        )
        doc = terms["document"]
        shown.append(
            {
                "id": row["id"],
                "version": terms["version"],
                "status": terms["status"],
                "status_reason": terms["status_reason"],
                "waiting": waiting,
                "operator": names.name(doc.get("operator_id")) or doc.get("operator_id"),
                "purpose": doc.get("purpose", ""),
                "purpose_class": doc.get("purpose_class", ""),
                "valid_from": doc.get("valid_from", ""),
                "valid_to": doc.get("valid_to", ""),
                "columns": _columns(doc, actor, names),
                "approved": actor.id in terms["approvals"]["given"],
            }
        )
    return sorted(shown, key=lambda r: not r["waiting"])


def _columns(doc: dict[str, Any], actor: Actor, names: directory.Directory) -> list[dict[str, Any]]:
    """Every column the contract grants, with its uses; the department's own datasets marked."""
    return [
        {
            "dataset": dataset,
            "title": names.dataset_title(dataset) or "",
            "mine": names.datasets.get(dataset, ("", ""))[1] == actor.id,
            "column": column,
            "uses": list(uses),
        }
        for dataset, columns in sorted(doc.get("datasets", {}).items())
        for column, uses in sorted(columns.items())
    ]


def _queue(
    visit: Visit,
    actor: Actor,
    status: int = 200,
    failed: str = "",
    reason: str = "",
    error: str = "",
) -> Response:
    return page(
        visit,
        "provider_requests.html",
        status,
        requests=_requests(visit, actor),
        failed=failed,
        reason=reason,
        error=error,
    )


@router.get("/requests")
def requests(visit: VisitOf, signed: Person) -> Response:
    require(signed.actor, Role.provider)
    return _queue(visit, signed.actor)


@router.post("/requests/{contract_id}/approve")
def approve(visit: VisitOf, contract_id: str, sent: Submitted) -> Response:
    try:
        agreements.approve(visit.ctx, sent.signed.actor, contract_id)
    except SandboxError as exc:
        return _refused(visit, sent.signed.actor, contract_id, "", exc)
    return RedirectResponse(f"/requests#c-{contract_id}", 303)


@router.post("/requests/{contract_id}/refuse")
def refuse(visit: VisitOf, contract_id: str, sent: Submitted) -> Response:
    reason = sent.form.get("reason", "")
    try:
        agreements.refuse(visit.ctx, sent.signed.actor, contract_id, reason)
    except SandboxError as exc:
        return _refused(visit, sent.signed.actor, contract_id, reason, exc)
    return RedirectResponse(f"/requests#c-{contract_id}", 303)


def _refused(
    visit: Visit, actor: Actor, contract_id: str, reason: str, exc: SandboxError
) -> Response:
    """The queue again with the service's message beside the contract's form; a contract the
    department may not see is answered as the API answers it (an error page, nothing shown)."""
    if not any(r["id"] == contract_id for r in _requests(visit, actor)):
        raise exc
    return _queue(visit, actor, 400, contract_id, reason, exc.message)


@router.get("/usage")
def usage(visit: VisitOf, signed: Person) -> Response:
    actor = signed.actor
    rows = provision.dataset_usage(visit.ctx, actor)
    contracts = listings.contracts(visit.ctx, actor, limit=SHOWN)
    with visit.ctx.reading() as s:
        names = directory.load(s)
    mine = sorted(n for n, (_, provider) in names.datasets.items() if provider == actor.id)
    using = {
        name: [
            {
                "id": c["id"],
                "status": c["status"],
                "operator": names.name(c["document"].get("operator_id")) or "",
            }
            for c in contracts
            if name in c["document"].get("datasets", {})
        ]
        for name in mine
    }
    t = translator(visit.lang)
    charts = {
        name: bars(
            [u["period"] for u in rows if u["dataset"] == name][::-1],
            [u["rows"] for u in rows if u["dataset"] == name][::-1],
            title=t("provider.chart", dataset=name),
        )
        for name in mine
        if any(u["dataset"] == name for u in rows)
    }
    return page(
        visit,
        "provider_usage.html",
        datasets=[(n, names.dataset_title(n) or n) for n in mine],
        usage=rows,
        using=using,
        charts=charts,
    )
