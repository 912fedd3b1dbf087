"""A dataset's life, for the bureau and the department that owns it: its versions, a new
version uploaded, the quality of each version, and the rules every version is checked against.

Every page calls the function its API route calls, as the signed-in person, so the checks are
the service's own (the bureau, or the owning department; anyone else is refused before
anything is read). A refusal re-renders the page with the service's message beside the form."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import UploadFile

from operators.roles import Role
from sandbox.console.render import Visit, VisitOf, page
from sandbox.console.routing import ConsoleRoute, Person, Submitted
from sandbox.errors import Forbidden, SandboxError
from sandbox.records import refresh, registry, versions
from sandbox.records.principals import Actor
from sandbox.store.models import Dataset, DatasetSource

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)


def _page(
    visit: Visit,
    actor: Actor,
    name: str,
    shown: int | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
    typed_source: dict[str, str] | None = None,
) -> Response:
    row = versions.owned(visit.ctx, actor, name)
    history = versions.view_history(visit.ctx, actor, name)
    number = shown if shown is not None else row.version
    detail = versions.view_version(visit.ctx, actor, name, number)
    with visit.ctx.reading() as s:
        info = registry.to_info(visit.ctx, s.get(Dataset, name))  # type: ignore[arg-type]
        stored = s.get(DatasetSource, name)
        source = refresh.source_json(stored) if stored is not None else None
    return page(
        visit,
        "dataset_manage.html",
        status,
        d=info,
        history=history,
        detail=detail,
        rules=row.quality_rules or {},
        columns=[c.name for c in info.columns],
        errors=errors or {},
        source=typed_source or source or {},
        pulls=refresh.history(visit.ctx, actor, name, limit=20),
    )


@router.get("/datasets/{name}/manage")
def manage(visit: VisitOf, name: str, signed: Person, v: int | None = None) -> Response:
    return _page(visit, signed.actor, name, v)


@router.get("/my-datasets")
def mine(visit: VisitOf, signed: Person) -> Response:
    actor = signed.actor
    if actor.role not in (Role.provider, Role.bureau):
        raise Forbidden(f"this page is for departments and the bureau; you are {actor.role}")
    with visit.ctx.reading() as s:
        every = registry.all_datasets(visit.ctx, s)
    own = [d for d in every if actor.role == Role.bureau or d.provider_id == actor.id]
    return page(visit, "my_datasets.html", datasets=own)


@router.post("/datasets/{name}/versions")
async def publish(request: Request, visit: VisitOf, name: str, sent: Submitted) -> Response:
    actor = sent.signed.actor
    form = await request.form()  # the form `Submitted` read, with the file in it
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile) or not upload.filename:
            return _page(
                visit, actor, name, errors={"file": "choose a CSV or Parquet file"}, status=400
            )
        meta: dict[str, Any] = {"mode": sent.form.get("mode", "replace")}
        new_columns = {
            column.strip(): {"role": role}
            for column, role in zip(
                sent.lists.get("new_name", []), sent.lists.get("new_role", []), strict=False
            )
            if column.strip()
        }
        if new_columns:
            meta["columns"] = new_columns
        data = await upload.read()
        try:
            done = await run_in_threadpool(
                versions.publish_upload, visit.ctx, actor, name, data, upload.filename, meta
            )
        except SandboxError as exc:
            return _page(visit, actor, name, errors={"file": exc.message}, status=400)
    finally:
        await form.close()
    return RedirectResponse(f"/datasets/{name}/manage?v={done.version}", 303)


@router.post("/datasets/{name}/quality-rules")
def rules(visit: VisitOf, name: str, sent: Submitted) -> Response:
    actor = sent.signed.actor
    body: dict[str, Any] = {
        "not_null": sent.lists.get("not_null", []),
        "unique": sent.lists.get("unique", []),
        "on_failure": sent.form.get("on_failure", "flag"),
    }
    if sent.form.get("min_rows", "").strip():
        try:
            body["min_rows"] = int(sent.form["min_rows"])
        except ValueError:
            return _page(
                visit,
                actor,
                name,
                errors={"rules": "the minimum number of rows must be a whole number"},
                status=400,
            )
    try:
        versions.set_rules(visit.ctx, actor, name, body)
    except SandboxError as exc:
        return _page(visit, actor, name, errors={"rules": exc.message}, status=400)
    return RedirectResponse(f"/datasets/{name}/manage#rules", 303)


_SOURCE_FIELDS = ("url", "password_ref", "table", "query", "mode", "schedule")


@router.post("/datasets/{name}/source")
def source(visit: VisitOf, name: str, sent: Submitted) -> Response:
    actor = sent.signed.actor
    typed = {k: sent.form.get(k, "").strip() for k in _SOURCE_FIELDS}
    try:
        refresh.set_source(visit.ctx, actor, name, {k: v for k, v in typed.items() if v})
    except SandboxError as exc:
        return _page(
            visit, actor, name, errors={"source": exc.message}, status=400, typed_source=typed
        )
    return RedirectResponse(f"/datasets/{name}/manage#source", 303)


@router.post("/datasets/{name}/refresh")
def pull(visit: VisitOf, name: str, sent: Submitted) -> Response:
    actor = sent.signed.actor
    try:
        refresh.refresh_in_background(visit.ctx, actor, name, "console")
    except SandboxError as exc:
        return _page(visit, actor, name, errors={"source": exc.message}, status=400)
    return RedirectResponse(f"/datasets/{name}/manage#pulls", 303)
