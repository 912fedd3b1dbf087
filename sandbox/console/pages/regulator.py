"""The regulator's pages: every contract with its history (suspend, resume), every job with its
code, signature and full disclosure report, usage and revenue reports, and the log with its
checkpoint, witnesses and inclusion proofs. Each page calls the function the API's route
calls, as the signed-in regulator; anyone else is refused as the API refuses them."""

from __future__ import annotations

import base64
import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from operators.keys import public_raw
from operators.roles import Role
from sandbox.common import clock, exports
from sandbox.console.charts import bars
from sandbox.console.i18n import translator
from sandbox.console.render import Visit, VisitOf, page
from sandbox.console.routing import ConsoleRoute, Person, Submitted
from sandbox.errors import BadRequest, SandboxError
from sandbox.ledger import log, merkle
from sandbox.ledger.errors import ProofError
from sandbox.ledger.note import vkey
from sandbox.records import agreements, directory, flags, jobs, listings, money, principals
from sandbox.records.principals import Actor, require
from sandbox.records.sessions import Signed

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

SHOWN = 200
LOG_PAGE = 25


def _regulator(signed: Signed) -> Actor:
    require(signed.actor, Role.regulator)
    return signed.actor


def _names(visit: Visit) -> directory.Directory:
    with visit.ctx.reading() as s:
        return directory.load(s)


# --- contracts ---------------------------------------------------------------------------------


@router.get("/oversight/contracts")
def contracts(visit: VisitOf, signed: Person, status: str = "", operator: str = "") -> Response:
    actor = _regulator(signed)
    rows = listings.contracts(
        visit.ctx, actor, status or None, operator or None, SHOWN, newest_first=True
    )
    every = listings.contracts(visit.ctx, actor, limit=listings.PAGE_MAX)
    names = _names(visit)
    return page(
        visit,
        "regulator_contracts.html",
        contracts=rows,
        names=names,
        picked=status,
        operator=operator,
        operators=_operators(names, every),
        statuses=sorted({r["status"] for r in every}),
    )


def _operators(names: directory.Directory, rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    ids = {r["document"]["operator_id"] for r in rows}
    return sorted(((i, names.name(i) or i) for i in ids), key=lambda p: p[1])


def _contract_page(
    visit: Visit, actor: Actor, contract_id: str, status: int = 200, **form: str
) -> Response:
    row = agreements.get(visit.ctx, actor, contract_id)
    operator_id = row["document"]["operator_id"]
    return page(
        visit,
        "regulator_contract.html",
        status,
        c=row,
        names=_names(visit),
        operator=principals.get_principal(visit.ctx, actor, operator_id),
        failed=form.get("failed", ""),
        reason=form.get("reason", ""),
        error=form.get("error", ""),
    )


@router.get("/oversight/contracts/{contract_id}")
def contract(visit: VisitOf, signed: Person, contract_id: str) -> Response:
    return _contract_page(visit, _regulator(signed), contract_id)


_CONTRACT_ACTIONS = {"suspend": agreements.suspend, "resume": agreements.resume}
_OPERATOR_ACTIONS = {
    "suspend": principals.suspend_principal,
    "resume": principals.resume_principal,
}


@router.post("/oversight/contracts/{contract_id}/{action}")
def change_contract(visit: VisitOf, contract_id: str, action: str, sent: Submitted) -> Response:
    actor = _regulator(sent.signed)
    reason = sent.form.get("reason", "")
    act = _CONTRACT_ACTIONS.get(action)
    if act is None:
        raise BadRequest(f"no action {action!r}; use suspend or resume")
    # Seen first: a contract that does not exist is answered as the API answers it.
    agreements.get(visit.ctx, actor, contract_id)
    try:
        act(visit.ctx, actor, contract_id, reason)
    except SandboxError as exc:
        failed = f"contract-{action}"
        return _contract_page(
            visit, actor, contract_id, 400, failed=failed, reason=reason, error=exc.message
        )
    return RedirectResponse(f"/oversight/contracts/{contract_id}", 303)


@router.post("/oversight/contracts/{contract_id}/operator/{action}")
def change_operator(visit: VisitOf, contract_id: str, action: str, sent: Submitted) -> Response:
    actor = _regulator(sent.signed)
    reason = sent.form.get("reason", "")
    act = _OPERATOR_ACTIONS.get(action)
    if act is None:
        raise BadRequest(f"no action {action!r}; use suspend or resume")
    operator_id = agreements.get(visit.ctx, actor, contract_id)["document"]["operator_id"]
    try:
        act(visit.ctx, actor, operator_id, reason)
    except SandboxError as exc:
        failed = f"operator-{action}"
        return _contract_page(
            visit, actor, contract_id, 400, failed=failed, reason=reason, error=exc.message
        )
    return RedirectResponse(f"/oversight/contracts/{contract_id}", 303)


# --- jobs --------------------------------------------------------------------------------------


@router.get("/oversight/jobs")
def job_list(
    visit: VisitOf, signed: Person, operator: str = "", contract: str = "", status: str = ""
) -> Response:
    actor = _regulator(signed)
    rows = listings.jobs(
        visit.ctx,
        actor,
        contract or None,
        operator or None,
        status or None,
        limit=SHOWN,
        newest_first=True,
    )
    names = _names(visit)
    operators, statuses = listings.job_facets(visit.ctx, actor)
    return page(
        visit,
        "regulator_jobs.html",
        jobs=rows,
        shown=SHOWN,
        flags=flags.listing(visit.ctx, actor, limit=50),
        operator=operator,
        contract=contract,
        picked=status,
        operators=sorted(((i, names.name(i) or "") for i in operators), key=lambda p: p[1]),
        statuses=statuses,
    )


@router.get("/oversight/jobs/{job_id}")
def job(visit: VisitOf, signed: Person, job_id: str) -> Response:
    actor = _regulator(signed)
    found = jobs.get(visit.ctx, actor, job_id)
    names = _names(visit)
    return page(
        visit,
        "regulator_job.html",
        job=found,
        operator=names.name(found["operator_id"]) or found["operator_id"],
        releases=found["disclosure"].get("releases", []),
        disclosure=json.dumps(found["disclosure"], ensure_ascii=False, indent=2),
        params=json.dumps(found["params"], ensure_ascii=False, indent=2),
        outputs=[_output(name, body) for name, body in found["outputs"].items()],
        flags=flags.listing(visit.ctx, actor, job_id=job_id),
    )


def _output(name: str, body: dict[str, Any]) -> dict[str, Any]:
    """A released output as cells to show, suppressed ones marked."""
    if body.get("kind") != "table":
        return {"name": name, "scalar": body.get("value"), "columns": [], "rows": []}
    columns = [c["name"] for c in body["columns"]]
    hidden = {(i, c) for i, c in body.get("suppressed", [])}
    rows = [
        [{"value": v, "suppressed": (i, c) in hidden} for c, v in zip(columns, row)]
        for i, row in enumerate(body["rows"])
    ]
    return {"name": name, "scalar": None, "columns": columns, "rows": rows}


# --- reports -----------------------------------------------------------------------------------


def _period(period: str) -> str:
    chosen = period or money.period_of(clock.now())
    money.month_bounds(chosen)
    return chosen


@router.get("/oversight/reports")
def reports(visit: VisitOf, signed: Person, period: str = "") -> Response:
    actor = _regulator(signed)
    period = _period(period)
    usage = listings.usage(visit.ctx, actor, period)
    revenue = money.revenue(visit.ctx, actor, period)
    released = listings.releases(visit.ctx, actor, period)
    t = translator(visit.lang)
    by_operator = revenue["by_operator"]
    allowed = revenue["effective_allowed"]
    return page(
        visit,
        "regulator_reports.html",
        period=period,
        usage=usage,
        revenue=revenue,
        releases=released,
        jobs_chart=bars(
            [u["operator_name"] or u["operator_id"] for u in usage],
            [u["jobs"] for u in usage],
            title=t("oversight.reports.jobs_chart", period=period),
        ),
        revenue_chart=bars(
            [r.get("operator_name") or r["operator_id"] for r in by_operator],
            [float(r["amount"]) for r in by_operator],
            title=t("oversight.reports.revenue_chart", period=period),
            limit=float(allowed) if allowed is not None else None,
            limit_label=t("oversight.reports.allowed"),
        ),
    )


@router.get("/oversight/reports/{kind}.csv")
def report_csv(visit: VisitOf, signed: Person, kind: str, period: str = "") -> Response:
    actor = _regulator(signed)
    period = _period(period)
    if kind == "usage":
        table = listings.usage_table(listings.usage(visit.ctx, actor, period))
    elif kind == "revenue":
        table = money.revenue_table(money.revenue(visit.ctx, actor, period))
    elif kind == "releases":
        table = listings.releases_table(listings.releases(visit.ctx, actor, period))
    else:
        raise BadRequest(f"no report {kind!r}; download usage, revenue or releases")
    return _download(table, f"{kind}-{period}.csv")


def _download(table: exports.Table, filename: str) -> Response:
    return Response(
        exports.render(table, "csv"),
        media_type=exports.MEDIA_TYPES["csv"],
        headers=exports.attachment(filename),
    )


# --- the log -----------------------------------------------------------------------------------


@router.get("/oversight/log")
def ledger(
    request: Request,
    visit: VisitOf,
    signed: Person,
    page_no: Annotated[int, Query(alias="page")] = 0,
    entry: Annotated[str, Query(alias="index")] = "",
) -> Response:
    _regulator(signed)
    ctx = visit.ctx
    index = _index(entry)
    with ctx.reading() as s:
        head = log.checkpoint(s, ctx.settings.log_origin, ctx.bureau_key)
        size = head["size"]
        pages = max((size + LOG_PAGE - 1) // LOG_PAGE, 1)
        page_no = min(max(page_no, 0), pages - 1)
        end = size - page_no * LOG_PAGE
        shown = log.entries(s, max(end - LOG_PAGE, 0), end)[::-1]
        witnesses = [w for w in log.witnessed(s) if w["size"] == _last_witnessed(s)]
        proof = _proof(s, index, head) if isinstance(index, int) else None
    verifier = vkey(ctx.settings.log_origin, public_raw(ctx.bureau_key))
    base = f"{request.url.scheme}://{request.url.netloc}"
    return page(
        visit,
        "regulator_log.html",
        head=head,
        entries=[{**e, "event_text": _event_text(e["event"])} for e in shown],
        witnesses=witnesses,
        page_no=page_no,
        pages=pages,
        index=entry,
        index_error=index if isinstance(index, str) else "",
        proof=proof,
        command=f"sandbox ledger verify --url {base} --bureau-key '{verifier}'",
    )


def _index(entry: str) -> int | str | None:
    """The entry asked for, or what is wrong with what was typed."""
    if not entry.strip():
        return None
    try:
        return int(entry)
    except ValueError:
        return "an entry index is a whole number: 0 for the first entry"


def _last_witnessed(session: Any) -> int | None:
    sizes = [w["size"] for w in log.witnessed(session)]
    return max(sizes) if sizes else None


def _proof(session: Any, index: int, head: dict[str, Any]) -> dict[str, Any]:
    """The audit path from entry `index` to the checkpoint's root, checked here with the
    ledger's own Merkle functions (as `sandbox ledger verify` checks it elsewhere)."""
    size = head["size"]
    try:
        path = log.inclusion_proof(session, index, size)
    except SandboxError as exc:
        return {"error": exc.message}
    leaf = base64.b64decode(log.entries(session, index, index + 1)[0]["leaf"])
    tree = log.hasher(session)
    leaf_hash = tree.leaf(leaf)
    try:
        merkle.verify_inclusion(
            leaf_hash,
            index,
            size,
            [base64.b64decode(p) for p in path],
            base64.b64decode(head["root_hash"]),
            tree,
        )
        verified, why = True, ""
    except ProofError as exc:
        verified, why = False, str(exc)
    return {
        "error": "",
        "size": size,
        "leaf_hash": base64.b64encode(leaf_hash).decode(),
        "path": path,
        "verified": verified,
        "why": why,
    }


def _event_text(event: dict[str, Any]) -> str:
    return json.dumps(event.get("data", {}), ensure_ascii=False, sort_keys=True)[:300]
