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
from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from contracts.quota import BEIJING
from sandbox.common import months
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


def add(
    session: Session, scope: str, owner: str, period: str, amount: int, label: str = ""
) -> None:
    if amount == 0:
        return
    values = {"scope": scope, "owner": owner, "period": period, "label": label, "value": amount}
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(UsageCounter).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["scope", "owner", "period", "label"],
        set_={"value": UsageCounter.value + stmt.excluded.value},
    )
    session.execute(stmt)


def read(session: Session, scope: str, owner: str, period: str) -> dict[str, int]:
    """The counter's value per label (absent: 0)."""
    rows = session.execute(
        select(UsageCounter.label, UsageCounter.value).where(
            UsageCounter.scope == scope,
            UsageCounter.owner == owner,
            UsageCounter.period == period,
        )
    )
    return {label: int(value) for label, value in rows if value}


def one(session: Session, scope: str, owner: str, period: str) -> int:
    return read(session, scope, owner, period).get("", 0)


def add_all(
    session: Session, scope: str, owner: str, period: str, amounts: Mapping[str, int]
) -> None:
    for label, amount in sorted(amounts.items()):
        add(session, scope, owner, period, int(amount), label)
