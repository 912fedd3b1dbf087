"""Running totals a submission reads: a contract's jobs of the (Beijing) day and rows of the
month for its quotas, an operator's rows of the month by level for its volume tier.

Summing the month's jobs on every submission would make each one dearer than the last; a
counter is one row read, and one row written when a job is admitted and when it is settled,
in the same transaction as the job itself, so it never drifts from the jobs it counts. The
update is one statement (insert, or add to the value already there), safe when several API
workers admit jobs at once.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping

from sqlalchemy import Insert, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from contracts.quota import BEIJING
from sandbox.common import months
from sandbox.store import core
from sandbox.store.models import UsageCounter

JOBS_OF_DAY = "contract_jobs_day"
ROWS_OF_MONTH = "contract_rows_month"
VOLUME_OF_MONTH = "operator_volume_month"


def day_of(stored: dt.datetime) -> str:
    """The Beijing day of a stored (naive UTC) time, YYYY-MM-DD."""
    return stored.replace(tzinfo=dt.UTC).astimezone(BEIJING).strftime("%Y-%m-%d")


def month_of(stored: dt.datetime) -> str:
    """The Beijing month of a stored (naive UTC) time, YYYY-MM."""
    return months.of(stored.replace(tzinfo=dt.UTC))


# Built once per dialect, with bound parameters (store.core).
_READ = select(UsageCounter.label, UsageCounter.value).where(
    UsageCounter.scope == bindparam("scope"),
    UsageCounter.owner == bindparam("owner"),
    UsageCounter.period == bindparam("period"),
)
_KEY = ("scope", "owner", "period", "label")


@functools.cache
def _upsert(dialect: str) -> Insert:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(UsageCounter).values({c: bindparam(c) for c in (*_KEY, "value")})
    return stmt.on_conflict_do_update(
        index_elements=list(_KEY), set_={"value": UsageCounter.value + stmt.excluded.value}
    )


def add(
    session: Session, scope: str, owner: str, period: str, amount: int, label: str = ""
) -> None:
    add_all(session, scope, owner, period, {label: amount})


def read(session: Session, scope: str, owner: str, period: str) -> dict[str, int]:
    """The counter's value per label (absent: 0)."""
    rows = core.execute(session, _READ, {"scope": scope, "owner": owner, "period": period})
    return {label: int(value) for label, value in rows if value}


def one(session: Session, scope: str, owner: str, period: str) -> int:
    return read(session, scope, owner, period).get("", 0)


def add_all(
    session: Session, scope: str, owner: str, period: str, amounts: Mapping[str, int]
) -> None:
    values = [
        {"scope": scope, "owner": owner, "period": period, "label": label, "value": int(amount)}
        for label, amount in sorted(amounts.items())
        if amount
    ]
    if values:
        core.execute(session, _upsert(core.dialect(session)), values)
