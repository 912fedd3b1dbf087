"""The service's clock and its forms of time: every time the service reads goes through `now`.

Times are stored as naive UTC (SQLite keeps no zone, and one rule serves every database) and
written out as ISO 8601 in UTC with a `Z`.
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from typing import overload


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def stored(moment: dt.datetime) -> dt.datetime:
    """`moment` as the database keeps it: naive UTC."""
    return moment.astimezone(dt.UTC).replace(tzinfo=None)


def stored_now() -> dt.datetime:
    return stored(now())


@overload
def text(moment: dt.datetime) -> str: ...
@overload
def text(moment: None) -> None: ...
@overload
def text(moment: dt.datetime | None) -> str | None: ...


def text(moment: dt.datetime | None) -> str | None:
    """ISO 8601 in UTC with a `Z`; a stored (naive) time is taken as UTC."""
    if moment is None:
        return None
    aware = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    return aware.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def whole_steps(seconds: Decimal, step: Decimal) -> int:
    """How many steps of `step` seconds cover `seconds`: at least one, so that even no time
    shows as a step (timing is reported, and private jobs are held, in whole steps)."""
    return max(1, math.ceil(seconds / step))
