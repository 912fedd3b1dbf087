"""How a department's datasets are used: counts per dataset and month, nothing else.

A department approves who may read its data, so it may see how much is read; it never sees
job code, parameters or outputs, which belong to the operator and the regulator."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select

from operators.roles import Role
from sandbox.context import Context
from sandbox.records import money
from sandbox.records.principals import Actor, require
from sandbox.store.models import Dataset, Job


def dataset_usage(ctx: Context, actor: Actor) -> list[dict[str, Any]]:
    """Per dataset of the calling department and billing month (newest first): finished jobs
    that read it and the rows they scanned in it."""
    require(actor, Role.provider)
    with ctx.reading() as s:
        mine = select(Dataset.name, Dataset.title).where(Dataset.provider_id == actor.id)
        titles = {name: title for name, title in s.execute(mine)}
        totals: dict[tuple[str, str], dict[str, Any]] = {}
        finished = select(Job.finished_at, Job.usage).where(Job.finished_at.is_not(None))
        for finished_at, usage in s.execute(finished):
            for name, rows in ((usage or {}).get("rows_by_dataset") or {}).items():
                if name not in titles:
                    continue
                month = money.period_of(finished_at.replace(tzinfo=dt.UTC))
                t = totals.setdefault(
                    (name, month),
                    {"dataset": name, "title": titles[name], "period": month, "jobs": 0, "rows": 0},
                )
                t["jobs"] += 1
                t["rows"] += int(rows)
    newest_first = sorted(totals.values(), key=lambda t: str(t["period"]), reverse=True)
    return sorted(newest_first, key=lambda t: str(t["dataset"]))
