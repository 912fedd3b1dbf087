"""The operator's pages: applying for a contract from a dataset, the contracts and signing
them, writing and running jobs, their released tables and downloads, the bill and the privacy
budgets.

Every page calls the service function its API route calls, with the signed-in person as the
actor: what the API refuses (another operator's contract or job, a wrong role) is refused
here in the same words."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any
from urllib.parse import quote as percent_encode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from contracts.document import PURPOSE_CLASSES, USES
from contracts.errors import ContractError
from contracts.quota import BEIJING
from operators.errors import OperatorError
from operators.roles import Role
from operators.submission import SUBMISSION_DOMAIN
from operators.suite import Suite
from pricing.errors import PricingError
from sandbox.common import clock, exports
from sandbox.console import charts
from sandbox.console.i18n import translator
from sandbox.console.render import Visit, VisitOf, page
from sandbox.console.routing import ConsoleRoute, Person, Posted, Submitted
from sandbox.errors import NotFound, SandboxError
from sandbox.pipeline import submission
from sandbox.records import agreements, directory, jobs, listings, money, objections, registry
from sandbox.records.principals import Actor, require

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

# Fields of the application form a refusal can be shown next to.
APPLICATION_FIELDS = ("purpose_class", "valid_from", "valid_to", "spend_cap", "purpose")
# The term starts and ends at midnight in Beijing, the bureau's calendar.
BEIJING_MIDNIGHT = "T00:00:00+08:00"
DOWNLOADS = ("csv", "json", "xlsx", "parquet")
RUNNING = ("queued", "running")
# Jobs in the listing, newest first; the API pages through all of them.
SHOWN = 200


def _operator(visit: Visit, signed: Any) -> Actor:
    actor: Actor = signed.actor
    require(actor, Role.operator)
    return actor


# What the service refuses with a reason for the person: shown on the form, which keeps what
# they typed (the API answers these in its error envelope).
REFUSALS: tuple[type[Exception], ...] = (SandboxError, ContractError, OperatorError, PricingError)


def _beijing(moment: str) -> str:
    """A stored UTC moment as the bureau's calendar shows it (a term typed as 2026-01-01
    starts then, not on 2025-12-31 at 16:00 UTC)."""
    at = dt.datetime.fromisoformat(moment.replace("Z", "+00:00"))
    return at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M")


def _message(exc: Exception) -> str:
    return getattr(exc, "message", None) or str(exc)


# --- applying for a contract ---------------------------------------------------------------


def _blank_application(dataset: str) -> dict[str, Any]:
    return {
        "dataset": dataset,
        "uses": {},
        "purpose": "",
        "purpose_class": "public_interest",
        "valid_from": "",
        "valid_to": "",
        "spend_cap": "",
    }


def _typed_application(form: Posted) -> dict[str, Any]:
    uses = {
        key.removeprefix("use."): [u for u in values if u in USES]
        for key, values in form.lists.items()
        if key.startswith("use.")
    }
    return {
        "dataset": form.form.get("dataset", ""),
        "uses": {column: chosen for column, chosen in uses.items() if chosen},
        "purpose": form.form.get("purpose", ""),
        "purpose_class": form.form.get("purpose_class", ""),
        "valid_from": form.form.get("valid_from", ""),
        "valid_to": form.form.get("valid_to", ""),
        "spend_cap": form.form.get("spend_cap", "").strip(),
    }


def _moment(day: str) -> str:
    # A date from <input type=date>; anything else goes to the service as typed, to be refused.
    return day + BEIJING_MIDNIGHT if len(day) == 10 else day


def _application_body(typed: dict[str, Any]) -> dict[str, Any]:
    return {
        "datasets": {typed["dataset"]: typed["uses"]},
        "purpose": typed["purpose"],
        "purpose_class": typed["purpose_class"],
        "valid_from": _moment(typed["valid_from"]),
        "valid_to": _moment(typed["valid_to"]),
        "spend_cap": typed["spend_cap"] or None,
    }


def _field_of(message: str) -> str:
    """The form field a refusal is about: the first it names ("valid_to … is not after
    valid_from" is about valid_to); the column grid when it names none of them."""
    named = [(message.find(f), -len(f), f) for f in APPLICATION_FIELDS if f in message]
    return min(named)[2] if named else "datasets"


def _application_page(
    visit: Visit, typed: dict[str, Any], status: int = 200, error: tuple[str, str] | None = None
) -> Response:
    with visit.ctx.reading() as s:
        info = registry.get(visit.ctx, s, typed["dataset"])
    return page(
        visit,
        "operator_apply.html",
        status,
        dataset=info,
        typed=typed,
        uses=USES,
        purpose_classes=PURPOSE_CLASSES,
        error_field=error[0] if error else None,
        error=error[1] if error else None,
    )


@router.get("/contracts/new")
def application_form(visit: VisitOf, signed: Person, dataset: str = "") -> Response:
    _operator(visit, signed)
    return _application_page(visit, _blank_application(dataset))


@router.post("/contracts/new")
def apply(visit: VisitOf, sent: Submitted) -> Response:
    actor = _operator(visit, sent.signed)
    typed = _typed_application(sent)
    try:
        made = agreements.apply(visit.ctx, actor, _application_body(typed))
    except REFUSALS as exc:
        message = _message(exc)
        return _application_page(visit, typed, 400, (_field_of(message), message))
    return RedirectResponse(f"/contracts/{percent_encode(made['id'], safe='')}", 303)


# --- contracts -----------------------------------------------------------------------------


@router.get("/contracts")
def contracts(visit: VisitOf, signed: Person) -> Response:
    actor = _operator(visit, signed)
    rows = listings.contracts(visit.ctx, actor)
    return page(visit, "operator_contracts.html", contracts=list(reversed(rows)), beijing=_beijing)


def _to_sign(visit: Visit, actor: Actor, view: dict[str, Any]) -> dict[str, Any] | None:
    """The version awaiting the operator's signature (an amendment in progress, else the
    contract itself), or None when nothing waits for it."""
    if view["amendment"]:
        waiting = agreements.get_version(visit.ctx, actor, view["id"], view["amendment"]["version"])
    else:
        waiting = view
    return waiting if waiting["status"] == "signed_by_bureau" else None


def _contract_page(
    visit: Visit, actor: Actor, contract_id: str, status: int = 200, error: str | None = None
) -> Response:
    view = agreements.get(visit.ctx, actor, contract_id)
    with visit.ctx.reading() as s:
        names = directory.load(s)
    return page(
        visit,
        "operator_contract.html",
        status,
        contract=view,
        names=names,
        beijing=_beijing,
        to_sign=_to_sign(visit, actor, view),
        error=error,
    )


@router.get("/contracts/{contract_id}")
def contract(visit: VisitOf, signed: Person, contract_id: str) -> Response:
    return _contract_page(visit, _operator(visit, signed), contract_id)


@router.post("/contracts/{contract_id}/sign")
def sign(visit: VisitOf, sent: Submitted, contract_id: str) -> Response:
    """Takes the operator's signature, made where the private key is (the page's script or
    the operator's own tools): the key never reaches the service."""
    actor = _operator(visit, sent.signed)
    signature = sent.form.get("signature", "").strip()
    try:
        agreements.sign(visit.ctx, actor, contract_id, signature or None)
    except REFUSALS as exc:
        return _contract_page(visit, actor, contract_id, 400, _message(exc))
    return RedirectResponse(f"/contracts/{percent_encode(contract_id, safe='')}", 303)


# --- writing and running jobs --------------------------------------------------------------


def _editor_page(
    visit: Visit,
    actor: Actor,
    typed: dict[str, str],
    status: int = 200,
    **found: Any,
) -> Response:
    view = agreements.get(visit.ctx, actor, typed["contract"])
    values: dict[str, Any] = {"error": None, "error_line": None, "params_error": None}
    values |= {"quote": None, "sign_error": None, **found}
    # WebCrypto signs with Ed25519 only: an SM2 operator signs with the CLI.
    signing = {
        # As base64: the domain ends in a line break, which an attribute need not keep.
        "domain": base64.b64encode(SUBMISSION_DOMAIN).decode("ascii"),
        "in_browser": visit.ctx.suite is Suite.international,
    }
    return page(
        visit, "operator_editor.html", status, contract=view, typed=typed, signing=signing, **values
    )


@router.get("/jobs/new")
def editor(visit: VisitOf, signed: Person, contract: str = "") -> Response:
    actor = _operator(visit, signed)
    if not contract:
        # A job runs under a contract: choose one first.
        return RedirectResponse("/contracts", 303)
    typed = {"contract": contract, "code": "", "params": "{}"}
    return _editor_page(visit, actor, typed)


def _request(
    typed: dict[str, str], params: dict[str, Any], signed: dict[str, str | None] | None = None
) -> submission.JobRequest:
    return submission.JobRequest(
        contract_id=typed["contract"], code=typed["code"], params=params, **(signed or {})
    )


def _typed(text: str) -> str:
    """A text area's value as it was typed: browsers send its line breaks as CRLF, and the
    page's script signs (and the CLI sends) the code with LF."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _signed(form: Any) -> dict[str, str | None]:
    """The signature the page's script made from the operator's key file, if any."""
    fields = {k: (form.get(k) or "").strip() or None for k in ("signature", "signed_at")}
    return fields if fields["signature"] else {}


def _params(text: str) -> dict[str, Any]:
    """The params typed as JSON: an object, or a ValueError saying what is wrong."""
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise ValueError(f"line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    if not isinstance(value, dict):
        raise ValueError('params must be a JSON object, like {"year": 2026}')
    return value


def _line_of(exc: BaseException) -> int | None:
    # A refused run wraps the compile error that carries the line.
    line = getattr(exc, "line", None) or getattr(getattr(exc, "cause", None), "line", None)
    return line if isinstance(line, int) else None


@router.post("/jobs/new")
def submit(visit: VisitOf, sent: Submitted) -> Response:
    actor = _operator(visit, sent.signed)
    typed = {k: _typed(sent.form.get(k, "")) for k in ("contract", "code", "params")}
    quoting = sent.form.get("action") == "quote"
    signed = {} if quoting else _signed(sent.form)
    try:
        req = _request(typed, _params(typed["params"]), signed)
    except (ValueError, ValidationError) as exc:
        return _editor_page(visit, actor, typed, 400, params_error=_validation_text(exc))
    try:
        if quoting:
            return _editor_page(visit, actor, typed, quote=submission.quote(visit.ctx, actor, req))
        job = submission.submit(visit.ctx, actor, req)
    except OperatorError as exc:
        # Only a signature brings the operators package's refusals here: shown by the key.
        return _editor_page(visit, actor, typed, 400, sign_error=_message(exc))
    except REFUSALS as exc:
        return _editor_page(visit, actor, typed, 400, error=_message(exc), error_line=_line_of(exc))
    return RedirectResponse(f"/jobs/{percent_encode(job['id'], safe='')}", 303)


def _validation_text(exc: ValueError | ValidationError) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(str(e.get("msg", "")) for e in exc.errors())
    return str(exc)


@router.get("/jobs")
def job_list(visit: VisitOf, signed: Person) -> Response:
    actor = _operator(visit, signed)
    rows = listings.jobs(visit.ctx, actor, limit=SHOWN, newest_first=True)
    return page(visit, "operator_jobs.html", jobs=rows, shown=SHOWN)


def _numeric(column: dict[str, Any]) -> bool:
    return str(column["type"]).startswith(("int", "uint", "float", "double", "decimal"))


def _chart(visit: Visit, name: str, body: dict[str, Any], chosen: str | None) -> dict[str, Any]:
    """A bar chart of a table with one key column and a numeric one (the chosen, else the
    first); None in `svg` when the table has no such shape."""
    if body.get("kind") != "table":
        return {"svg": None, "numbers": [], "chosen": None}
    columns = body["columns"]
    keys = [i for i, c in enumerate(columns) if not _numeric(c)]
    numbers = [c["name"] for c in columns if _numeric(c)]
    if len(keys) != 1 or not numbers:
        return {"svg": None, "numbers": [], "chosen": None}
    value = chosen if chosen in numbers else numbers[0]
    at = next(i for i, c in enumerate(columns) if c["name"] == value)
    hidden = {(i, c) for i, c in body.get("suppressed", [])}
    # Totals (with_totals()) would dwarf the cells they add up: the chart shows the cells.
    margins = set(body.get("margins", []))
    rows = [(i, row) for i, row in enumerate(body["rows"]) if i not in margins]
    labels = [str(row[keys[0]]) for _, row in rows]
    values = [None if (i, value) in hidden else row[at] for i, row in rows]
    t = translator(visit.lang)
    title = t("operator.job.chart_of", name=name, column=value)
    return {"svg": charts.bars(labels, values, title=title), "numbers": numbers, "chosen": value}


def _table(body: dict[str, Any], total: str = "") -> dict[str, Any]:
    """Rows of cells, each with its text and whether disclosure control suppressed it; a
    total row (with_totals()) says `total` in the keys it adds up over."""
    if body.get("kind") != "table":
        return {"columns": [], "rows": []}
    names = [c["name"] for c in body["columns"]]
    keys = {c["name"] for c in body["columns"] if not _numeric(c)}
    hidden = {(i, c) for i, c in body.get("suppressed", [])}
    margins = set(body.get("margins", []))

    def text(i: int, name: str, v: Any) -> Any:
        if v is None:
            return total if i in margins and name in keys else ""
        return v

    rows = [
        [{"text": text(i, n, v), "hidden": (i, n) in hidden} for n, v in zip(names, row)]
        for i, row in enumerate(body["rows"])
    ]
    return {"columns": names, "rows": rows, "margins": sorted(margins)}


@router.get("/jobs/{job_id}")
def job(visit: VisitOf, signed: Person, request: Request, job_id: str) -> Response:
    actor = _operator(visit, signed)
    view = jobs.get(visit.ctx, actor, job_id)
    outputs = [
        {
            "name": name,
            "body": body,
            "table": _table(body, translator(visit.lang)("operator.job.total")),
            "chart": _chart(visit, name, body, request.query_params.get(f"chart.{name}")),
        }
        for name, body in view["outputs"].items()
    ]
    report = json.dumps(view["disclosure"], ensure_ascii=False, indent=2, sort_keys=True)
    return page(
        visit,
        "operator_job.html",
        job=view,
        outputs=outputs,
        report=report,
        running=view["status"] in RUNNING,
        downloads=DOWNLOADS,
        objectable=objections.was_refused(view["status"], view["disclosure"]),
    )


@router.get("/jobs/{job_id}/outputs/{name}.{fmt}")
def download(visit: VisitOf, signed: Person, job_id: str, name: str, fmt: str) -> Response:
    """One released output as a file, as `GET /v1/jobs/{id}/outputs/{name}?format=` gives it."""
    actor = _operator(visit, signed)
    if fmt not in DOWNLOADS:
        raise NotFound(f"no download as {fmt!r}; choose one of {', '.join(DOWNLOADS)}")
    body = jobs.output(visit.ctx, actor, job_id, name)
    if fmt == "json":
        # The body `GET /v1/jobs/{id}/outputs/{name}` answers, as a file.
        return Response(
            json.dumps(body, ensure_ascii=False, indent=2).encode("utf-8"),
            media_type="application/json",
            headers=exports.attachment(f"{name}.json"),
        )
    if fmt == "parquet":
        return Response(
            jobs.output_parquet(body),
            media_type="application/vnd.apache.parquet",
            headers=exports.attachment(f"{name}.parquet"),
        )
    return Response(
        exports.render(jobs.output_table(name, body), fmt),
        media_type=exports.MEDIA_TYPES[fmt],
        headers=exports.attachment(f"{name}.{fmt}"),
    )


# --- the bill and the privacy budgets ------------------------------------------------------


@router.get("/bills")
def bills(visit: VisitOf, signed: Person, period: str = "") -> Response:
    actor = _operator(visit, signed)
    month = period or money.period_of(clock.now())
    statement = money.bills(visit.ctx, actor, month)
    budgets = [
        {"contract": row, **agreements.budget(visit.ctx, actor, row["id"])}
        for row in listings.contracts(visit.ctx, actor)
    ]
    return page(visit, "operator_bills.html", statement=statement, budgets=budgets, period=month)


@router.get("/bills/{period}.{fmt}")
def bill_file(visit: VisitOf, signed: Person, period: str, fmt: str) -> Response:
    """The month's statement as a spreadsheet, as `GET /v1/bills?period=&format=` gives it."""
    actor = _operator(visit, signed)
    if fmt not in ("csv", "xlsx"):
        raise NotFound(f"no statement as {fmt!r}; choose csv or xlsx")
    statement = money.bills(visit.ctx, actor, period)
    return Response(
        exports.render(money.statement_table(visit.ctx, statement), fmt),
        media_type=exports.MEDIA_TYPES[fmt],
        headers=exports.attachment(f"statement-{period}.{fmt}"),
    )
