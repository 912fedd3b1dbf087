"""Listings for inspection: contracts, jobs, releases and usage, as JSON or flat CSV rows.

Everything here is read-only. What a principal sees follows the same rules as the single-item
routes: operators see their own, providers the contracts they are asked to approve, the bureau
all contracts, and the regulator everything, with code, signatures and full disclosure reports.
"""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from typing import Any, Iterable, Sequence

from sqlalchemy import select

from operators.roles import Role
from pricing import format_money
from sandbox.context import Context
from sandbox.errors import BadRequest
from sandbox.records import agreements, money
from sandbox.records.jobs import view as job_view
from sandbox.records.principals import Actor, require, utc_text
from sandbox.store.models import Contract, Job, JobOutput

PAGE_MAX = 1000


def checked_page(limit: int, offset: int) -> tuple[int, int]:
    """A listing's page, checked (the same bounds for every listing)."""
    if not 1 <= limit <= PAGE_MAX or offset < 0:
        raise BadRequest(f"ask for 1 <= limit <= {PAGE_MAX} and offset >= 0")
    return limit, offset


def contracts(ctx: Context, actor: Actor, status: str | None = None,
              operator_id: str | None = None, limit: int = 100, offset: int = 0
              ) -> list[dict[str, Any]]:
    limit, offset = checked_page(limit, offset)
    with ctx.reading() as s:
        q = select(Contract).order_by(Contract.created_at, Contract.id)
        if status:
            q = q.where(Contract.status == status)
        if operator_id:
            q = q.where(Contract.operator_id == operator_id)
        if actor.role == Role.operator:
            q = q.where(Contract.operator_id == actor.id)
        visible = (r for r in s.scalars(q) if agreements.may_read(s, actor, r))
        rows = list(visible)[offset:offset + limit]
        return [agreements.view(s, r) for r in rows]


def jobs(ctx: Context, actor: Actor, contract_id: str | None = None,
         operator_id: str | None = None, status: str | None = None, period: str | None = None,
         limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    require(actor, Role.operator, Role.regulator)
    limit, offset = checked_page(limit, offset)
    with ctx.reading() as s:
        q = select(Job).order_by(Job.created_at, Job.id)
        if actor.role == Role.operator:
            q = q.where(Job.operator_id == actor.id)
        elif operator_id:
            q = q.where(Job.operator_id == operator_id)
        if contract_id:
            q = q.where(Job.contract_id == contract_id)
        if status:
            q = q.where(Job.status == status)
        if period:
            start, end = money.month_bounds(period)
            q = q.where(Job.created_at >= start, Job.created_at < end)
        page = list(s.scalars(q.offset(offset).limit(limit)))
        names: dict[str, list[str]] = {}
        for job_id, name in s.execute(select(JobOutput.job_id, JobOutput.name).where(
                JobOutput.job_id.in_([j.id for j in page])).order_by(JobOutput.name)):
            names.setdefault(job_id, []).append(name)
        full = actor.role == Role.regulator
        return [{**job_view(j, {}, full), "outputs": names.get(j.id, [])} for j in page]


def releases(ctx: Context, actor: Actor, period: str,
             operator_id: str | None = None) -> list[dict[str, Any]]:
    """Every aggregate released to operator code in a month, with what was suppressed."""
    require(actor, Role.regulator)
    start, end = money.month_bounds(period)
    with ctx.reading() as s:
        q = select(Job).where(Job.finished_at >= start, Job.finished_at < end)
        if operator_id:
            q = q.where(Job.operator_id == operator_id)
        out = []
        for job in s.scalars(q.order_by(Job.finished_at, Job.id)):
            for release in (job.disclosure or {}).get("releases", []):
                out.append({"job_id": job.id, "operator_id": job.operator_id,
                            "contract_id": job.contract_id,
                            "finished_at": utc_text(job.finished_at), **release})
        return out


def usage(ctx: Context, actor: Actor, period: str) -> list[dict[str, Any]]:
    """Per operator: jobs by status, rows scanned, compute seconds, outputs and charges."""
    require(actor, Role.regulator, Role.bureau)
    start, end = money.month_bounds(period)
    totals: dict[str, dict[str, Any]] = {}
    with ctx.reading() as s:
        for job in s.scalars(select(Job).where(Job.finished_at >= start, Job.finished_at < end)):
            t = totals.setdefault(job.operator_id, {
                "operator_id": job.operator_id, "jobs": 0, "by_status": {}, "rows_scanned": 0,
                "compute_seconds": Decimal(0), "outputs": 0, "amount": Decimal(0),
                "list_amount": Decimal(0)})
            u = job.usage or {}
            t["jobs"] += 1
            t["by_status"][job.status] = t["by_status"].get(job.status, 0) + 1
            t["rows_scanned"] += int(u.get("rows_scanned", 0))
            t["compute_seconds"] += Decimal(u.get("compute_seconds", "0"))
            t["outputs"] += int(u.get("outputs", 0))
            if job.charge:
                t["amount"] += Decimal(job.charge["amount"])
                t["list_amount"] += Decimal(job.charge["list_amount"])
    return [{**t, "compute_seconds": str(t["compute_seconds"]),
             "amount": format_money(t["amount"]), "list_amount": format_money(t["list_amount"])}
            for _, t in sorted(totals.items())]


def to_csv(rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> str:
    """Flat CSV for spreadsheets: nested values are written as JSON text."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return out.getvalue()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return value


CONTRACT_COLUMNS = ("id", "version", "status", "status_reason", "document", "signatures",
                    "approvals", "spend", "history")
JOB_COLUMNS = ("id", "contract_id", "contract_version", "operator_id", "status", "created_at",
               "finished_at", "code", "params", "signature", "signing_key_id", "usage", "quote",
               "charge", "disclosure", "error", "outputs")
RELEASE_COLUMNS = ("job_id", "operator_id", "contract_id", "finished_at", "index", "dataset",
                   "keys", "rows", "cells", "suppressed", "left_out")
USAGE_COLUMNS = ("operator_id", "jobs", "by_status", "rows_scanned", "compute_seconds",
                 "outputs", "amount", "list_amount")
