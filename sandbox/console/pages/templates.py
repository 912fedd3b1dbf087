"""Analysis templates, for every role on the same pages: an operator submits a template and
runs the versions its departments approved; a department reviews the code and parameters of
the versions that read its data; the bureau and the regulator read.

Each page calls the function the API's route calls, as the signed-in person, so what the API
refuses is refused here, in the same words: beside the form it concerns, with what was typed
kept, or (for what the person may not see) on an error page."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote as percent_encode

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from contracts.errors import ContractError
from operators.errors import OperatorError
from operators.roles import Role
from pricing.errors import PricingError
from sandbox.console.pages.demands import _when
from sandbox.console.render import Visit, VisitOf, page
from sandbox.console.routing import ConsoleRoute, Person, Submitted
from sandbox.errors import BadRequest, Conflict, Forbidden, QuotaExceeded
from sandbox.pipeline import templates as runs
from sandbox.pipeline.submission import RejectedJob
from sandbox.records import listings, templates
from sandbox.records.failures import status_of
from sandbox.records.principals import Actor, require

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

SHOWN = 500
FORM_REFUSALS = (BadRequest, Conflict)
# A run goes through every check a job does: any of their refusals is shown beside its form;
# a fault of the service reaches the error page, as in the API.
RUN_REFUSALS: tuple[type[Exception], ...] = (
    BadRequest,
    Conflict,
    Forbidden,
    QuotaExceeded,
    ContractError,
    OperatorError,
    PricingError,
)
_EXAMPLE_SCHEMA = (
    '{"type": "object",\n "properties": {"district": {"type": "string", '
    '"enum": ["城关区", "湖滨区"]}},\n "required": ["district"]}'
)


def _path(template_id: str) -> str:
    return f"/templates/{percent_encode(template_id, safe='')}"


def _blank() -> dict[str, str]:
    return {"name": "", "description": "", "code": "", "params_schema": ""}


def _list_page(
    visit: Visit,
    actor: Actor,
    status: int = 200,
    *,
    typed: dict[str, str] | None = None,
    error: str = "",
    error_line: int | None = None,
) -> Response:
    rows = templates.listing(visit.ctx, actor, limit=SHOWN)
    awaiting = (
        {t["id"] for t in templates.listing(visit.ctx, actor, awaiting=True, limit=SHOWN)}
        if actor.role == Role.provider
        else set()
    )
    return page(
        visit,
        "templates.html",
        status,
        when=_when,
        templates=rows,
        awaiting=awaiting,
        typed=typed or _blank(),
        example_schema=_EXAMPLE_SCHEMA,
        error=error,
        error_line=error_line,
    )


@router.get("/templates")
def template_list(visit: VisitOf, signed: Person) -> Response:
    return _list_page(visit, signed.actor)


def _schema(text: str) -> Any:
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"params_schema is not JSON: line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None


@router.post("/templates")
def template_submit(visit: VisitOf, sent: Submitted) -> Response:
    actor = sent.signed.actor
    require(actor, Role.operator)
    typed = {k: sent.form.get(k, "") for k in _blank()}
    try:
        body = {**typed, "params_schema": _schema(typed["params_schema"])}
        made = templates.submit(visit.ctx, actor, body)
    except FORM_REFUSALS as exc:
        line = getattr(exc, "line", None)
        return _list_page(
            visit, actor, status_of(exc), typed=typed, error=exc.message, error_line=line
        )
    return RedirectResponse(_path(made["id"]), 303)


def _template_page(
    visit: Visit,
    actor: Actor,
    template_id: str,
    status: int = 200,
    *,
    failed: int | None = None,
    form: dict[str, str] | None = None,
    error: str = "",
    run_form: dict[str, str] | None = None,
    run_error: str = "",
    run_job: str = "",
) -> Response:
    t = templates.get(visit.ctx, actor, template_id)
    contracts = (
        listings.contracts(visit.ctx, actor, "active", limit=SHOWN)
        if actor.role == Role.operator
        else []
    )
    approved = [v for v in t["versions"] if v["status"] == templates.APPROVED]
    params = "{}"
    if approved:
        params = _example_params(approved[0]["params_schema"])
    return page(
        visit,
        "template.html",
        status,
        when=_when,
        tp=t,
        mine=actor.role == Role.operator and t["operator_id"] == actor.id,
        reviewable=[v["version"] for v in t["versions"] if _may_review(actor, v)],
        approved=[v["version"] for v in approved],
        contracts=contracts,
        schema_text=lambda s: json.dumps(s, ensure_ascii=False, indent=2),
        failed=failed,
        form=form or {},
        error=error,
        run_form=run_form or {"contract": "", "version": "", "params": params},
        run_error=run_error,
        run_job=run_job,
    )


def _example_params(schema: dict[str, Any]) -> str:
    """The parameters a run form starts with: each one's default, else its first allowed
    value, else left for the person to fill in."""
    example: dict[str, Any] = {}
    for name, prop in schema.get("properties", {}).items():
        if "default" in prop:
            example[name] = prop["default"]
        elif prop.get("enum"):
            example[name] = prop["enum"][0]
        elif prop.get("type") in ("integer", "number") and "minimum" in prop:
            example[name] = prop["minimum"]
    return json.dumps(example, ensure_ascii=False)


def _may_review(actor: Actor, v: dict[str, Any]) -> bool:
    if actor.role != Role.provider or v["status"] != templates.PENDING:
        return False
    waiting = [r for r in v["reviewers"] if r["id"] == actor.id and r["decision"] is None]
    return bool(waiting)


@router.get("/templates/{template_id}")
def template_one(visit: VisitOf, signed: Person, template_id: str) -> Response:
    return _template_page(visit, signed.actor, template_id)


@router.post("/templates/{template_id}/versions/{version}/review")
def template_review(visit: VisitOf, sent: Submitted, template_id: str, version: int) -> Response:
    actor = sent.signed.actor
    form = {k: sent.form.get(k, "") for k in ("decision", "reason", "conditions")}
    try:
        templates.review(
            visit.ctx,
            actor,
            template_id,
            version,
            form["decision"],
            form["reason"],
            form["conditions"],
        )
    except FORM_REFUSALS as exc:
        return _template_page(
            visit, actor, template_id, status_of(exc), failed=version, form=form, error=exc.message
        )
    return RedirectResponse(f"{_path(template_id)}#version-{version}", 303)


@router.post("/templates/{template_id}/versions/{version}/withdraw")
def template_withdraw(visit: VisitOf, sent: Submitted, template_id: str, version: int) -> Response:
    actor = sent.signed.actor
    try:
        templates.withdraw(visit.ctx, actor, template_id, version)
    except FORM_REFUSALS as exc:
        return _template_page(
            visit, actor, template_id, status_of(exc), failed=version, error=exc.message
        )
    return RedirectResponse(f"{_path(template_id)}#version-{version}", 303)


@router.post("/templates/{template_id}/runs")
def template_run(visit: VisitOf, sent: Submitted, template_id: str) -> Response:
    actor = sent.signed.actor
    require(actor, Role.operator)
    typed = {k: sent.form.get(k, "") for k in ("contract", "version", "params")}
    try:
        params = json.loads(typed["params"] or "{}")
        if not isinstance(params, dict):
            raise BadRequest('params must be a JSON object, like {"district": "城关区"}')
        version = int(typed["version"]) if typed["version"].strip() else None
        job = runs.run(visit.ctx, actor, template_id, typed["contract"], params, version)
    except (json.JSONDecodeError, ValueError) as exc:
        text = f"params are not JSON: {exc}" if isinstance(exc, json.JSONDecodeError) else str(exc)
        return _template_page(visit, actor, template_id, 400, run_form=typed, run_error=text)
    except RejectedJob as exc:
        return _template_page(
            visit, actor, template_id, status_of(exc.cause), run_form=typed, run_error=exc.message,
            run_job=exc.job_id,
        )  # fmt: skip
    except RUN_REFUSALS as exc:
        message = getattr(exc, "message", None) or str(exc)
        return _template_page(
            visit, actor, template_id, status_of(exc), run_form=typed, run_error=message
        )
    return RedirectResponse(f"/jobs/{percent_encode(job['id'], safe='')}", 303)
