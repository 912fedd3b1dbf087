"""Metered usage: what one job used, with rows scanned per dataset."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType

from pricing.errors import MeteringError
from pricing.schedule import LEVELS

# The empty name marks rows metered by level only (the older ``rows_by_level``
# form): they are priced like any dataset but take no multiplier.
UNNAMED = ""
_NO_ROWS: Mapping[str, int] = MappingProxyType({})


@dataclass(frozen=True)
class RowsUse:
    """``rows`` scanned from ``dataset``, whose classification level is ``level``."""

    dataset: str
    level: str
    rows: int

    def __post_init__(self) -> None:
        # Messages start with the field name so Metered can prefix the use's index.
        if not isinstance(self.dataset, str) or (self.dataset and not self.dataset.strip()):
            raise MeteringError(
                f"dataset: {self.dataset!r} is not a dataset name; give the name the dataset "
                "is registered under"
            )
        if self.level not in LEVELS:
            raise MeteringError(
                f"level: {self.level!r} is not a classification level; "
                f"use one of {', '.join(LEVELS)}"
            )
        _check_count("rows", self.rows)


@dataclass(frozen=True, init=False)
class Metered:
    """What a job used: calls, rows scanned per dataset, compute seconds, outputs.

    ``rows`` is kept sorted by dataset name, then level. ``rows_by_level=`` is
    the older constructor form, kept until every caller meters per dataset: it
    becomes one unnamed use per level.
    """

    calls: int
    rows: tuple[RowsUse, ...]
    compute_seconds: Decimal
    outputs: int

    def __init__(
        self,
        calls: int = 1,
        rows: Sequence[RowsUse] = (),
        compute_seconds: Decimal = Decimal(0),
        outputs: int = 0,
        *,
        rows_by_level: Mapping[str, int] | None = None,
    ) -> None:
        _check_count("calls", calls)
        _check_count("outputs", outputs)
        if rows_by_level is not None:
            if rows:
                raise MeteringError(
                    "rows_by_level: give rows per dataset in 'rows' or per level in "
                    "'rows_by_level', not both; prefer 'rows'"
                )
            rows = _uses_from_levels(rows_by_level)
        object.__setattr__(self, "calls", calls)
        object.__setattr__(self, "rows", _check_uses(rows))
        object.__setattr__(self, "compute_seconds", _check_seconds(compute_seconds))
        object.__setattr__(self, "outputs", outputs)

    @property
    def rows_by_level(self) -> Mapping[str, int]:
        """Rows scanned per classification level, over every dataset (sorted by level)."""
        totals: dict[str, int] = {}
        for use in self.rows:
            totals[use.level] = totals.get(use.level, 0) + use.rows
        return MappingProxyType({level: totals[level] for level in sorted(totals)})

    @property
    def rows_scanned(self) -> int:
        return sum(use.rows for use in self.rows)


def check_month_to_date(month_to_date: object) -> Mapping[str, int]:
    """Validate rows already scanned this month per level; return a sorted read-only copy."""
    if not isinstance(month_to_date, Mapping):
        raise MeteringError(
            "month_to_date: must map a classification level to the rows the operator already "
            'scanned this month, e.g. {"L3": 2500000}'
        )
    for level, rows in month_to_date.items():
        if level not in LEVELS:
            raise MeteringError(
                f"month_to_date: {level!r} is not a classification level; "
                f"use one of {', '.join(LEVELS)}"
            )
        _check_count(f"month_to_date[{level!r}]", rows)
    if not month_to_date:
        return _NO_ROWS
    return MappingProxyType({level: month_to_date[level] for level in sorted(month_to_date)})


def _uses_from_levels(rows_by_level: object) -> tuple[RowsUse, ...]:
    if not isinstance(rows_by_level, Mapping):
        raise MeteringError('rows_by_level: must map a level to rows scanned, e.g. {"L3": 120000}')
    for level, rows in rows_by_level.items():
        if level not in LEVELS:
            raise MeteringError(
                f"rows_by_level: {level!r} is not a classification level; "
                f"use one of {', '.join(LEVELS)}"
            )
        _check_count(f"rows_by_level[{level!r}]", rows)
    return tuple(RowsUse(UNNAMED, level, rows) for level, rows in rows_by_level.items())


def _check_uses(rows: object) -> tuple[RowsUse, ...]:
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence):
        raise MeteringError(
            'rows: must be a sequence of RowsUse, e.g. (RowsUse("population", "L3", 120000),)'
        )
    seen: dict[tuple[str, str], int] = {}
    for index, use in enumerate(rows):
        if not isinstance(use, RowsUse):
            raise MeteringError(
                f"rows[{index}]: expected a RowsUse(dataset, level, rows), not {type(use).__name__}"
            )
        # A named dataset has one level; unnamed rows are one entry per level.
        key = (use.dataset, use.level if use.dataset == UNNAMED else "")
        if key in seen:
            raise MeteringError(
                f"rows[{index}]: dataset {use.dataset!r} is already metered by "
                f"rows[{seen[key]}]; meter each dataset once, with its rows added together"
            )
        seen[key] = index
    # Sorted so that equal usage compares equal and prices identically, whatever the
    # order the engine reported the scans in.
    return tuple(sorted(rows, key=lambda use: (use.dataset, use.level)))


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MeteringError(f"{name}: {value!r} is not a count; use a whole number, 0 or more")


def _check_seconds(seconds: object) -> Decimal:
    if isinstance(seconds, float):
        raise MeteringError(
            "compute_seconds: is a float; pass a Decimal, e.g. Decimal(str(round(seconds, 3)))"
        )
    if isinstance(seconds, int) and not isinstance(seconds, bool):
        seconds = Decimal(seconds)
    if not isinstance(seconds, Decimal) or not seconds.is_finite() or seconds.is_signed():
        raise MeteringError(f"compute_seconds: {seconds!r} is not a Decimal of 0 or more seconds")
    return seconds
