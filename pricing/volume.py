"""Rows by volume: which price each of a job's rows pays, and what that costs exactly.

Rows are priced by the item that covers their level (``PriceSchedule.price_for``).
A flat item prices each dataset's rows alone. A tiered item counts rows over the
billing month, per operator and per item: its month so far is the rows the
operator already scanned at every level the item prices, and the job's rows
continue from there.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from pricing.metering import RowsUse
from pricing.money import round_fen
from pricing.schedule import LEVELS, PriceItem, PriceSchedule


@dataclass(frozen=True)
class RowsSegment:
    """``rows`` of one dataset priced at one price (``tier`` None for a flat item)."""

    dataset: str
    level: str
    tier: int | None
    rows: int
    list_amount: Decimal


def rows_segments(
    schedule: PriceSchedule, uses: tuple[RowsUse, ...], month_to_date: Mapping[str, int]
) -> list[RowsSegment]:
    """Price rows at list price, one segment per dataset (and per tier it reaches).

    Segments come in the order of ``uses`` (sorted by dataset name), tiers
    ascending. Uses with no rows, or at a level the schedule does not price,
    have none.
    """
    by_item: dict[int, list[RowsUse]] = {}
    for use in uses:
        index = schedule.index_for("rows", use.level)
        if index is not None and use.rows > 0:
            by_item.setdefault(index, []).append(use)
    segments: list[RowsSegment] = []
    for index, item_uses in by_item.items():
        item = schedule.items[index]
        if item.tiers:
            start = sum(
                month_to_date.get(level, 0)
                for level in LEVELS
                if schedule.index_for("rows", level) == index
            )
            segments.extend(_tiered(schedule, item, item_uses, start))
        else:
            segments.extend(_flat(schedule, item, use) for use in item_uses)
    order = {(use.dataset, use.level): position for position, use in enumerate(uses)}
    segments.sort(key=lambda s: (order[(s.dataset, s.level)], -1 if s.tier is None else s.tier))
    return segments


def _flat(schedule: PriceSchedule, item: PriceItem, use: RowsUse) -> RowsSegment:
    assert item.price is not None  # an item has a price or tiers
    exact = _cost(use.rows, item.price, item.per, schedule.multiplier(use.dataset))
    return RowsSegment(use.dataset, use.level, None, use.rows, round_fen(exact))


def _tiered(
    schedule: PriceSchedule, item: PriceItem, uses: list[RowsUse], start: int
) -> Iterator[RowsSegment]:
    """Fill the tiers from ``start``, rounding the running total, not each segment.

    Each segment costs the rounded running total at its end minus the one at its
    start, so the item's segments add up to its exact cost rounded once. Rounding
    segments alone could make a job a fen dearer just because its rows straddle a
    tier boundary, and later in the month must never be dearer. For the same
    reason datasets fill the tiers highest multiplier first: then scanning fewer
    rows of any dataset never costs more, so a quote priced at the bound stays
    above the actual charge.
    """
    order = sorted(uses, key=lambda u: (-schedule.multiplier(u.dataset), u.dataset, u.level))
    position, running, billed = start, Fraction(0), Fraction(0)
    for use in order:
        multiplier = schedule.multiplier(use.dataset)
        for tier, rows in _overlaps(item, position, position + use.rows):
            running += _cost(rows, item.tiers[tier].price, item.per, multiplier)
            rounded = Fraction(round_fen(running))
            yield RowsSegment(use.dataset, use.level, tier, rows, round_fen(rounded - billed))
            billed = rounded
        position += use.rows


def _overlaps(item: PriceItem, begin: int, end: int) -> Iterator[tuple[int, int]]:
    """(tier index, rows) for the rows numbered ``begin`` (inclusive) to ``end`` (exclusive)."""
    low = 0
    for index, tier in enumerate(item.tiers):
        high = tier.up_to
        rows = (end if high is None else min(end, high)) - max(begin, low)
        if rows > 0:
            yield index, rows
        if high is None or high >= end:
            return
        low = high


def _cost(rows: int, price: Decimal, per: int, multiplier: Decimal) -> Fraction:
    return Fraction(rows) * Fraction(price) * Fraction(multiplier) / per
