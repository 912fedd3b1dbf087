"""Price schedules, quotes and bills in the database; the rules live in `pricing`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from contracts.document import ContractDocument
from operators.roles import Role
from pricing import (
    CapExceeded,
    Charge,
    Metered,
    PriceCaps,
    PriceSchedule,
    RevenueLine,
    RowsUse,
    charge_revenue_lines,
    check_caps,
    format_money,
    parse_caps,
    parse_money,
    parse_schedule,
    price,
    revenue_report,
)
from sandbox.catalog.models import DatasetInfo
from sandbox.common import clock, months
from sandbox.common.exports import Column, Kind, Table
from sandbox.context import Context
from sandbox.errors import BadRequest, Conflict, NotFound, QuotaExceeded
from sandbox.language.analysis import CodeFacts
from sandbox.ledger import log
from sandbox.records import counters, directory, products
from sandbox.records.principals import Actor, require
from sandbox.store import core
from sandbox.store.models import (
    AllowedRevenue,
    Contract,
    Job,
    PrepaidAccount,
    Principal,
)
from sandbox.store.models import PriceCaps as CapsRow
from sandbox.store.models import PriceSchedule as ScheduleRow
from sandbox.store.parsed import ByContent


def to_fen(amount: Decimal) -> int:
    return int(amount * 100)


def publish(ctx: Context, actor: Actor, body: Any) -> dict[str, Any]:
    require(actor, Role.bureau)
    schedule = parse_schedule(body)
    with ctx.transaction() as s:
        caps = caps_in_force(s, schedule.effective_from)
        if caps is not None:
            check_caps(schedule, caps)
        row = ScheduleRow(
            name=schedule.name,
            effective_from=clock.stored(schedule.effective_from),
            body=schedule.to_json(),
        )
        s.add(row)
        s.flush()
        log.append(s, "price_schedule.published", actor.id, str(row.id), schedule.to_json())
        return {"id": row.id, **schedule.to_json()}


# Every submission and settlement reads these: built once, run on the connection (store.core).
_IN_FORCE = (
    select(ScheduleRow.id, ScheduleRow.body)
    .where(ScheduleRow.effective_from <= bindparam("at"))
    .order_by(ScheduleRow.effective_from.desc(), ScheduleRow.id.desc())
    .limit(1)
)
_SCHEDULE = select(ScheduleRow.body).where(ScheduleRow.id == bindparam("key"))


def in_force(session: Session, at: dt.datetime | None = None) -> tuple[int, PriceSchedule]:
    at = at or clock.now()
    row = core.execute(session, _IN_FORCE, {"at": clock.stored(at)}).one_or_none()
    if row is None:
        raise Conflict(
            "no price schedule is in force yet; the bureau publishes one with "
            "POST /v1/price-schedules (or: sandbox prices publish FILE)"
        )
    return row.id, _stored_schedule(row.body)


def schedule_by_id(session: Session, schedule_id: int | None) -> PriceSchedule:
    body = (
        core.execute(session, _SCHEDULE, {"key": schedule_id}).scalar_one_or_none()
        if schedule_id is not None
        else None
    )
    if body is None:
        raise NotFound(f"price schedule {schedule_id} does not exist")
    return _stored_schedule(body)


# Every submission and settlement reads the schedule it is priced under.
_stored_schedule = ByContent(parse_schedule)


def caps_in_force(session: Session, at: dt.datetime | None = None) -> PriceCaps | None:
    at = at or clock.now()
    row = session.scalar(
        select(CapsRow)
        .where(CapsRow.effective_from <= clock.stored(at))
        .order_by(CapsRow.effective_from.desc(), CapsRow.id.desc())
        .limit(1)
    )
    return None if row is None else parse_caps(row.body)


def publish_caps(ctx: Context, actor: Actor, body: Any) -> dict[str, Any]:
    """Record maximum fees. The schedule in force must already respect them: lower fees
    first, then caps, so that no job is ever priced above a cap."""
    require(actor, Role.bureau)
    caps = parse_caps(body)
    with ctx.transaction() as s:
        try:
            _, schedule = in_force(s)
        except Conflict:
            schedule = None
        if schedule is not None:
            try:
                check_caps(schedule, caps)
            except CapExceeded as e:
                raise Conflict(
                    f"the schedule in force is above these caps: {e.message}; "
                    "publish a schedule within them first"
                ) from None
        row = CapsRow(
            name=caps.name, effective_from=clock.stored(caps.effective_from), body=caps.to_json()
        )
        s.add(row)
        s.flush()
        log.append(s, "price_caps.published", actor.id, str(row.id), caps.to_json())
        return {"id": row.id, **caps.to_json()}


def record_allowed_revenue(ctx: Context, actor: Actor, period: str, amount: str) -> dict[str, Any]:
    require(actor, Role.bureau)
    month_bounds(period)
    value = parse_money(amount, what="allowed revenue")
    with ctx.transaction() as s:
        row = s.get(AllowedRevenue, period)
        if row is None:
            row = AllowedRevenue(period=period, amount_fen=to_fen(value))
            s.add(row)
        else:
            row.amount_fen = to_fen(value)
        log.append(s, "revenue.allowed_recorded", actor.id, period, {"amount": format_money(value)})
    return {"period": period, "amount": format_money(value)}


@dataclass(frozen=True)
class ContractMoney:
    """What a reservation needs of a contract's row, read under its lock."""

    id: str
    version: int
    status: str
    spent_fen: int
    reserved_fen: int


# Only these columns: the row's document and canonical bytes are not needed here.
_LOCK_CONTRACT = (
    select(Contract.version, Contract.status, Contract.spent_fen, Contract.reserved_fen)
    .where(Contract.id == bindparam("key"))
    .with_for_update()
)


def lock_contract(session: Session, contract_id: str) -> ContractMoney | None:
    row = core.execute(session, _LOCK_CONTRACT, {"key": contract_id}).one_or_none()
    return None if row is None else ContractMoney(contract_id, *row)


def reserve_under_cap(
    session: Session, contract: ContractMoney, cap: Decimal | None, quote_fen: int
) -> None:
    """Hold a quote against the contract's spend cap (the caller holds the row's lock)."""
    if cap is not None:
        left = to_fen(cap) - contract.spent_fen - contract.reserved_fen
        if quote_fen > left:
            raise QuotaExceeded(
                f"this job is quoted at {quote_fen / 100:.2f} yuan but contract {contract.id} "
                f"has {max(left, 0) / 100:.2f} yuan left under its spend cap of {cap}; wait for "
                "running jobs to settle or apply for a contract with a higher cap"
            )
    _add_to_contract(session, contract.id, reserved=quote_fen)


def settle_contract(session: Session, contract_id: str, quote_fen: int, charge_fen: int) -> None:
    """Release a job's reservation and count what it was charged as spent."""
    _add_to_contract(session, contract_id, reserved=-quote_fen, spent=charge_fen)


# In the database, not through a loaded row: no one reads the row back in this
# transaction, and loading it means decoding its whole document.
_ADD_TO_CONTRACT = (
    update(Contract)
    .where(Contract.id == bindparam("key"))
    .values(
        reserved_fen=Contract.reserved_fen + bindparam("reserved"),
        spent_fen=Contract.spent_fen + bindparam("spent"),
    )
)


def _add_to_contract(session: Session, contract_id: str, reserved: int = 0, spent: int = 0) -> None:
    core.execute(
        session, _ADD_TO_CONTRACT, {"key": contract_id, "reserved": reserved, "spent": spent}
    )


_LOCK_PREPAID = (
    select(PrepaidAccount.balance_fen, PrepaidAccount.reserved_fen)
    .where(PrepaidAccount.operator_id == bindparam("key"))
    .with_for_update()
)
_ADD_TO_PREPAID = (
    update(PrepaidAccount)
    .where(PrepaidAccount.operator_id == bindparam("key"))
    .values(
        reserved_fen=PrepaidAccount.reserved_fen + bindparam("reserved"),
        balance_fen=PrepaidAccount.balance_fen + bindparam("balance"),
    )
)


def reserve_prepaid(session: Session, operator_id: str, quote_fen: int) -> None:
    """Hold a quote against the operator's prepaid balance, if it has one (in the caller's
    transaction, beside the spend-cap reservation)."""
    account = core.execute(session, _LOCK_PREPAID, {"key": operator_id}).one_or_none()
    if account is None:
        return
    available = account.balance_fen - account.reserved_fen
    if quote_fen > available:
        raise QuotaExceeded(
            f"this job is quoted at {quote_fen / 100:.2f} yuan but your prepaid balance has "
            f"{max(available, 0) / 100:.2f} yuan available; ask the bureau to top it up or wait "
            "for running jobs to settle"
        )
    core.execute(
        session, _ADD_TO_PREPAID, {"key": operator_id, "reserved": quote_fen, "balance": 0}
    )


def settle_prepaid(session: Session, operator_id: str, quote_fen: int, charge_fen: int) -> None:
    # No account: nothing is changed (the operator is billed in arrears).
    core.execute(
        session,
        _ADD_TO_PREPAID,
        {"key": operator_id, "reserved": -quote_fen, "balance": -charge_fen},
    )


def prepaid_view(account: PrepaidAccount) -> dict[str, Any]:
    return {
        "operator_id": account.operator_id,
        "balance": format_money(Decimal(account.balance_fen) / 100),
        "reserved": format_money(Decimal(account.reserved_fen) / 100),
        "available": format_money(Decimal(account.balance_fen - account.reserved_fen) / 100),
    }


def top_up(ctx: Context, actor: Actor, operator_id: str, amount: str) -> dict[str, Any]:
    """Credit an operator's prepaid balance, opening the account on the first top-up."""
    require(actor, Role.bureau)
    value = parse_money(amount, what="top-up")
    if value <= 0:
        raise BadRequest('a top-up must be a positive amount of yuan, e.g. "500.00"')
    with ctx.money_lock, ctx.transaction() as s:
        operator = s.get(Principal, operator_id)
        if operator is None or operator.role != Role.operator:
            raise NotFound(f"no operator {operator_id!r}")
        account = s.get(PrepaidAccount, operator_id, with_for_update=True)
        if account is None:
            account = PrepaidAccount(operator_id=operator_id, balance_fen=0, reserved_fen=0)
            s.add(account)
        account.balance_fen += to_fen(value)
        s.flush()
        log.append(
            s,
            "prepaid.topped_up",
            actor.id,
            operator_id,
            {"amount": format_money(value), "balance_fen": account.balance_fen},
        )
        return prepaid_view(account)


def prepaid(ctx: Context, actor: Actor, operator_id: str) -> dict[str, Any]:
    if actor.role == Role.operator and actor.id != operator_id or actor.role == Role.provider:
        raise NotFound(f"no prepaid account {operator_id!r} visible to you")
    with ctx.reading() as s:
        account = s.get(PrepaidAccount, operator_id)
        if account is None:
            raise NotFound(
                f"operator {operator_id!r} has no prepaid account; it is billed in arrears"
            )
        return prepaid_view(account)


def _next_period(period: str) -> str:
    year, month = int(period[:4]), int(period[5:])
    return f"{year + month // 12:04d}-{month % 12 + 1:02d}"


def _revenue_lines(session: Session, period: str) -> list[RevenueLine]:
    start, end = month_bounds(period)
    rows = session.execute(
        select(Job.operator_id, Job.charge, Contract.document)
        .join(Contract, Job.contract_id == Contract.id)
        .where(Job.charge.is_not(None), Job.finished_at >= start, Job.finished_at < end)
    )
    return [
        line
        for operator_id, charge, document in rows
        for line in charge_revenue_lines(
            operator_id, document["purpose_class"], Charge.from_json(charge)
        )
    ]


def revenue(ctx: Context, actor: Actor, period: str) -> dict[str, Any]:
    """Revenue for a month against its maximum allowed revenue. An excess is deducted from
    the next month's allowance, so the chain runs from the first month with an allowance."""
    require(actor, Role.regulator, Role.bureau)
    month_bounds(period)
    with ctx.reading() as s:
        allowed = {r.period: Decimal(r.amount_fen) / 100 for r in s.scalars(select(AllowedRevenue))}
        current = min([p for p in allowed if p <= period], default=period)
        carried = Decimal("0")
        while True:
            report = revenue_report(_revenue_lines(s, current), allowed.get(current), carried)
            if current == period:
                # Data products' calls: what customers paid operators, against the caps.
                by_scenario = products.revenue(s, *month_bounds(period))
                body = {"period": period, **report.to_json(), "products_by_scenario": by_scenario}
                return _named_revenue(directory.load(s), body)
            carried, current = report.carry_forward, _next_period(current)


def _named_revenue(names: directory.Directory, report: dict[str, Any]) -> dict[str, Any]:
    for row in report["by_operator"]:
        row["operator_name"] = names.name(row["operator_id"])
    for row in report["by_dataset"]:
        row["dataset_title"] = names.dataset_title(row["dataset"])
        row["department"] = names.department(row["dataset"])
    return report


@dataclass(frozen=True)
class Bound:
    """The most a job may use; its quote prices this, and the driver enforces it."""

    metered: Metered
    max_rows: int
    max_outputs: int


def upper_bound(
    facts: CodeFacts,
    contract: ContractDocument,
    datasets: Mapping[str, DatasetInfo],
    wall_seconds: float,
) -> Bound:
    names = facts.datasets if facts.datasets is not None else frozenset(contract.datasets)
    scans = max(facts.collects, 1)
    rows = [
        RowsUse(n, datasets[n].level, datasets[n].row_count * scans)
        for n in sorted(names)
        if n in datasets
    ]
    outputs = max(facts.emits, 1)
    metered = Metered(
        calls=1, rows=rows, compute_seconds=Decimal(repr(wall_seconds)), outputs=outputs
    )
    return Bound(metered, metered.rows_scanned, outputs)


def volume_this_month(session: Session, operator_id: str, at: dt.datetime) -> dict[str, int]:
    """Rows an operator's commercial jobs scanned this billing month, by level: the position
    on tiered volume prices (public-interest use is free and does not count). A running
    counter (records.counters), kept as jobs are settled: one read, whatever the history."""
    return counters.read(session, counters.VOLUME_OF_MONTH, operator_id, months.of(at))


def quote(
    schedule: PriceSchedule,
    bound: Bound,
    contract: ContractDocument,
    month_to_date: Mapping[str, int],
) -> Charge:
    return price(schedule, bound.metered, contract.purpose_class, month_to_date)


def actual(
    schedule: PriceSchedule,
    usage: Mapping[str, Any],
    contract: ContractDocument,
    levels: Mapping[str, str],
    month_to_date: Mapping[str, int],
) -> Charge:
    rows = [
        RowsUse(name, levels[name], int(n))
        for name, n in sorted(usage.get("rows_by_dataset", {}).items())
        if int(n) > 0
    ]
    metered = Metered(
        calls=1,
        rows=rows,
        compute_seconds=Decimal(usage.get("compute_seconds", "0")),
        outputs=int(usage.get("outputs", 0)),
    )
    return price(schedule, metered, contract.purpose_class, month_to_date)


def period_of(moment: dt.datetime) -> str:
    """The billing month (Beijing time) a moment falls in, as YYYY-MM."""
    return months.of(moment)


def month_bounds(period: str) -> tuple[dt.datetime, dt.datetime]:
    # Billing months are the bureau's calendar months, Beijing time (`common.months`).
    return months.bounds(period, "period")


def bills(
    ctx: Context, actor: Actor, period: str, operator_id: str | None = None
) -> dict[str, Any]:
    require(actor, Role.operator, Role.bureau, Role.regulator)
    if actor.role == Role.operator:
        operator_id = actor.id
    start, end = month_bounds(period)
    with ctx.reading() as s:
        q = select(Job).where(
            Job.charge.is_not(None), Job.finished_at >= start, Job.finished_at < end
        )
        if operator_id:
            q = q.where(Job.operator_id == operator_id)
        jobs = list(s.scalars(q.order_by(Job.finished_at, Job.id)))
        names = directory.load(s)
    charges = [
        {
            "job_id": j.id,
            "contract_id": j.contract_id,
            "operator_id": j.operator_id,
            "operator_name": names.name(j.operator_id),
            "status": j.status,
            "finished_at": clock.text(j.finished_at),
            **Charge.from_json(j.charge or {}).to_json(),
        }
        for j in jobs
    ]
    total = sum((Decimal(c["amount"]) for c in charges), Decimal("0"))
    list_total = sum((Decimal(c["list_amount"]) for c in charges), Decimal("0"))
    return {
        "period": period,
        "operator_id": operator_id,
        "currency": "CNY",
        "charges": charges,
        "total": format_money(total),
        "list_total": format_money(list_total),
    }


def statement_table(ctx: Context, statement: dict[str, Any]) -> Table:
    """A statement as a table: one row per charge line, then a total row equal to their sum."""
    with ctx.reading() as s:
        names = directory.load(s)
    rows = [
        {
            **{
                k: charge.get(k)
                for k in ("job_id", "contract_id", "operator_id", "operator_name", "finished_at")
            },
            **line,
            "dataset_title": names.dataset_title(line.get("dataset")),
            "department": names.department(line.get("dataset")),
        }
        for charge in statement["charges"]
        for line in charge["lines"]
    ]
    total = {
        "job_id": "total",
        "operator_id": statement["operator_id"],
        "operator_name": names.name(statement["operator_id"]),
        "finished_at": statement["period"],
        "amount": statement["total"],
        "list_amount": statement["list_total"],
    }
    return Table(f"账单 {statement['period']}", STATEMENT_COLUMNS, [*rows, total])


def revenue_table(report: dict[str, Any]) -> Table:
    """The revenue report flat: one row for the month against its allowed revenue, then one
    per operator, per dataset and per billing unit."""
    summary = {
        "section": "total",
        **report,
        "amount": report["revenue"],
        "list_amount": report["list_value"],
    }
    rows = [
        summary,
        *(
            {"section": "operator", "key": r["operator_id"], "name": r.get("operator_name"), **r}
            for r in report["by_operator"]
        ),
        *(
            {"section": "dataset", "key": r["dataset"], "name": r.get("dataset_title"), **r}
            for r in report["by_dataset"]
        ),
        *({"section": "unit", "key": r["unit"], **r} for r in report["by_unit"]),
        # Data products: what customers paid per scenario, against its caps.
        *(
            {
                "section": "product_scenario",
                "key": r["scenario"],
                "name": r["scenario"],
                "calls": r["calls"],
                "amount": r["revenue"],
                "allowed_revenue": r["max_allowed_revenue"],
                "excess": format_money(
                    max(Decimal(r["revenue"]) - Decimal(r["max_allowed_revenue"]), Decimal(0))
                ),
            }
            for r in report.get("products_by_scenario", [])
        ),
    ]
    return Table(
        f"收入 {report['period']}",
        REVENUE_COLUMNS,
        [{"period": report["period"], **r} for r in rows],
    )


_M = Kind.MONEY
STATEMENT_COLUMNS = (
    Column("job_id", "作业编号"),
    Column("contract_id", "合同编号"),
    Column("operator_id", "运营单位编号"),
    Column("operator_name", "运营单位"),
    Column("finished_at", "结束时间", Kind.TIME),
    Column("unit", "计费单位"),
    Column("dataset", "数据集"),
    Column("dataset_title", "数据集名称"),
    Column("department", "数据提供部门"),
    Column("level", "数据级别"),
    Column("tier", "阶梯"),
    Column("quantity", "数量", Kind.NUMBER),
    Column("amount", "金额（元）", _M),
    Column("list_amount", "标价（元）", _M),
)
REVENUE_COLUMNS = (
    Column("period", "月份"),
    Column("section", "分类"),
    Column("key", "编号"),
    Column("name", "名称"),
    Column("department", "数据提供部门"),
    Column("amount", "收入（元）", _M),
    Column("list_amount", "标价（元）", _M),
    Column("public_interest_list_value", "公益使用标价（元）", _M),
    Column("allowed_revenue", "最高准许收入（元）", _M),
    Column("carried_deduction", "上月结转扣减（元）", _M),
    Column("effective_allowed", "本月准许收入（元）", _M),
    Column("excess", "超出（元）", _M),
    Column("carry_forward", "结转下月扣减（元）", _M),
    Column("calls", "数据产品调用次数", Kind.NUMBER),
)
