"""Contract quotas, checked before a job is admitted.

Days and months are counted in Beijing time (UTC+8), the bureau's own calendar.
"""

from __future__ import annotations

import datetime as dt

from contracts.document import ContractDocument
from contracts.errors import ContractQuotaExceeded

BEIJING = dt.timezone(dt.timedelta(hours=8), "UTC+8")


def day_start(moment: dt.datetime) -> dt.datetime:
    local = moment.astimezone(BEIJING)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def month_start(moment: dt.datetime) -> dt.datetime:
    return day_start(moment).replace(day=1)


def check_quotas(
    doc: ContractDocument, jobs_today: int, rows_this_month: int, job_rows: int
) -> None:
    """Raise if admitting one more job, which may scan up to `job_rows`, exceeds a quota.

    `jobs_today` counts jobs already admitted today; `rows_this_month` counts rows scanned,
    or reserved by jobs still running, this month.
    """
    jobs = doc.quotas.get("jobs_per_day")
    if jobs is not None and jobs_today + 1 > jobs:
        raise ContractQuotaExceeded(
            f"contract {doc.id} allows {jobs} job(s) per day (Beijing time) and "
            f"{jobs_today} ran today; try again tomorrow or apply for a larger quota"
        )
    rows = doc.quotas.get("rows_per_month")
    if rows is not None and rows_this_month + job_rows > rows:
        raise ContractQuotaExceeded(
            f"contract {doc.id} allows {rows} rows scanned per month; {rows_this_month} are "
            f"used or reserved and this job may scan up to {job_rows}. Scan less (fewer "
            "collect() calls or datasets), wait for next month, or apply for a larger quota"
        )
