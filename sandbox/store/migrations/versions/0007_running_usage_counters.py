"""Running usage counters: a contract's jobs of the day and rows of the month, an operator's
volume of the month by level, kept as jobs are admitted and settled instead of summed over
the month's jobs on every submission. Filled from the jobs already recorded.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_BEIJING = dt.timezone(dt.timedelta(hours=8))


def upgrade() -> None:
    counters = op.create_table(
        "usage_counters",
        sa.Column("scope", sa.String(length=32), nullable=False),
        sa.Column("owner", sa.String(length=32), nullable=False),
        sa.Column("period", sa.String(length=10), nullable=False),
        sa.Column("label", sa.String(length=16), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "owner", "period", "label"),
    )
    totals = _from_jobs(op.get_bind())
    if totals:
        op.bulk_insert(
            counters,
            [
                {"scope": s, "owner": o, "period": p, "label": label, "value": v}
                for (s, o, p, label), v in sorted(totals.items())
                if v
            ],
        )


def downgrade() -> None:
    op.drop_table("usage_counters")


def _local(stored: dt.datetime | str, fmt: str) -> str:
    if isinstance(stored, str):
        stored = dt.datetime.fromisoformat(stored)
    return stored.replace(tzinfo=dt.UTC).astimezone(_BEIJING).strftime(fmt)


def _json(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = json.loads(value)
    return value if isinstance(value, dict) else {}


def _from_jobs(bind: sa.engine.Connection) -> Counter[tuple[str, str, str, str]]:
    """What the counters would hold had they been kept from the start, as the sums they
    replace computed them."""
    rows = bind.execute(
        sa.text(
            "SELECT j.contract_id, j.operator_id, j.created_at, j.finished_at, j.usage, "
            "j.quote, j.charge, c.document FROM jobs j JOIN contracts c ON c.id = j.contract_id"
        )
    )
    totals: Counter[tuple[str, str, str, str]] = Counter()
    for contract, operator, created, finished, usage, quote, charge, document in rows:
        if quote in (None, "null"):
            continue  # refused at submission: never admitted, never counted
        usage = _json(usage)
        reserved = int(_json(usage.get("bounds")).get("rows_scanned", 0) or 0)
        scanned = int(usage.get("rows_scanned", reserved) or 0)
        totals[("contract_jobs_day", contract, _local(created, "%Y-%m-%d"), "")] += 1
        totals[("contract_rows_month", contract, _local(created, "%Y-%m"), "")] += scanned
        commercial = _json(document).get("purpose_class") == "commercial"
        if charge not in (None, "null") and commercial:
            month = _local(finished or created, "%Y-%m")
            for level, n in _json(usage.get("rows_by_level")).items():
                totals[("operator_volume_month", operator, month, level)] += int(n or 0)
    return totals
