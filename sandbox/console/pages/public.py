"""What anyone may see, signed out: the catalog and each dataset's data dictionary (never a
value)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select

from sandbox.console.render import VisitOf, page
from sandbox.console.routing import ConsoleRoute
from sandbox.records import registry
from sandbox.store.models import Principal

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)


@router.get("/")
def home(visit: VisitOf) -> Response:
    return RedirectResponse("/catalog", 303)


@router.get("/catalog")
def catalog(visit: VisitOf, q: str = "", department: str = "", level: str = "") -> Response:
    with visit.ctx.reading() as s:
        datasets = registry.all_datasets(visit.ctx, s)
        departments = {p: n for p, n in s.execute(select(Principal.id, Principal.name))}
    needle = q.strip().lower()
    shown = [
        d
        for d in datasets
        if (not needle or needle in d.name.lower() or needle in d.title.lower())
        and (not department or d.provider_id == department)
        and (not level or d.level == level)
    ]
    used = sorted({d.provider_id for d in datasets}, key=lambda p: departments.get(p, p))
    return page(
        visit,
        "catalog.html",
        datasets=shown,
        departments=departments,
        department_choices=[(p, departments.get(p, p)) for p in used],
        levels=sorted({d.level for d in datasets}),
        q=q,
        department=department,
        level=level,
    )


@router.get("/catalog/{name}")
def dataset(visit: VisitOf, name: str) -> Response:
    with visit.ctx.reading() as s:
        info = registry.get(visit.ctx, s, name)
        provider = s.get(Principal, info.provider_id)
    return page(visit, "dataset.html", dataset=info, department=provider.name if provider else "")
