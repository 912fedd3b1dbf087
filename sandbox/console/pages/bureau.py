"""The bureau's pages: datasets, principals, prices, contracts to sign, revenue.

Every page calls the function its API route calls, as the signed-in bureau, so the role
checks are the service's own; a page for the bureau refuses anyone else before it reads
anything. A refusal re-renders the form with what was typed and the service's message next
to the field it is about."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import UploadFile

from contracts.errors import ContractError
from operators.errors import OperatorError
from operators.roles import Role
from pricing import (
    UNITS,
    Metered,
    PricingError,
    RowsUse,
    parse_schedule,
    price,
)
from sandbox.catalog.models import LEVELS, ROLES
from sandbox.common import clock
from sandbox.console import charts
from sandbox.console.i18n import translator
from sandbox.console.render import Visit, VisitOf, page
from sandbox.console.routing import ConsoleRoute, Person, Posted, Submitted
from sandbox.errors import Conflict, Forbidden, NotFound, SandboxError
from sandbox.records import agreements, directory, listings, money, principals, register, registry
from sandbox.records.principals import Actor, require

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

# What the service refuses with, from any of its packages: shown to the person, not raised.
REFUSED = (SandboxError, PricingError, ContractError, OperatorError)

# The job a price preview prices: one call scanning 100 000 rows of an L2 dataset for ten
# seconds and releasing one output, under a commercial contract.
TYPICAL = Metered(
    calls=1,
    rows=(RowsUse("typical", "L2", 100_000),),
    compute_seconds=Decimal(10),
    outputs=1,
)
BLANK_COLUMN_ROWS = 4
BLANK_PRICE_ROWS = 2


def _message(exc: Exception) -> str:
    return str(getattr(exc, "message", exc))


def _bureau(actor: Actor) -> Actor:
    """The signed-in person, who must be the bureau (as the API's routes require)."""
    require(actor, Role.bureau)
    return actor


# --- datasets --------------------------------------------------------------------------------


@dataclass
class ColumnRow:
    name: str = ""
    role: str = "attribute"
    lower: str = ""
    upper: str = ""
    error: str = ""


@dataclass
class DatasetForm:
    name: str = ""
    title: str = ""
    provider_id: str = ""
    level: str = "L2"
    columns: list[ColumnRow] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


def _dataset_page(visit: Visit, actor: Actor, form: DatasetForm, status: int = 200) -> Response:
    with visit.ctx.reading() as s:
        datasets = registry.all_datasets(visit.ctx, s)
    people = principals.list_principals(visit.ctx, actor)
    providers = [(p["id"], p["name"]) for p in people if p["role"] == Role.provider]
    names = {p["id"]: p["name"] for p in people}
    rows = form.columns or [ColumnRow() for _ in range(BLANK_COLUMN_ROWS)]
    return page(
        visit,
        "bureau_datasets.html",
        status,
        form=form,
        rows=rows,
        providers=providers,
        names=names,
        datasets=datasets,
        levels=LEVELS,
        roles=ROLES,
    )


@router.get("/admin/datasets")
def datasets(visit: VisitOf, person: Person) -> Response:
    actor = _bureau(person.actor)
    return _dataset_page(visit, actor, DatasetForm())


def _column_rows(lists: dict[str, list[str]]) -> list[ColumnRow]:
    names, roles = lists.get("col_name", []), lists.get("col_role", [])
    lowers, uppers = lists.get("col_lower", []), lists.get("col_upper", [])
    return [
        ColumnRow(n.strip(), r, lo.strip(), up.strip())
        for n, r, lo, up in zip(names, roles, lowers, uppers, strict=False)
        if n.strip()
    ]


def _bound(text: str) -> float | None:
    return float(text) if text else None


def _meta(form: DatasetForm) -> dict[str, Any]:
    """The upload's meta, as POST /v1/datasets takes it; a bound that is not a number is
    marked on its row."""
    columns: dict[str, Any] = {}
    for row in form.columns:
        try:
            policy: dict[str, Any] = {"role": row.role}
            for key, text in (("lower", row.lower), ("upper", row.upper)):
                if text:
                    policy[key] = _bound(text)
        except ValueError:
            row.error = "bounds must be numbers"
            continue
        columns[row.name] = policy
    return {
        "name": form.name,
        "title": form.title,
        "provider_id": form.provider_id,
        "level": form.level,
        "columns": columns,
    }


_META_FIELD = re.compile(r"^dataset meta: (name|title|provider_id|level|columns)(?:\.([^.:]+))?")


def _place_dataset_error(form: DatasetForm, message: str) -> None:
    """Next to the field the service's message is about; else next to the file."""
    found = _META_FIELD.match(message)
    if found and found[1] == "columns" and found[2]:
        for row in form.columns:
            if row.name == found[2]:
                row.error = message
                return
    if found:
        form.errors[found[1]] = message
    elif message.startswith("a dataset named"):
        form.errors["name"] = message
    elif message.startswith("provider_id"):
        form.errors["provider_id"] = message
    elif "column" in message and not form.columns:
        form.errors["columns"] = message
    else:
        form.errors["file"] = message


@router.post("/admin/datasets")
async def register_dataset(request: Request, visit: VisitOf, sent: Submitted) -> Response:
    actor = _bureau(sent.signed.actor)
    form = await request.form()  # the form `Submitted` read, with the file in it
    try:
        return await _register_upload(visit, actor, sent, form.get("file"))
    finally:
        # The upload's spooled file goes as soon as the answer is ready.
        await form.close()


async def _register_upload(visit: Visit, actor: Actor, sent: Posted, upload: Any) -> Response:
    form = DatasetForm(
        sent.form.get("name", "").strip(),
        sent.form.get("title", "").strip(),
        sent.form.get("provider_id", ""),
        sent.form.get("level", ""),
        _column_rows(sent.lists),
    )
    meta = _meta(form)
    if any(row.error for row in form.columns):
        return _dataset_page(visit, actor, form, 400)
    if not isinstance(upload, UploadFile) or not upload.filename:
        form.errors["file"] = "choose a CSV or Parquet file to upload"
        return _dataset_page(visit, actor, form, 400)
    data = await upload.read()
    try:
        info = await run_in_threadpool(
            registry.register, visit.ctx, actor, data, upload.filename, meta
        )
    except REFUSED as exc:
        _place_dataset_error(form, _message(exc))
        return _dataset_page(visit, actor, form, 400)
    return RedirectResponse(f"/catalog/{info.name}", 303)


# --- principals ------------------------------------------------------------------------------


def _principals_page(
    visit: Visit,
    actor: Actor,
    typed: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    row_errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    return page(
        visit,
        "bureau_principals.html",
        status,
        people=principals.list_principals(visit.ctx, actor),
        typed=typed or {},
        errors=errors or {},
        row_errors=row_errors or {},
        roles=[r.value for r in Role],
    )


@router.get("/admin/principals")
def principals_list(visit: VisitOf, person: Person) -> Response:
    return _principals_page(visit, _bureau(person.actor))


_PRINCIPAL_FIELDS = (
    ("role", ("role",)),
    ("public_key", ("public key", "public_key", "ed25519")),
    ("license_valid_to", ("license_valid_to", "licence", "license", "valid")),
    ("name", ("name",)),
)


def _principal_field(message: str) -> str:
    lowered = message.lower()
    for name, words in _PRINCIPAL_FIELDS:
        if any(w in lowered for w in words):
            return name
    return "name"


@router.post("/admin/principals")
def create_principal(visit: VisitOf, sent: Submitted) -> Response:
    actor = _bureau(sent.signed.actor)
    typed = {k: sent.form.get(k, "").strip() for k in _PRINCIPAL_KEYS}
    try:
        created, token = principals.create_principal(
            visit.ctx,
            actor,
            typed["name"],
            typed["role"],
            typed["license_no"] or None,
            typed["public_key"] or None,
            typed["license_valid_to"] or None,
        )
    except REFUSED as exc:
        message = _message(exc)
        errors = {_principal_field(message): message}
        return _principals_page(visit, actor, typed, errors, status=400)
    # The token is shown this once, on this answer only: it is stored hashed.
    return page(
        visit,
        "bureau_principal_created.html",
        201,
        created=created,
        valid_to=clock.text(created.license_valid_to),
        token=token,
    )


_PRINCIPAL_KEYS = ("name", "role", "license_no", "license_valid_to", "public_key")


def _change_status(visit: Visit, sent: Posted, principal_id: str, resume: bool) -> Response:
    actor = _bureau(sent.signed.actor)
    change = principals.resume_principal if resume else principals.suspend_principal
    try:
        change(visit.ctx, actor, principal_id, sent.form.get("reason", ""))
    except REFUSED as exc:
        return _principals_page(
            visit, actor, row_errors={principal_id: _message(exc)}, status=_status_of(exc)
        )
    return RedirectResponse("/admin/principals", 303)


def _status_of(exc: Exception) -> int:
    for cls, status in ((NotFound, 404), (Forbidden, 403), (Conflict, 409)):
        if isinstance(exc, cls):
            return status
    return 400


@router.post("/admin/principals/{principal_id}/suspend")
def suspend(visit: VisitOf, sent: Submitted, principal_id: str) -> Response:
    return _change_status(visit, sent, principal_id, resume=False)


@router.post("/admin/principals/{principal_id}/resume")
def resume(visit: VisitOf, sent: Submitted, principal_id: str) -> Response:
    return _change_status(visit, sent, principal_id, resume=True)


# --- prices and caps -------------------------------------------------------------------------


@dataclass
class PriceRow:
    unit: str = ""
    price: str = ""
    per: str = ""
    level: str = ""
    error: str = ""


@dataclass(frozen=True)
class ItemsForm:
    """A form of priced items: a fee schedule's, or the caps it must stay within. The two
    differ only in where they post, what an item's price is called in JSON, and their words."""

    action: str
    dom_id: str
    field: str  # an item's price in the JSON body: "price" or "max_price"
    words: str  # the prefix of the form's words
    tiers_note: bool = False


SCHEDULE_FORM = ItemsForm("/admin/prices", "price-form", "price", "admin.prices", tiers_note=True)
CAPS_FORM = ItemsForm("/admin/caps", "caps-form", "max_price", "admin.caps")


def _rows_of(body: dict[str, Any] | None, field: str) -> list[PriceRow]:
    """The flat items of a schedule or caps as editable rows (volume tiers, which have no
    single price, are published through the API)."""
    if body is None:
        return []
    return [
        PriceRow(item["unit"], item[field], str(item.get("per") or ""), item.get("level") or "")
        for item in body["items"]
        if item.get(field) is not None
    ]


def _item(row: PriceRow, field: str) -> dict[str, Any]:
    item: dict[str, Any] = {"unit": row.unit, field: row.price}
    if row.per:
        item["per"] = int(row.per) if row.per.isdigit() else row.per
    if row.level:
        item["level"] = row.level
    return item


def _sent_rows(sent: Posted) -> list[PriceRow]:
    """The rows of an items form, those with a unit and a price."""
    lists = sent.lists
    return [
        PriceRow(u, p.strip(), per.strip(), lv)
        for u, p, per, lv in zip(
            lists.get("unit", []),
            lists.get("price", []),
            lists.get("per", []),
            lists.get("level", []),
            strict=False,
        )
        if u and p.strip()
    ]


def _sent_body(sent: Posted, rows: list[PriceRow], form: ItemsForm) -> dict[str, Any]:
    return {
        "name": sent.form.get("name", "").strip(),
        "effective_from": sent.form.get("effective_from", ""),
        "items": [_item(r, form.field) for r in rows],
    }


_ITEM = re.compile(r"items\[(\d+)\]")


def _beside_its_item(rows: list[PriceRow], exc: Exception) -> str:
    """Put a refusal that names an item (`items[N]`) next to that row; what is left for the
    top of the form."""
    message = _message(exc)
    found = _ITEM.search(message)
    if found and int(found[1]) < len(rows):
        rows[int(found[1])].error = message
        return ""
    return message


def _items_page(
    visit: Visit,
    template: str,
    form: ItemsForm,
    rows: list[PriceRow],
    name: str,
    effective_from: str,
    error: str = "",
    status: int = 200,
    published: bool = False,
    **values: Any,
) -> Response:
    return page(
        visit,
        template,
        status,
        form=form,
        rows=[*rows, *(PriceRow() for _ in range(BLANK_PRICE_ROWS))],
        name=name,
        effective_from=effective_from,
        error=error,
        units=UNITS,
        levels=LEVELS,
        published=published,
        **values,
    )


def _preview(body: dict[str, Any]) -> dict[str, Any] | None:
    """What the typical job would cost under `body`, or None when it does not parse."""
    try:
        return price(parse_schedule(body), TYPICAL, "commercial").to_json()
    except PricingError:
        return None


def _prices_page(
    visit: Visit,
    rows: list[PriceRow],
    name: str,
    effective_from: str,
    error: str = "",
    preview: dict[str, Any] | None = None,
    status: int = 200,
    published: bool = False,
) -> Response:
    fees = register.fees(visit.ctx)
    current = fees["schedule"]
    if preview is None and current is not None:
        preview = _preview({k: v for k, v in current.items() if k != "id"})
    return _items_page(
        visit,
        "bureau_prices.html",
        SCHEDULE_FORM,
        rows,
        name,
        effective_from,
        error,
        status,
        published,
        current=current,
        caps=fees["caps"],
        preview=preview,
    )


def _now_text() -> str:
    return clock.text(clock.now())[:19] + "Z"


@router.get("/admin/prices")
def prices(visit: VisitOf, person: Person, published: str = "") -> Response:
    _bureau(person.actor)
    current = register.fees(visit.ctx)["schedule"]
    return _prices_page(
        visit,
        _rows_of(current, SCHEDULE_FORM.field),
        current["name"] if current else "",
        _now_text(),
        published=bool(published),
    )


@router.post("/admin/prices")
def publish_prices(visit: VisitOf, sent: Submitted) -> Response:
    actor = _bureau(sent.signed.actor)
    rows = _sent_rows(sent)
    body = _sent_body(sent, rows, SCHEDULE_FORM)
    try:
        money.publish(visit.ctx, actor, body)
    except REFUSED as exc:
        message = _beside_its_item(rows, exc)
        return _prices_page(
            visit,
            rows,
            body["name"],
            body["effective_from"],
            message,
            _preview(body),
            _status_of(exc),
        )
    return RedirectResponse("/admin/prices?published=1", 303)


@router.get("/admin/caps")
def caps(visit: VisitOf, person: Person, published: str = "") -> Response:
    _bureau(person.actor)
    current = register.fees(visit.ctx)["caps"]
    return _items_page(
        visit,
        "bureau_caps.html",
        CAPS_FORM,
        _rows_of(current, CAPS_FORM.field),
        current["name"] if current else "",
        _now_text(),
        published=bool(published),
        caps=current,
    )


@router.post("/admin/caps")
def publish_caps(visit: VisitOf, sent: Submitted) -> Response:
    """The same as `POST /v1/price-caps`: refused while the schedule in force is above them."""
    actor = _bureau(sent.signed.actor)
    rows = _sent_rows(sent)
    body = _sent_body(sent, rows, CAPS_FORM)
    try:
        money.publish_caps(visit.ctx, actor, body)
    except REFUSED as exc:
        message = _beside_its_item(rows, exc)
        return _items_page(
            visit,
            "bureau_caps.html",
            CAPS_FORM,
            rows,
            body["name"],
            body["effective_from"],
            message,
            _status_of(exc),
            caps=register.fees(visit.ctx)["caps"],
        )
    return RedirectResponse("/admin/caps?published=1", 303)


# --- contracts -------------------------------------------------------------------------------


def _contracts_page(
    visit: Visit,
    actor: Actor,
    errors: dict[str, str] | None = None,
    status: int = 200,
    signed: str = "",
) -> Response:
    waiting = listings.contracts(visit.ctx, actor, status="approved", limit=1000)
    with visit.ctx.reading() as s:
        names = directory.load(s).principals
    return page(
        visit,
        "bureau_contracts.html",
        status,
        contracts=waiting,
        names=names,
        errors=errors or {},
        signed=signed,
    )


@router.get("/admin/contracts")
def contracts(visit: VisitOf, person: Person, signed: str = "") -> Response:
    return _contracts_page(visit, _bureau(person.actor), signed=signed)


@router.post("/admin/contracts/{contract_id}/sign")
def sign(visit: VisitOf, sent: Submitted, contract_id: str) -> Response:
    actor = _bureau(sent.signed.actor)
    try:
        agreements.sign(visit.ctx, actor, contract_id, None)
    except REFUSED as exc:
        return _contracts_page(visit, actor, {contract_id: _message(exc)}, _status_of(exc))
    return RedirectResponse("/admin/contracts?signed=" + contract_id, 303)


# --- revenue ---------------------------------------------------------------------------------


def _revenue_page(
    visit: Visit,
    actor: Actor,
    period: str,
    allowed_error: str = "",
    status: int = 200,
) -> Response:
    report = money.revenue(visit.ctx, actor, period)
    t = translator(visit.lang)
    limit = report["effective_allowed"] or report["allowed_revenue"]
    labels = [
        t("admin.revenue.total"),
        *(r["operator_name"] or r["operator_id"] for r in report["by_operator"]),
    ]
    values: list[float | None] = [
        float(report["revenue"]),
        *(float(r["amount"]) for r in report["by_operator"]),
    ]
    chart = charts.bars(
        labels,
        values,
        title=t("admin.revenue.chart", period=period),
        limit=float(limit) if limit is not None else None,
        limit_label=t("admin.revenue.allowed_line", amount=limit) if limit is not None else "",
    )
    return page(
        visit,
        "bureau_revenue.html",
        status,
        report=report,
        period=period,
        chart=chart,
        allowed_error=allowed_error,
    )


@router.get("/admin/revenue")
def revenue(visit: VisitOf, person: Person, period: str = "") -> Response:
    actor = _bureau(person.actor)
    return _revenue_page(visit, actor, period or money.period_of(clock.now()))


@router.post("/admin/revenue/allowed")
def record_allowed(visit: VisitOf, sent: Submitted) -> Response:
    actor = _bureau(sent.signed.actor)
    period = sent.form.get("period", "")
    try:
        money.record_allowed_revenue(visit.ctx, actor, period, sent.form.get("amount", ""))
    except REFUSED as exc:
        money.month_bounds(period)  # a period that is not a month is refused as a page
        return _revenue_page(visit, actor, period, _message(exc), 400)
    return RedirectResponse(f"/admin/revenue?period={period}", 303)
