"""What anyone may see, signed out: the catalog and each dataset's data dictionary (never a
value), the fees in force with their caps, the public register of contracts in force with the
fees charged per month, and the log's latest signed checkpoint.

Each page reads through `sandbox.records.register`, as /v1/public does: the console shows
nobody more than the API would."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from sandbox.console import charts
from sandbox.console.i18n import translator
from sandbox.console.render import VisitOf, page
from sandbox.console.routing import ConsoleRoute
from sandbox.pipeline import dummies
from sandbox.records import register

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)


@router.get("/")
def home(visit: VisitOf) -> Response:
    return RedirectResponse("/catalog", 303)


@router.get("/catalog")
def catalog(
    visit: VisitOf, q: str = "", department: str = "", level: str = "", topic: str = ""
) -> Response:
    found = register.catalog(visit.ctx, q, department, level, topic)
    return page(
        visit,
        "catalog.html",
        datasets=found.datasets,
        departments=found.departments,
        department_choices=sorted(found.departments.items(), key=lambda item: item[1]),
        levels=found.levels,
        topics=found.topics,
        topic=topic,
        q=q,
        department=department,
        level=level,
    )


@router.get("/catalog/{name}")
def dataset(visit: VisitOf, name: str) -> Response:
    info, department = register.dataset(visit.ctx, name)
    # Generated from the dictionary on this page alone, so anyone may see it.
    preview = dummies.preview(info)
    return page(visit, "dataset.html", dataset=info, department=department, dummy=preview)


def _cap_of(caps: dict[str, Any] | None, item: dict[str, Any]) -> dict[str, Any] | None:
    """The cap an item is held to: the one of its unit and level, else its unit's plain one."""
    if caps is None:
        return None
    same_unit: list[dict[str, Any]] = [c for c in caps["items"] if c["unit"] == item["unit"]]
    exact = [c for c in same_unit if c.get("level") == item.get("level")]
    plain = [c for c in same_unit if c.get("level") is None]
    found = exact or plain
    return found[0] if found else None


@router.get("/fees")
def fees(visit: VisitOf) -> Response:
    published = register.fees(visit.ctx)
    schedule, caps = published["schedule"], published["caps"]
    items = [(item, _cap_of(caps, item)) for item in (schedule or {}).get("items", [])]
    return page(visit, "public_fees.html", schedule=schedule, caps=caps, items=items)


@router.get("/register")
def public_register(visit: VisitOf) -> Response:
    published = register.public_register(visit.ctx)
    months = published["fees_by_month"]
    t = translator(visit.lang)
    chart = (
        charts.bars(
            [m["period"] for m in months],
            [float(m["total"]) for m in months],
            title=t("register.chart"),
        )
        if months
        else None
    )
    return page(
        visit,
        "public_register.html",
        contracts=published["contracts"],
        months=months,
        chart=chart,
    )


@router.get("/log")
def ledger(visit: VisitOf, request: Request) -> Response:
    return page(
        visit,
        "public_log.html",
        head=register.checkpoint(visit.ctx),
        base_url=str(request.base_url).rstrip("/"),
    )
