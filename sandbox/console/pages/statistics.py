"""The departments' statistics (考核) in the console: a department's own at `/statistics`,
every department's for the bureau at `/admin/statistics` and for the regulator at
`/oversight/statistics`; a month picked on the page, each table also a CSV download. Each
page refuses anyone but its role, then calls the functions the API's routes call as the
signed-in person, so it shows what the API would answer them."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter
from fastapi.responses import Response

from contracts.quota import BEIJING
from operators.roles import Role
from sandbox.common import exports, months
from sandbox.console.charts import bars
from sandbox.console.i18n import translator
from sandbox.console.render import Visit, VisitOf, page
from sandbox.console.routing import ConsoleRoute, Person
from sandbox.errors import NotFound
from sandbox.records import statistics
from sandbox.records.principals import require
from sandbox.records.sessions import Signed

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

# Each role's page, in its own area of the console (the menu's entries in `nav`).
PLACES: dict[Role, str] = {
    Role.provider: "/statistics",
    Role.bureau: "/admin/statistics",
    Role.regulator: "/oversight/statistics",
}


def _page(visit: Visit, signed: Signed, role: Role, month: str) -> Response:
    require(signed.actor, role)
    month = month or months.current()
    by_dataset = statistics.datasets(visit.ctx, signed.actor, month)
    by_department = statistics.departments(visit.ctx, signed.actor, month)
    rows = by_dataset["datasets"]
    t = translator(visit.lang)
    chart = bars(
        [r["title"] or r["dataset"] for r in rows],
        [r["jobs"] for r in rows],
        title=t("statistics.chart", month=month),
    )
    as_of = dt.datetime.fromisoformat(by_dataset["as_of"].replace("Z", "+00:00"))
    return page(
        visit,
        "statistics.html",
        base=PLACES[role],
        month=month,
        as_of=as_of.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M"),
        everyone=role != Role.provider,
        report=by_dataset,
        datasets=rows,
        departments=by_department["departments"],
        chart=chart if any(r["jobs"] for r in rows) else None,
    )


def _download(visit: Visit, signed: Signed, role: Role, kind: str, month: str) -> Response:
    require(signed.actor, role)
    month = month or months.current()
    if kind == "datasets":
        table = statistics.datasets_table(statistics.datasets(visit.ctx, signed.actor, month))
    elif kind == "departments":
        table = statistics.departments_table(statistics.departments(visit.ctx, signed.actor, month))
    else:
        raise NotFound(f"no statistics {kind!r}; download datasets.csv or departments.csv")
    return Response(
        exports.render(table, "csv"),
        media_type=exports.MEDIA_TYPES["csv"],
        headers=exports.attachment(f"statistics-{kind}-{month}.csv"),
    )


@router.get("/statistics")
def provider_page(visit: VisitOf, signed: Person, month: str = "") -> Response:
    return _page(visit, signed, Role.provider, month)


@router.get("/statistics/{kind}.csv")
def provider_csv(visit: VisitOf, signed: Person, kind: str, month: str = "") -> Response:
    return _download(visit, signed, Role.provider, kind, month)


@router.get("/admin/statistics")
def bureau_page(visit: VisitOf, signed: Person, month: str = "") -> Response:
    return _page(visit, signed, Role.bureau, month)


@router.get("/admin/statistics/{kind}.csv")
def bureau_csv(visit: VisitOf, signed: Person, kind: str, month: str = "") -> Response:
    return _download(visit, signed, Role.bureau, kind, month)


@router.get("/oversight/statistics")
def regulator_page(visit: VisitOf, signed: Person, month: str = "") -> Response:
    return _page(visit, signed, Role.regulator, month)


@router.get("/oversight/statistics/{kind}.csv")
def regulator_csv(visit: VisitOf, signed: Person, kind: str, month: str = "") -> Response:
    return _download(visit, signed, Role.regulator, kind, month)
