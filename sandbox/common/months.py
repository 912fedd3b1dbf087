"""Calendar months as the bureau counts them: Beijing time (UTC+8), written YYYY-MM.

Bills, revenue, usage reports and the departments' statistics are all per such month. A
month's bounds are stored times (naive UTC, `clock.stored`), so they compare directly with
the database's columns: [start, end).
"""

from __future__ import annotations

import datetime as dt
import re

from contracts.quota import BEIJING
from sandbox.common import clock
from sandbox.errors import BadRequest

_MONTH = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")


def bounds(month: str, what: str = "month") -> tuple[dt.datetime, dt.datetime]:
    """The first moment of `month` and of the month after, as stored times. `what` names
    the parameter in the refusal of anything that is not a month."""
    m = _MONTH.fullmatch(month)
    if not m:
        raise BadRequest(f"{what} must be a month written YYYY-MM, e.g. 2026-11")
    year, number = int(m[1]), int(m[2])
    start = dt.datetime(year, number, 1, tzinfo=BEIJING)
    end = dt.datetime(year + number // 12, number % 12 + 1, 1, tzinfo=BEIJING)
    return clock.stored(start), clock.stored(end)


def of(moment: dt.datetime) -> str:
    """The month (Beijing time) an aware moment falls in, as YYYY-MM."""
    return moment.astimezone(BEIJING).strftime("%Y-%m")


def current() -> str:
    return of(clock.now())
