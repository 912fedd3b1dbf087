"""When a dataset's source is pulled again: a few plain forms a person can read, on the wall
clock of a time zone (the bureau's, Asia/Shanghai, unless the schedule names another).

    hourly                          every hour, on the hour
    every 6h / every 15m            from local midnight in steps that divide the day
    daily 02:00                     once a day
    weekly mon 03:30 Asia/Shanghai  once a week

A scheduler asks `next_after(now)` and sleeps until then: times go in and out as aware UTC,
and the wall-clock arithmetic (day boundaries, other zones, summer time) happens here only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sandbox.errors import IngestError

DEFAULT_ZONE = "Asia/Shanghai"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DAY_MINUTES = 24 * 60
# Steps that divide an hour or a day, so every day has the same slots; under 5 minutes a
# schedule would pull a department's database more often than any dataset changes.
_HOUR_STEPS = (1, 2, 3, 4, 6, 8, 12, 24)
_MINUTE_STEPS = (5, 10, 15, 20, 30)
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_STEP = re.compile(r"^(\d+)([hm])$")

FORMS = (
    "'hourly', 'daily HH:MM', 'weekly mon HH:MM' (mon … sun), 'every Nh' (N one of "
    f"{', '.join(map(str, _HOUR_STEPS))}) or 'every Nm' (N one of "
    f"{', '.join(map(str, _MINUTE_STEPS))}), each optionally followed by a time zone "
    f"(default {DEFAULT_ZONE}), e.g. 'daily 02:00 {DEFAULT_ZONE}'"
)


@dataclass(frozen=True)
class Schedule:
    """Local wall-clock times of day (`slots`, minutes after midnight), on every day or on
    one weekday (0 = Monday)."""

    text: str  # the canonical form, e.g. "daily 02:00 Asia/Shanghai"
    slots: tuple[int, ...]
    zone: ZoneInfo
    weekday: int | None = None

    def __str__(self) -> str:
        return self.text

    @classmethod
    def parse(cls, text: str) -> Schedule:
        words = text.split()
        if not words:
            raise IngestError(f"the schedule is empty; accepted forms: {FORMS}")
        form, rest = words[0].lower(), words[1:]
        arity = {"hourly": 0, "daily": 1, "weekly": 2, "every": 1}.get(form)
        if arity is None or len(rest) not in (arity, arity + 1):
            raise IngestError(f"schedule {text!r} is not understood; accepted forms: {FORMS}")
        zone = _zone(rest[arity] if len(rest) > arity else DEFAULT_ZONE)
        zone_name = zone.key
        if form == "hourly":
            return cls(f"hourly {zone_name}", _steps(60), zone)
        if form == "every":
            minutes = _step(rest[0])
            unit = f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"
            return cls(f"every {unit} {zone_name}", _steps(minutes), zone)
        at = _clock(rest[arity - 1])
        clock = f"{at // 60:02d}:{at % 60:02d}"
        if form == "daily":
            return cls(f"daily {clock} {zone_name}", (at,), zone)
        day = _weekday(rest[0])
        return cls(f"weekly {DAYS[day]} {clock} {zone_name}", (at,), zone, day)

    def next_after(self, moment: datetime) -> datetime:
        """The first time of the schedule strictly after `moment` (aware), in UTC."""
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError("next_after needs an aware datetime (UTC), not a naive one")
        today = moment.astimezone(self.zone).date()
        best: datetime | None = None
        # From the day before (a slot late on the local yesterday can still be ahead of a
        # moment given in UTC) to a week ahead, where a weekly slot falls at the latest. Days
        # follow each other in time, so once one has a slot ahead the next is the last to see.
        for ahead in range(-1, 9):
            day = today + timedelta(days=ahead)
            if best is not None and day > best.astimezone(self.zone).date() + timedelta(days=1):
                break
            if self.weekday is not None and day.weekday() != self.weekday:
                continue
            for slot in self.slots:
                for instant in self._instants(day, slot):
                    if instant > moment and (best is None or instant < best):
                        best = instant
        assert best is not None  # every form has a slot within any eight days
        return best

    def _instants(self, day: date, slot: int) -> tuple[datetime, ...]:
        """The moments (UTC) at which a wall-clock slot happens: usually one; two in the
        hour a summer-time change repeats, of which a once-a-day schedule keeps the first; in
        the hour it skips, the slot moves later by the length of the skip."""
        wall = datetime.combine(day, time(slot // 60, slot % 60))
        first = wall.replace(tzinfo=self.zone).astimezone(UTC)
        second = wall.replace(tzinfo=self.zone, fold=1).astimezone(UTC)
        if first == second or len(self.slots) == 1:
            return (first,)
        repeated = all(
            m.astimezone(self.zone).replace(tzinfo=None) == wall for m in (first, second)
        )
        return (first, second) if repeated else (first,)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise IngestError(
            f"unknown time zone {name!r} in the schedule; use an IANA name such as "
            f"{DEFAULT_ZONE} or UTC"
        ) from None


def _clock(text: str) -> int:
    match = _CLOCK.match(text)
    if not match:
        raise IngestError(
            f"{text!r} in the schedule is not a time of day; write HH:MM, 00:00 to 23:59"
        )
    return int(match[1]) * 60 + int(match[2])


def _weekday(text: str) -> int:
    word = text.lower()
    for names in (DAYS, _FULL_DAYS):
        if word in names:
            return names.index(word)
    raise IngestError(
        f"{text!r} in the schedule is not a day of the week; use one of {', '.join(DAYS)}"
    )


def _step(text: str) -> int:
    match = _STEP.match(text.lower())
    number = int(match[1]) if match else 0
    if match and match[2] == "h" and number in _HOUR_STEPS:
        return number * 60
    if match and match[2] == "m" and number in _MINUTE_STEPS:
        return number
    raise IngestError(
        f"'every {text}' is not a step the schedule takes: use 'every Nh' with N one of "
        f"{', '.join(map(str, _HOUR_STEPS))}, or 'every Nm' with N one of "
        f"{', '.join(map(str, _MINUTE_STEPS))} (steps that divide the day evenly)"
    )


def _steps(minutes: int) -> tuple[int, ...]:
    return tuple(range(0, DAY_MINUTES, minutes))
