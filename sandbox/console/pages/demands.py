"""Demand lists and objections, for every role on the same pages: an operator raises demands
and follows them, and objects to a dataset's quality (from the dataset's page) or to a
refusal (from the job's page); a department answers the demands routed to it and the
objections about its datasets; the bureau routes and answers; the regulator reads.

Each page calls the function the API's route calls, as the signed-in person, so what the API
refuses is refused here, in the same words: beside the form it concerns, with what was typed
kept, or (for what the person may not see) on an error page."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from urllib.parse import quote as percent_encode

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from contracts.quota import BEIJING
from operators.roles import Role
from sandbox.console.render import Visit, VisitOf, page
from sandbox.console.routing import ConsoleRoute, Person, Submitted
from sandbox.errors import BadRequest, Conflict, SandboxError
from sandbox.records import demands, directory, jobs, objections, registry
from sandbox.records.failures import status_of
from sandbox.records.principals import Actor, require

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

SHOWN = 500
# Refusals shown beside the form, what was typed kept; any other (a role that never takes the
# step, something the person may not see) is an error page, as the API answers it.
FORM_REFUSALS = (BadRequest, Conflict)


def _when(moment: str | None) -> str:
    """A stored moment as the bureau's calendar shows it: Beijing time, to the minute."""
    if not moment:
        return ""
    at = dt.datetime.fromisoformat(moment.replace("Z", "+00:00"))
    return at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M")


def _names(visit: Visit) -> directory.Directory:
    with visit.ctx.reading() as s:
        return directory.load(s)


# --- demands ----------------------------------------------------------------------------------


def _blank(dataset: str = "") -> dict[str, str]:
    return {"title": "", "description": "", "purpose": "", "dataset": dataset, "columns": ""}


def _demands_page(
    visit: Visit,
    actor: Actor,
    status: int = 200,
    *,
    picked: str = "",
    typed: dict[str, str] | None = None,
    raise_error: str = "",
    failed: str = "",
    form: dict[str, str] | None = None,
    error: str = "",
    only: dict[str, Any] | None = None,
) -> Response:
    """The list (or, with `only`, one demand) with the forms the person's role may use; a
    refusal is shown beside the form it concerns (`failed`: the demand's id)."""
    rows = [only] if only else demands.listing(visit.ctx, actor, picked or None, SHOWN)
    names = _names(visit)
    return page(
        visit,
        "demands.html",
        status,
        when=_when,
        demands=rows,
        single=only is not None,
        statuses=demands.STATUSES,
        answers=demands.ANSWERS,
        final=demands.FINAL,
        picked=picked,
        typed=typed or _blank(),
        raise_error=raise_error,
        raise_field=_field_of(raise_error, tuple(_blank())),
        datasets=sorted((n, title) for n, (title, _) in names.datasets.items()),
        providers=demands.providers(visit.ctx, actor) if actor.role == Role.bureau else [],
        failed=failed,
        form=form or {},
        error=error,
    )


def _field_of(message: str, fields: tuple[str, ...]) -> str:
    """The form field a refusal is about: the first it names, at the start of a word."""
    named = [(m.start(), f) for f in fields if (m := re.search(rf"\b{f}\b", message))]
    return min(named)[1] if named else ""


@router.get("/demands")
def demand_list(visit: VisitOf, signed: Person, status: str = "", dataset: str = "") -> Response:
    actor = signed.actor
    if status and status not in demands.STATUSES:
        status = ""
    return _demands_page(visit, actor, picked=status, typed=_blank(dataset))


@router.post("/demands")
def demand_raise(visit: VisitOf, sent: Submitted) -> Response:
    actor = sent.signed.actor
    require(actor, Role.operator)
    typed = {k: sent.form.get(k, "") for k in _blank()}
    body = {**typed, "dataset": typed["dataset"] or None, "columns": typed["columns"] or None}
    try:
        made = demands.raise_demand(visit.ctx, actor, body)
    except FORM_REFUSALS as exc:
        return _demands_page(visit, actor, 400, typed=typed, raise_error=exc.message)
    return RedirectResponse(f"/demands#demand-{percent_encode(made['id'], safe='')}", 303)


@router.get("/demands/{demand_id}")
def demand_one(visit: VisitOf, signed: Person, demand_id: str) -> Response:
    actor = signed.actor
    return _demands_page(visit, actor, only=demands.get(visit.ctx, actor, demand_id))


def _demand_refused(
    visit: Visit, actor: Actor, demand_id: str, form: dict[str, str], exc: SandboxError
) -> Response:
    """The demand's page again with the message beside its form; a demand the person may not
    see is answered as the API answers it (an error page, nothing shown)."""
    if not isinstance(exc, FORM_REFUSALS):
        raise exc  # a role that never takes this step: refused as the API refuses it
    shown = demands.get(visit.ctx, actor, demand_id)
    return _demands_page(
        visit, actor, status_of(exc), failed=demand_id, form=form, error=exc.message, only=shown
    )


@router.post("/demands/{demand_id}/route")
def demand_route(visit: VisitOf, sent: Submitted, demand_id: str) -> Response:
    actor = sent.signed.actor
    form = {k: sent.form.get(k, "") for k in ("provider_id", "note")}
    try:
        demands.route(visit.ctx, actor, demand_id, form["provider_id"], form["note"])
    except SandboxError as exc:
        return _demand_refused(visit, actor, demand_id, form, exc)
    return RedirectResponse(f"/demands/{percent_encode(demand_id, safe='')}", 303)


@router.post("/demands/{demand_id}/answer")
def demand_answer(visit: VisitOf, sent: Submitted, demand_id: str) -> Response:
    actor = sent.signed.actor
    form = {k: sent.form.get(k, "") for k in ("status", "answer", "answer_dataset")}
    try:
        demands.answer(
            visit.ctx,
            actor,
            demand_id,
            form["status"],
            form["answer"],
            form["answer_dataset"] or None,
        )
    except SandboxError as exc:
        return _demand_refused(visit, actor, demand_id, form, exc)
    return RedirectResponse(f"/demands/{percent_encode(demand_id, safe='')}", 303)


# --- objections -------------------------------------------------------------------------------


@router.get("/objections")
def objection_list(visit: VisitOf, signed: Person, status: str = "") -> Response:
    actor = signed.actor
    if status and status not in objections.STATUSES:
        status = ""
    rows = objections.listing(visit.ctx, actor, status or None, limit=SHOWN)
    return page(
        visit,
        "objections.html",
        when=_when,
        objections=rows,
        statuses=objections.STATUSES,
        picked=status,
        answerable=[o["id"] for o in rows if _may_answer(actor, o)],
    )


def _may_answer(actor: Actor, o: dict[str, Any]) -> bool:
    if o["status"] != objections.OPEN:
        return False
    if actor.role == Role.bureau:
        return True
    return actor.role == Role.provider and o["owner_id"] == actor.id


def _about(visit: Visit, actor: Actor, dataset: str, job: str) -> dict[str, Any]:
    """What a new objection is about: a dataset (with its versions) or one of the operator's
    jobs (with whether it was refused at all); the API's refusals for anything else."""
    if job:
        require(actor, Role.operator)
        view = jobs.get(visit.ctx, actor, job)
        refused = objections.was_refused(view["status"], view["disclosure"])
        return {"kind": objections.REFUSAL, "job": view, "dataset": None, "refused": refused}
    if not dataset:
        raise BadRequest(
            "an objection is raised from a dataset's page (its quality) or from a job's page "
            "(its refusal): open one of those and follow its link"
        )
    with visit.ctx.reading() as s:
        info = registry.get(visit.ctx, s, dataset)
    return {"kind": objections.QUALITY, "job": None, "dataset": info, "refused": False}


def _new_objection_page(
    visit: Visit, about: dict[str, Any], typed: dict[str, str], status: int = 200, error: str = ""
) -> Response:
    return page(visit, "objection_new.html", status, about=about, typed=typed, error=error)


@router.get("/objections/new")
def objection_form(visit: VisitOf, signed: Person, dataset: str = "", job: str = "") -> Response:
    actor = signed.actor
    require(actor, Role.operator, Role.provider)
    about = _about(visit, actor, dataset, job)
    return _new_objection_page(visit, about, {"text": "", "version": ""})


@router.post("/objections/new")
def objection_raise(visit: VisitOf, sent: Submitted) -> Response:
    actor = sent.signed.actor
    require(actor, Role.operator, Role.provider)
    dataset, job = sent.form.get("dataset", ""), sent.form.get("job", "")
    about = _about(visit, actor, dataset, job)
    typed = {"text": sent.form.get("text", ""), "version": sent.form.get("version", "").strip()}
    body: dict[str, Any] = {"kind": about["kind"], "text": typed["text"]}
    if job:
        body["job_id"] = job
    else:
        body["dataset"] = dataset
    try:
        if typed["version"] and not job:
            if not typed["version"].isdigit():
                raise BadRequest(
                    f"version must be a whole number, like 1; not {typed['version']!r}"
                )
            body["version"] = int(typed["version"])
        made = objections.raise_objection(visit.ctx, actor, body)
    except FORM_REFUSALS as exc:
        return _new_objection_page(visit, about, typed, status_of(exc), exc.message)
    return RedirectResponse(f"/objections/{percent_encode(made['id'], safe='')}", 303)


def _objection_page(
    visit: Visit,
    actor: Actor,
    objection_id: str,
    status: int = 200,
    answer: str = "",
    error: str = "",
) -> Response:
    o = objections.get(visit.ctx, actor, objection_id)
    return page(
        visit,
        "objection.html",
        status,
        when=_when,
        o=o,
        may_answer=_may_answer(actor, o),
        answer=answer,
        error=error,
    )


@router.get("/objections/{objection_id}")
def objection_one(visit: VisitOf, signed: Person, objection_id: str) -> Response:
    return _objection_page(visit, signed.actor, objection_id)


@router.post("/objections/{objection_id}/answer")
def objection_answer(visit: VisitOf, sent: Submitted, objection_id: str) -> Response:
    actor = sent.signed.actor
    text = sent.form.get("answer", "")
    try:
        objections.answer(visit.ctx, actor, objection_id, text)
    except FORM_REFUSALS as exc:
        return _objection_page(visit, actor, objection_id, status_of(exc), text, exc.message)
    return RedirectResponse(f"/objections/{percent_encode(objection_id, safe='')}", 303)
