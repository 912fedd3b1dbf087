"""Listings for inspection: contracts, jobs, releases and usage, as JSON or export tables.

Everything here is read-only. What a principal sees follows the same rules as the single-item
routes: operators see their own, providers the contracts they are asked to approve, the bureau
all contracts, and the regulator everything, with code, signatures and full disclosure reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from operators.roles import Role
from pricing import format_money
from sandbox.common import clock
from sandbox.common.exports import Column, Kind, Table
from sandbox.context import Context
from sandbox.errors import BadRequest
from sandbox.records import agreements, directory, money
from sandbox.records.directory import Directory
from sandbox.records.jobs import latest_reviews
from sandbox.records.jobs import view as job_view
from sandbox.records.principals import Actor, require
from sandbox.store.models import Contract, Job, JobOutput

PAGE_MAX = 1000


def checked_page(limit: int, offset: int) -> tuple[int, int]:
    """A listing's page, checked (the same bounds for every listing)."""
    if not 1 <= limit <= PAGE_MAX or offset < 0:
        raise BadRequest(f"ask for 1 <= limit <= {PAGE_MAX} and offset >= 0")
    return limit, offset


def contracts(
    ctx: Context,
    actor: Actor,
    status: str | None = None,
    operator_id: str | None = None,
    limit: int = 100,
    offset: int = 0,
    *,
    newest_first: bool = False,
) -> list[dict[str, Any]]:
    limit, offset = checked_page(limit, offset)
    with ctx.reading() as s:
        q = select(Contract).order_by(*_order(Contract, newest_first))
        if status:
            q = q.where(Contract.status == status)
        if operator_id:
            q = q.where(Contract.operator_id == operator_id)
        if actor.role == Role.operator:
            q = q.where(Contract.operator_id == actor.id)
        visible = (r for r in s.scalars(q) if agreements.may_read(s, actor, r))
        rows = list(visible)[offset : offset + limit]
        return [agreements.view(s, r) for r in rows]


def _order(record: Any, newest_first: bool) -> tuple[Any, ...]:
    if newest_first:
        return record.created_at.desc(), record.id.desc()
    return record.created_at, record.id


def job_facets(ctx: Context, actor: Actor) -> tuple[list[str], list[str]]:
    """The operators and the statuses of every job the regulator may filter its listing by
    (the index answers; the jobs themselves are not read)."""
    require(actor, Role.regulator)
    with ctx.reading() as s:
        operators = list(s.scalars(select(Job.operator_id).distinct()))
        statuses = sorted(str(v) for v in s.scalars(select(Job.status).distinct()))
    return operators, statuses


def jobs(
    ctx: Context,
    actor: Actor,
    contract_id: str | None = None,
    operator_id: str | None = None,
    status: str | None = None,
    period: str | None = None,
    limit: int = 100,
    offset: int = 0,
    *,
    newest_first: bool = False,
) -> list[dict[str, Any]]:
    """A page of the jobs `actor` may see, oldest first (the API's pages, which stay put as
    jobs are added), or `newest_first` (what a person looks at first)."""
    require(actor, Role.operator, Role.regulator)
    limit, offset = checked_page(limit, offset)
    with ctx.reading() as s:
        q = select(Job).order_by(*_order(Job, newest_first))
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
        for job_id, name in s.execute(
            select(JobOutput.job_id, JobOutput.name)
            .where(JobOutput.job_id.in_([j.id for j in page]))
            .order_by(JobOutput.name)
        ):
            names.setdefault(job_id, []).append(name)
        full = actor.role == Role.regulator
        reviews = latest_reviews(s, [j.id for j in page])
        return _named(
            s,
            [
                {**job_view(j, {}, full, reviews.get(j.id)), "outputs": names.get(j.id, [])}
                for j in page
            ],
        )


def releases(
    ctx: Context, actor: Actor, period: str, operator_id: str | None = None
) -> list[dict[str, Any]]:
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
                out.append(
                    {
                        "job_id": job.id,
                        "operator_id": job.operator_id,
                        "contract_id": job.contract_id,
                        "finished_at": clock.text(job.finished_at),
                        **release,
                    }
                )
        return _named(s, out)


def usage(ctx: Context, actor: Actor, period: str) -> list[dict[str, Any]]:
    """Per operator: jobs by status, rows scanned, compute seconds, outputs and charges."""
    require(actor, Role.regulator, Role.bureau)
    start, end = money.month_bounds(period)
    totals: dict[str, dict[str, Any]] = {}
    with ctx.reading() as s:
        for job in s.scalars(select(Job).where(Job.finished_at >= start, Job.finished_at < end)):
            t = totals.setdefault(
                job.operator_id,
                {
                    "operator_id": job.operator_id,
                    "jobs": 0,
                    "by_status": {},
                    "rows_scanned": 0,
                    "compute_seconds": Decimal(0),
                    "outputs": 0,
                    "amount": Decimal(0),
                    "list_amount": Decimal(0),
                },
            )
            u = job.usage or {}
            t["jobs"] += 1
            t["by_status"][job.status] = t["by_status"].get(job.status, 0) + 1
            t["rows_scanned"] += int(u.get("rows_scanned", 0))
            t["compute_seconds"] += Decimal(u.get("compute_seconds", "0"))
            t["outputs"] += int(u.get("outputs", 0))
            if job.charge:
                t["amount"] += Decimal(job.charge["amount"])
                t["list_amount"] += Decimal(job.charge["list_amount"])
        return _named(
            s,
            [
                {
                    **t,
                    "compute_seconds": str(t["compute_seconds"]),
                    "amount": format_money(t["amount"]),
                    "list_amount": format_money(t["list_amount"]),
                }
                for _, t in sorted(totals.items())
            ],
        )


# -- exports -----------------------------------------------------------------------------------


def contracts_table(ctx: Context, rows: Sequence[dict[str, Any]]) -> Table:
    """Contracts flattened into columns people read: who, which data, why, how long, signed
    by whom and when."""
    with ctx.reading() as s:
        names = directory.load(s)
    return Table("合同", CONTRACT_COLUMNS, [_contract_row(names, r) for r in rows])


def _contract_row(names: Directory, row: dict[str, Any]) -> dict[str, Any]:
    doc = row["document"]
    datasets = sorted(doc.get("datasets", {}))
    # The operator's signature is what first made the version active; a later "active" is a
    # resumption by the regulator or the bureau.
    bureau = _first(row.get("history", []), "signed_by_bureau")
    operator = _first(row.get("history", []), "active")
    return {
        "id": row["id"],
        "version": row["version"],
        "status": row["status"],
        "status_reason": row["status_reason"],
        "operator_id": doc.get("operator_id"),
        "operator_name": names.name(doc.get("operator_id")),
        "datasets": "; ".join(_titled(names, d) for d in datasets),
        "departments": "; ".join(sorted({names.department(d) or "" for d in datasets} - {""})),
        "columns": "; ".join(
            f"{d}.{c}: {', '.join(uses)}"
            for d in datasets
            for c, uses in sorted(doc["datasets"][d].items())
        ),
        "purpose": doc.get("purpose"),
        "purpose_class": doc.get("purpose_class"),
        "valid_from": doc.get("valid_from"),
        "valid_to": doc.get("valid_to"),
        "spend_cap": doc.get("spend_cap"),
        "quotas": ", ".join(f"{k}={v}" for k, v in sorted((doc.get("quotas") or {}).items())),
        "approved_by": "; ".join(names.name(p) or p for p in row["approvals"]["given"]),
        "bureau_signed_by": names.name(bureau.get("by")),
        "bureau_signed_at": bureau.get("at"),
        "operator_signed_by": names.name(operator.get("by")),
        "operator_signed_at": operator.get("at"),
        "spent": Decimal(row["spend"]["spent_fen"]) / 100,
        "reserved": Decimal(row["spend"]["reserved_fen"]) / 100,
        "issued_at": doc.get("issued_at"),
    }


def _first(history: Sequence[dict[str, Any]], status: str) -> dict[str, Any]:
    return next((h for h in history if h["status"] == status), {})


def _titled(names: Directory, dataset: str) -> str:
    title = names.dataset_title(dataset)
    return f"{dataset}（{title}）" if title else dataset


def jobs_table(rows: Sequence[dict[str, Any]]) -> Table:
    return Table("作业", JOB_COLUMNS, [_job_row(r) for r in rows])


def _job_row(row: dict[str, Any]) -> dict[str, Any]:
    usage, error = row.get("usage") or {}, row.get("error") or {}
    return {
        **row,
        "rows_scanned": usage.get("rows_scanned"),
        "compute_seconds": usage.get("compute_seconds"),
        "quote_amount": (row.get("quote") or {}).get("amount"),
        "charge_amount": (row.get("charge") or {}).get("amount"),
        "error_message": error.get("message"),
    }


def releases_table(rows: Sequence[dict[str, Any]]) -> Table:
    return Table("发布记录", RELEASE_COLUMNS, rows)


def usage_table(rows: Sequence[dict[str, Any]]) -> Table:
    return Table("用量", USAGE_COLUMNS, rows)


def _named(session: Session, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with the operator's name, and the dataset's title and department where a row
    names a dataset."""
    names = directory.load(session)
    for row in rows:
        row["operator_name"] = names.name(row["operator_id"])
        if "dataset" in row:
            row["dataset_title"] = names.dataset_title(row["dataset"])
            row["department"] = names.department(row["dataset"])
    return rows


N, M, TIME = Kind.NUMBER, Kind.MONEY, Kind.TIME

CONTRACT_COLUMNS = (
    Column("id", "合同编号"),
    Column("version", "版本", N),
    Column("status", "状态"),
    Column("status_reason", "状态说明"),
    Column("operator_id", "运营单位编号"),
    Column("operator_name", "运营单位"),
    Column("datasets", "数据集"),
    Column("departments", "数据提供部门"),
    Column("columns", "授权字段及用途"),
    Column("purpose", "用途"),
    Column("purpose_class", "用途类别"),
    Column("valid_from", "生效时间", TIME),
    Column("valid_to", "到期时间", TIME),
    Column("spend_cap", "费用上限（元）", M),
    Column("quotas", "配额"),
    Column("approved_by", "审批部门"),
    Column("bureau_signed_by", "数据局签署人"),
    Column("bureau_signed_at", "数据局签署时间", TIME),
    Column("operator_signed_by", "运营单位签署人"),
    Column("operator_signed_at", "运营单位签署时间", TIME),
    Column("spent", "已结算（元）", M),
    Column("reserved", "已预留（元）", M),
    Column("issued_at", "合同出具时间", TIME),
)
JOB_COLUMNS = (
    Column("id", "作业编号"),
    Column("contract_id", "合同编号"),
    Column("contract_version", "合同版本", N),
    Column("operator_id", "运营单位编号"),
    Column("operator_name", "运营单位"),
    Column("status", "状态"),
    Column("created_at", "提交时间", TIME),
    Column("finished_at", "结束时间", TIME),
    Column("code", "代码"),
    Column("params", "参数"),
    Column("signature", "签名"),
    Column("signing_key_id", "签名密钥"),
    Column("rows_scanned", "扫描行数", N),
    Column("compute_seconds", "计算秒数", N),
    Column("quote_amount", "报价（元）", M),
    Column("charge_amount", "收费（元）", M),
    Column("error_message", "错误说明"),
    Column("usage", "用量明细"),
    Column("quote", "报价明细"),
    Column("charge", "收费明细"),
    Column("disclosure", "披露控制报告"),
    Column("error", "错误明细"),
    Column("outputs", "输出"),
)
RELEASE_COLUMNS = (
    Column("job_id", "作业编号"),
    Column("operator_id", "运营单位编号"),
    Column("operator_name", "运营单位"),
    Column("contract_id", "合同编号"),
    Column("finished_at", "结束时间", TIME),
    Column("index", "序号", N),
    Column("dataset", "数据集"),
    Column("dataset_title", "数据集名称"),
    Column("department", "数据提供部门"),
    Column("keys", "分组字段"),
    Column("rows", "行数", N),
    Column("cells", "单元格数", N),
    Column("suppressed", "抑制的单元格"),
    Column("left_out", "略去的分组数", N),
)
USAGE_COLUMNS = (
    Column("operator_id", "运营单位编号"),
    Column("operator_name", "运营单位"),
    Column("jobs", "作业数", N),
    Column("by_status", "各状态作业数"),
    Column("rows_scanned", "扫描行数", N),
    Column("compute_seconds", "计算秒数", N),
    Column("outputs", "输出数", N),
    Column("amount", "收费（元）", M),
    Column("list_amount", "标价（元）", M),
)
