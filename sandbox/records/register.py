"""What the bureau publishes to everyone, signed out: the catalog (metadata only), the fees
in force and their caps, the public register of active contracts with the fees charged per
month (totals only), and the latest signed checkpoint of the log.

The API's /v1/public routes and the console's public pages both read through here, so that
neither shows anyone more than the other."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from contracts.lifecycle import Status
from pricing import Charge, format_money
from sandbox.catalog.models import DatasetInfo
from sandbox.context import Context
from sandbox.errors import Conflict
from sandbox.ledger import log
from sandbox.records import directory, money, registry
from sandbox.store.models import Contract, Job, Principal


@dataclass(frozen=True)
class Catalog:
    """The datasets a search finds, and the names of the departments that provide them."""

    datasets: list[DatasetInfo]
    departments: dict[str, str]  # provider id → name, of every dataset's provider
    levels: list[str]
    topics: list[str]


def catalog(
    ctx: Context, q: str = "", department: str = "", level: str = "", topic: str = ""
) -> Catalog:
    """Datasets whose name, title or description contains `q` (any case), of one department,
    level and topic."""
    with ctx.reading() as s:
        everything = registry.all_datasets(ctx, s)
        names = directory.load(s)
    needle = q.strip().lower()
    shown = [
        d
        for d in everything
        if (not needle or needle in " ".join((d.name, d.title, d.description or "")).lower())
        and (not department or d.provider_id == department)
        and (not level or d.level == level)
        and (not topic or d.topic == topic)
    ]
    departments = {d.provider_id: names.name(d.provider_id) or d.provider_id for d in everything}
    topics = sorted({d.topic for d in everything if d.topic})
    return Catalog(shown, departments, sorted({d.level for d in everything}), topics)


def dataset(ctx: Context, name: str) -> tuple[DatasetInfo, str]:
    """One dataset's data dictionary and the name of its department."""
    with ctx.reading() as s:
        info = registry.get(ctx, s, name)
        provider = s.get(Principal, info.provider_id)
    return info, provider.name if provider else info.provider_id


def public_dataset(info: DatasetInfo, department: str) -> dict[str, Any]:
    return {**info.to_json(), "department": department}


def fees(ctx: Context) -> dict[str, Any]:
    """The schedule in force (None before the first) and the caps it must stay within."""
    with ctx.reading() as s:
        try:
            schedule_id, schedule = money.in_force(s)
            current: dict[str, Any] | None = {"id": schedule_id, **schedule.to_json()}
        except Conflict:
            current = None
        caps = money.caps_in_force(s)
    return {"schedule": current, "caps": caps.to_json() if caps else None}


def contracts_in_force(ctx: Context) -> list[dict[str, Any]]:
    """Active contracts as the public register lists them: who, under which licence, which
    datasets, for which class of purpose, for how long. Nothing of their spend or jobs."""
    with ctx.reading() as s:
        rows = s.scalars(
            select(Contract)
            .where(Contract.status == Status.active)
            .order_by(Contract.created_at, Contract.id)
        ).all()
        names = directory.load(s)
        licences = {
            pid: licence
            for pid, licence in s.execute(
                select(Principal.id, Principal.license_no).where(
                    Principal.id.in_({r.operator_id for r in rows})
                )
            )
        }
    return [
        {
            "contract_id": r.id,
            "operator_name": names.name(r.operator_id) or r.operator_id,
            "license_no": licences.get(r.operator_id),
            "datasets": [
                {"name": d, "title": names.dataset_title(d) or d}
                for d in sorted(r.document["datasets"])
            ],
            "purpose_class": r.document["purpose_class"],
            "valid_from": r.document["valid_from"],
            "valid_to": r.document["valid_to"],
        }
        for r in rows
    ]


def monthly_fees(ctx: Context) -> list[dict[str, Any]]:
    """Fees charged per billing month (Beijing time), all operators together, oldest first:
    the total only, never a job's or an operator's charge."""
    totals: dict[str, Decimal] = defaultdict(Decimal)
    with ctx.reading() as s:
        for finished_at, charge in s.execute(
            select(Job.finished_at, Job.charge).where(
                Job.charge.is_not(None), Job.finished_at.is_not(None)
            )
        ):
            # Stored naive in UTC.
            period = money.period_of(finished_at.replace(tzinfo=dt.UTC))
            totals[period] += Charge.from_json(charge).amount
    return [{"period": p, "total": format_money(totals[p])} for p in sorted(totals)]


def public_register(ctx: Context) -> dict[str, Any]:
    return {"contracts": contracts_in_force(ctx), "fees_by_month": monthly_fees(ctx)}


def checkpoint(ctx: Context) -> dict[str, Any]:
    """The log's latest checkpoint, signed by the bureau: anyone can hold the service to it."""
    with ctx.reading() as s:
        return log.checkpoint(s, ctx.settings.log_origin, ctx.bureau_key)
