"""The departments' statistics (考核): how each dataset, and each department over its
datasets, was kept up to date and used in a calendar month (Beijing time, as bills are).

A department sees its own datasets and its own row; the bureau and the regulator see all;
operators are refused. Counts and sums only: never job code, parameters or outputs.

Per dataset, for the month:

- `versions_published`: its versions created in the month (`dataset_versions`), and
  `days_since_last_version`: whole days from its newest version to the end of the month, or
  to now if that is earlier;
- `jobs`: jobs finished in the month (by `finished_at`, as bills and revenue count them)
  that read it, whatever their outcome; `jobs_succeeded`; `operators`, distinct;
- `rows_scanned`: the rows those jobs scanned in it (`usage.rows_by_dataset`);
- `fees`: the month's charges shared out per dataset. Rows lines of a charge already name
  their dataset and go to it; the other lines (the call, compute time, outputs) are shared
  by the datasets the job read in proportion to the rows it scanned in each (equally when
  it scanned none), to the fen by largest remainder. The datasets' fees therefore add up
  to the month's charges exactly (`charges` in the report of everything);
- `refusals`: jobs rejected or failed by the disclosure rules or the plan checks (the
  codes in `REFUSAL_CODES`), also by code;
- `suppressed_cells`, also by rule: the cells the release gate suppressed in releases that
  read the dataset (each release in a job's disclosure report names its dataset and those
  joined to it);
- `approval_decisions`, `approval_median_hours`, `approval_max_hours`: each approval or
  refusal its department made in the month on a contract version granting the dataset,
  timed from the version's application (its `pending_approval` entry) to the decision. The
  decision's time is the log's (`contract.approved`, `contract.refused`): a contract's
  status history only holds the decision that moved its status, not those of the other
  departments asked before it;
- `product_calls`: calls of data products (jobs with a product) among `jobs`, whatever
  their outcome;
- `open_demands`: demands naming the dataset that were open, routed or planned at the end
  of the month (or now).

A department's row rolls its datasets up: sums for versions, rows and fees, the freshest
dataset for the days since a version, and for everything counted per job, release,
decision or demand each one once, however many of its datasets it touched.

Which datasets a job read, most reliable first (the first that names any decides):

1. `usage.rows_by_dataset`: the driver adds each dataset as a collect() reads it (those
   joined too, and a collect whose evaluation failed), and it is what the job was metered
   and billed for: what was read, not what might have been;
2. `versions`: fixed at submission for the datasets the job may read (None for jobs
   submitted before versions existed): names them for a job stopped before it read anything;
3. the disclosure report's releases (dataset and joined), for records without usage;
4. the datasets of the contract version it ran under: a job refused at submission records
   none of the above.

Cost: one pass over the month's finished jobs, with only the columns used, and a few small
reads (versions, the month's contract decisions from the log, the contract versions they
decided, demands).
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from contracts.errors import ContractScopeError
from operators.roles import Role
from pricing import Charge, format_money
from sandbox.common import clock, figures, months
from sandbox.common.exports import Column, Kind, Table
from sandbox.context import Context
from sandbox.disclosure import audit, control, dominance, threshold
from sandbox.errors import CompileError, DisclosureRefused, Forbidden, JobStatus, PlanError
from sandbox.records import directory, money
from sandbox.records.principals import Actor
from sandbox.store.models import (
    ContractVersion,
    Dataset,
    DatasetVersion,
    Demand,
    Job,
    LedgerEntry,
    Principal,
)

# Jobs refused by the disclosure rules or by the checks of their plan against the language
# and the contract.
REFUSAL_CODES: Final = (
    DisclosureRefused.code,
    PlanError.code,
    CompileError.code,
    ContractScopeError.code,
)
_REFUSED_STATUSES: Final = (JobStatus.REJECTED, JobStatus.FAILED)
# The rules a suppressed cell can name (`disclosure.control`); another is counted as other.
SUPPRESSION_RULES: Final = (
    threshold.RULE,
    dominance.RULE,
    audit.RULE,
    control.SECONDARY_RULE,
    control.UNEVALUABLE_RULE,
)
OPEN_DEMANDS: Final = frozenset({"open", "routed", "planned"})
DECISIONS: Final = ("contract.approved", "contract.refused")
_APPLIED: Final = "pending_approval"
# The log's rows carry the time they were written, a moment after their event's own: read a
# margin either side of the month, then keep the events whose own time is in it.
_LOG_MARGIN: Final = dt.timedelta(hours=1)
_HOUR: Final = 3600


def _refuse_operators(actor: Actor) -> None:
    if actor.role not in (Role.provider, Role.bureau, Role.regulator):
        raise Forbidden(
            "the statistics are the departments' assessment, for the departments, the bureau "
            f"and the regulator; you are {actor.role}: your own use is in your bills "
            "(GET /v1/bills)"
        )


# --- tallies -----------------------------------------------------------------------------


@dataclass
class _Tally:
    """What is counted for one dataset, or one department over its datasets. Things counted
    once each (jobs, releases, decisions, demands) are kept by identity, so a department
    that owns two datasets a job read counts that job once."""

    versions_published: int = 0
    last_version_at: dt.datetime | None = None
    jobs: set[str] = field(default_factory=set)
    succeeded: set[str] = field(default_factory=set)
    operators: set[str] = field(default_factory=set)
    refusals: dict[str, str] = field(default_factory=dict)  # job → code
    rows_scanned: int = 0
    fees_fen: int = 0
    releases: dict[tuple[str, int], Counter[str]] = field(default_factory=dict)
    decisions: dict[tuple[str, int], float] = field(default_factory=dict)  # → hours
    demands: set[str] = field(default_factory=set)
    product_calls: set[str] = field(default_factory=set)

    def add_version(self, published: int, last: dt.datetime | None) -> None:
        self.versions_published += published
        if last is not None and (self.last_version_at is None or last > self.last_version_at):
            self.last_version_at = last

    def view(self, as_of: dt.datetime) -> dict[str, Any]:
        suppressed: Counter[str] = Counter()
        for rules in self.releases.values():
            suppressed.update(rules)
        hours = list(self.decisions.values())
        median, longest = figures.median(hours), max(hours, default=None)
        return {
            "versions_published": self.versions_published,
            "last_version_at": clock.text(self.last_version_at),
            "days_since_last_version": (
                None if self.last_version_at is None else (as_of - self.last_version_at).days
            ),
            "jobs": len(self.jobs),
            "jobs_succeeded": len(self.succeeded),
            "operators": len(self.operators),
            "rows_scanned": self.rows_scanned,
            "fees": format_money(Decimal(self.fees_fen) / 100),
            "refusals": len(self.refusals),
            "refusals_by_code": {
                code: sum(1 for c in self.refusals.values() if c == code) for code in REFUSAL_CODES
            },
            "suppressed_cells": sum(suppressed.values()),
            "suppressed_by_rule": {
                **{rule: suppressed[rule] for rule in SUPPRESSION_RULES},
                **{
                    rule: n
                    for rule, n in sorted(suppressed.items())
                    if rule not in SUPPRESSION_RULES
                },
            },
            "approval_decisions": len(hours),
            "approval_median_hours": None if median is None else round(median, 2),
            "approval_max_hours": None if longest is None else round(longest, 2),
            "open_demands": len(self.demands),
            "product_calls": len(self.product_calls),
        }


@dataclass
class _Month:
    """Every tally of one month, before anyone's view of it is cut out."""

    month: str
    as_of: dt.datetime  # stored (naive UTC): the end of the month, or now if earlier
    names: directory.Directory
    datasets: dict[str, _Tally]  # the catalog's datasets that existed by `as_of`
    departments: dict[str, _Tally]
    charges_fen: int = 0
    unattributed_fen: int = 0

    def owner(self, dataset: str) -> str | None:
        known = self.names.datasets.get(dataset)
        return known[1] if known is not None and dataset in self.datasets else None

    def tallies(self, datasets: Iterable[str]) -> list[_Tally]:
        """The tallies of `datasets` and of their departments, each once."""
        out: dict[int, _Tally] = {}
        for name in datasets:
            owner = self.owner(name)
            if owner is not None:
                for tally in (self.datasets[name], self.departments[owner]):
                    out[id(tally)] = tally
        return list(out.values())


# --- reading the month ---------------------------------------------------------------------


def _tally_month(ctx: Context, month: str | None) -> _Month:
    chosen = month or months.current()
    start, end = months.bounds(chosen)
    now = clock.stored(clock.now())
    as_of = min(end, now)
    with ctx.reading() as s:
        names = directory.load(s)
        existing = s.execute(
            select(Dataset.name).where(Dataset.created_at < end, Dataset.created_at <= now)
        ).scalars()
        datasets = {name: _Tally() for name in sorted(existing)}
        providers = s.execute(
            select(Principal.id).where(
                Principal.role == Role.provider,
                Principal.created_at < end,
                Principal.created_at <= now,
            )
        ).scalars()
        owners = {names.datasets[d][1] for d in datasets}
        tallied = _Month(
            chosen,
            as_of,
            names,
            datasets,
            {p: _Tally() for p in sorted({*providers, *owners})},
        )
        _count_versions(s, tallied, start, end, now)
        _count_jobs(s, tallied, start, end)
        _count_decisions(s, tallied, start, end)
        _count_demands(s, tallied)
    return tallied


def _count_versions(
    s: Session, m: _Month, start: dt.datetime, end: dt.datetime, now: dt.datetime
) -> None:
    published = {
        name: int(n)
        for name, n in s.execute(
            select(DatasetVersion.dataset, func.count())
            .where(DatasetVersion.created_at >= start, DatasetVersion.created_at < end)
            .where(DatasetVersion.created_at <= now)
            .group_by(DatasetVersion.dataset)
        )
    }
    newest = {
        name: last
        for name, last in s.execute(
            select(DatasetVersion.dataset, func.max(DatasetVersion.created_at))
            .where(DatasetVersion.created_at < end, DatasetVersion.created_at <= now)
            .group_by(DatasetVersion.dataset)
        )
    }
    for name in m.datasets:
        for tally in m.tallies([name]):
            tally.add_version(published.get(name, 0), newest.get(name))


def _count_jobs(s: Session, m: _Month, start: dt.datetime, end: dt.datetime) -> None:
    rows = s.execute(
        select(
            Job.id,
            Job.operator_id,
            Job.contract_id,
            Job.contract_version,
            Job.status,
            Job.usage,
            Job.charge,
            Job.disclosure,
            Job.error,
            Job.versions,
            Job.product_id,
        ).where(Job.finished_at >= start, Job.finished_at < end)
    ).all()
    recorded = [(r, _read_by_record(r)) for r in rows]
    # Only jobs that record nothing they read need their contract's datasets.
    granted = _contract_datasets(
        s, {(r.contract_id, r.contract_version) for r, read in recorded if not read}
    )
    for r, read in recorded:
        read = read or dict.fromkeys(granted.get((r.contract_id, r.contract_version), ()), 0)
        code = (r.error or {}).get("code")
        refused = r.status in _REFUSED_STATUSES and code in REFUSAL_CODES
        for tally in m.tallies(read):
            tally.jobs.add(r.id)
            tally.operators.add(r.operator_id)
            if r.status == JobStatus.SUCCEEDED:
                tally.succeeded.add(r.id)
            if refused:
                tally.refusals[r.id] = str(code)
            if r.product_id is not None:
                tally.product_calls.add(r.id)
        for name, rows_read in read.items():
            owner = m.owner(name)
            if owner is not None:
                m.datasets[name].rows_scanned += rows_read
                m.departments[owner].rows_scanned += rows_read
        _count_releases(m, r.id, r.disclosure)
        if r.charge is not None:
            _count_fees(m, Charge.from_json(r.charge), read)


def _read_by_record(r: Any) -> dict[str, int]:
    """The datasets a job's own record says it read, with the rows it scanned in each (see
    the module's docstring for the order); empty when it names none."""
    by_usage = (r.usage or {}).get("rows_by_dataset") or {}
    if by_usage:
        return {str(name): int(n) for name, n in by_usage.items()}
    if r.versions:
        return dict.fromkeys(map(str, r.versions), 0)
    released = {
        str(name)
        for release in (r.disclosure or {}).get("releases", [])
        for name in [release.get("dataset"), *release.get("joined", [])]
        if name
    }
    return dict.fromkeys(sorted(released), 0)


def _contract_datasets(
    s: Session, wanted: set[tuple[str, int]]
) -> dict[tuple[str, int], list[str]]:
    if not wanted:
        return {}
    versions = s.execute(
        select(
            ContractVersion.contract_id, ContractVersion.version, ContractVersion.document
        ).where(ContractVersion.contract_id.in_(sorted({c for c, _ in wanted})))
    )
    return {
        (cid, number): sorted((document or {}).get("datasets", {}))
        for cid, number, document in versions
        if (cid, number) in wanted
    }


def _count_releases(m: _Month, job_id: str, disclosure: Mapping[str, Any] | None) -> None:
    for position, release in enumerate((disclosure or {}).get("releases", [])):
        rules = Counter(
            str(cell.get("rule", "unknown"))
            for cell in release.get("suppressed", [])
            if isinstance(cell, Mapping)
        )
        read = [release.get("dataset"), *release.get("joined", [])]
        key = (job_id, int(release.get("index", position)))
        for tally in m.tallies(str(name) for name in read if name):
            tally.releases[key] = rules


def _count_fees(m: _Month, charge: Charge, read: Mapping[str, int]) -> None:
    """The charge to the fen, per dataset: rows lines to the dataset they name, the rest
    shared by rows scanned (see the module's docstring)."""
    direct: Counter[str] = Counter()
    shared = 0
    for line in charge.lines:
        fen = money.to_fen(line.amount)
        if line.unit == "rows" and line.dataset is not None:
            direct[line.dataset] += fen
        else:
            shared += fen
    fees = direct + Counter(figures.apportion(shared, read))
    m.charges_fen += money.to_fen(charge.amount)
    m.unattributed_fen += shared if not read else 0
    for name, fen in fees.items():
        owner = m.owner(name)
        if owner is None:
            m.unattributed_fen += fen
            continue
        m.datasets[name].fees_fen += fen
        m.departments[owner].fees_fen += fen


def _count_decisions(s: Session, m: _Month, start: dt.datetime, end: dt.datetime) -> None:
    decided = _decisions_logged(s, start, end)
    if not decided:
        return
    versions = {
        (v.contract_id, v.version): v
        for v in s.execute(
            select(
                ContractVersion.contract_id,
                ContractVersion.version,
                ContractVersion.document,
                ContractVersion.history,
                ContractVersion.created_at,
            ).where(ContractVersion.contract_id.in_(sorted({c for _, c, _, _ in decided})))
        )
    }
    for department, contract_id, number, at in decided:
        v = versions.get((contract_id, number))
        if v is None or department not in m.departments:
            continue
        applied = _applied_at(v.history or [], at) or v.created_at
        hours = max((at - applied).total_seconds(), 0) / _HOUR
        key = (contract_id, number)
        m.departments[department].decisions[key] = hours
        for name in (v.document or {}).get("datasets", {}):
            if m.owner(name) == department:
                m.datasets[name].decisions[key] = hours


def _decisions_logged(
    s: Session, start: dt.datetime, end: dt.datetime
) -> list[tuple[str, str, int, dt.datetime]]:
    """(department, contract, version, when) of each approval or refusal made in the month,
    from the log; only entries of those two types are read (their canonical JSON holds the
    type as written here)."""
    leaves = s.execute(
        select(LedgerEntry.leaf).where(
            LedgerEntry.created_at >= start - _LOG_MARGIN,
            LedgerEntry.created_at < end + _LOG_MARGIN,
            or_(*(_leaf_holds(s, _typed(kind)) for kind in DECISIONS)),
        )
    ).scalars()
    out = []
    for leaf in leaves:
        event = json.loads(bytes(leaf))
        at = _stored_time(event.get("at"))
        version = (event.get("data") or {}).get("version")
        if (
            event.get("type") in DECISIONS
            and at is not None
            and start <= at < end
            and event.get("actor")
            and isinstance(version, int)
        ):
            out.append((str(event["actor"]), str(event["subject"]), version, at))
    return out


def _typed(kind: str) -> bytes:
    return b'"type":' + json.dumps(kind).encode()


def _leaf_holds(s: Session, needle: bytes) -> ColumnElement[bool]:
    """Whether a log entry's bytes hold `needle` (no `%`, `_` or `\\` in it): PostgreSQL
    has LIKE on bytea; SQLite's LIKE reads no blob, but its instr() does."""
    if s.get_bind().dialect.name == "sqlite":
        return func.instr(LedgerEntry.leaf, needle) > 0
    return LedgerEntry.leaf.op("LIKE")(b"%" + needle + b"%")


def _applied_at(history: list[Any], decided: dt.datetime) -> dt.datetime | None:
    """When the version was last sent for approval before `decided`."""
    times = [
        at
        for entry in history
        if isinstance(entry, Mapping) and entry.get("status") == _APPLIED
        for at in [_stored_time(entry.get("at"))]
        if at is not None and at <= decided
    ]
    return max(times, default=None)


def _stored_time(text: Any) -> dt.datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return clock.stored(moment) if moment.tzinfo else moment


def _count_demands(s: Session, m: _Month) -> None:
    rows = s.execute(
        select(
            Demand.id,
            Demand.dataset,
            Demand.provider_id,
            Demand.status,
            Demand.created_at,
            Demand.history,
        ).where(Demand.created_at <= m.as_of)
    )
    for r in rows:
        if _status_at(r.history or [], r.status, m.as_of) not in OPEN_DEMANDS:
            continue
        if r.dataset and m.owner(r.dataset) is not None:
            for tally in m.tallies([r.dataset]):
                tally.demands.add(r.id)
        if r.provider_id in m.departments:
            m.departments[r.provider_id].demands.add(r.id)


def _status_at(history: list[Any], current: str, as_of: dt.datetime) -> str:
    """A demand's status at `as_of`: its last change by then, or its status now when its
    history says nothing about that time."""
    then = [
        (at, str(entry["status"]))
        for entry in history
        if isinstance(entry, Mapping) and entry.get("status")
        for at in [_stored_time(entry.get("at"))]
        if at is not None and at <= as_of
    ]
    return max(then, key=lambda pair: pair[0])[1] if then else current


# --- the reports ---------------------------------------------------------------------------


def _sees_all(actor: Actor) -> bool:
    return actor.role in (Role.bureau, Role.regulator)


def _header(m: _Month, actor: Actor) -> dict[str, Any]:
    out: dict[str, Any] = {
        "month": m.month,
        "as_of": clock.text(m.as_of),
        "currency": "CNY",
    }
    if _sees_all(actor):
        # The month's charges, all of which the datasets' fees add up to (less what no
        # dataset in the catalog can be found for).
        out["charges"] = format_money(Decimal(m.charges_fen) / 100)
        out["unattributed_fees"] = format_money(Decimal(m.unattributed_fen) / 100)
    return out


def datasets(ctx: Context, actor: Actor, month: str | None = None) -> dict[str, Any]:
    """Per dataset (the caller's own, for a department), the month's figures."""
    _refuse_operators(actor)
    m = _tally_month(ctx, month)
    rows = [
        {
            "dataset": name,
            "title": m.names.dataset_title(name),
            "department_id": m.owner(name),
            "department": m.names.name(m.owner(name)),
            **tally.view(m.as_of),
        }
        for name, tally in m.datasets.items()
        if _sees_all(actor) or m.owner(name) == actor.id
    ]
    return {**_header(m, actor), "datasets": rows}


def departments(ctx: Context, actor: Actor, month: str | None = None) -> dict[str, Any]:
    """Per department (the caller's own row, for a department), its datasets rolled up."""
    _refuse_operators(actor)
    m = _tally_month(ctx, month)
    rows = [
        {
            "department_id": department,
            "department": m.names.name(department),
            "datasets": sum(1 for name in m.datasets if m.owner(name) == department),
            **tally.view(m.as_of),
        }
        for department, tally in m.departments.items()
        if _sees_all(actor) or department == actor.id
    ]
    rows.sort(key=lambda r: (r["department"] or "", r["department_id"]))
    return {**_header(m, actor), "departments": rows}


# --- as tables -----------------------------------------------------------------------------


def _flat(report: dict[str, Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "month": report["month"],
            **row,
            **{f"refused_{code}": n for code, n in row["refusals_by_code"].items()},
            **{f"suppressed_{rule}": row["suppressed_by_rule"][rule] for rule in SUPPRESSION_RULES},
            "suppressed_other": sum(
                n for rule, n in row["suppressed_by_rule"].items() if rule not in SUPPRESSION_RULES
            ),
        }
        for row in rows
    ]


def datasets_table(report: dict[str, Any]) -> Table:
    return Table(
        f"数据集考核 {report['month']}",
        (*_DATASET_COLUMNS, *_FIGURE_COLUMNS),
        _flat(report, report["datasets"]),
    )


def departments_table(report: dict[str, Any]) -> Table:
    return Table(
        f"部门考核 {report['month']}",
        (*_DEPARTMENT_COLUMNS, *_FIGURE_COLUMNS),
        _flat(report, report["departments"]),
    )


_N = Kind.NUMBER
_RULE_HEADERS: Final = {
    threshold.RULE: "最少贡献者",
    dominance.RULE: "优势",
    audit.RULE: "差分",
    control.SECONDARY_RULE: "二次抑制",
    control.UNEVALUABLE_RULE: "无法计算",
}
_CODE_HEADERS: Final = {
    DisclosureRefused.code: "披露规则",
    PlanError.code: "计划无效",
    CompileError.code: "代码被拒",
    ContractScopeError.code: "超出合同范围",
}
_DATASET_COLUMNS: Final = (
    Column("month", "月份"),
    Column("dataset", "数据集"),
    Column("title", "数据集名称"),
    Column("department_id", "部门编号"),
    Column("department", "数据提供部门"),
)
_DEPARTMENT_COLUMNS: Final = (
    Column("month", "月份"),
    Column("department_id", "部门编号"),
    Column("department", "数据提供部门"),
    Column("datasets", "数据集数", _N),
)
_FIGURE_COLUMNS: Final = (
    Column("versions_published", "本月发布版本数", _N),
    Column("last_version_at", "最近版本时间", Kind.TIME),
    Column("days_since_last_version", "距最近版本天数", _N),
    Column("jobs", "读取作业数", _N),
    Column("jobs_succeeded", "成功作业数", _N),
    Column("operators", "运营单位数", _N),
    Column("rows_scanned", "扫描行数", _N),
    Column("fees", "收费（元）", Kind.MONEY),
    Column("refusals", "拒绝作业数", _N),
    *(Column(f"refused_{c}", f"拒绝：{h}", _N) for c, h in _CODE_HEADERS.items()),
    Column("suppressed_cells", "抑制单元格数", _N),
    *(Column(f"suppressed_{r}", f"抑制：{h}", _N) for r, h in _RULE_HEADERS.items()),
    Column("suppressed_other", "抑制：其他", _N),
    Column("approval_decisions", "审批决定数", _N),
    Column("approval_median_hours", "审批用时中位数（小时）", _N),
    Column("approval_max_hours", "审批用时最长（小时）", _N),
    Column("open_demands", "未结需求数", _N),
    Column("product_calls", "数据产品调用数", _N),
)
