"""Pricing: price schedules and caps, metered usage → charges, settlement, revenue.

A pure domain package: no web framework, database or cluster imports.
"""

from pricing.caps import CapItem, PriceCaps, check_caps, parse_caps
from pricing.charge import (
    CURRENCY,
    PURPOSE_CLASSES,
    Charge,
    ChargeLine,
    PurposeClass,
    price,
    settle,
)
from pricing.errors import (
    CapExceeded,
    CapsError,
    ChargeError,
    MeteringError,
    MoneyError,
    PricingError,
    RevenueError,
    ScheduleError,
    SettlementError,
)
from pricing.metering import Metered, RowsUse
from pricing.money import (
    FEN,
    check_money,
    format_money,
    parse_money,
    round_fen,
    sum_money,
)
from pricing.revenue import (
    RevenueLine,
    RevenueReport,
    RevenueTotals,
    charge_revenue_lines,
    revenue_report,
)
from pricing.schedule import (
    LEVELS,
    MAX_MULTIPLIER,
    UNITS,
    PriceItem,
    PriceSchedule,
    PriceTier,
    Unit,
    parse_schedule,
)

__all__ = [
    "CURRENCY",
    "FEN",
    "LEVELS",
    "MAX_MULTIPLIER",
    "PURPOSE_CLASSES",
    "UNITS",
    "CapExceeded",
    "CapItem",
    "CapsError",
    "Charge",
    "ChargeError",
    "ChargeLine",
    "Metered",
    "MeteringError",
    "MoneyError",
    "PriceCaps",
    "PriceItem",
    "PriceSchedule",
    "PriceTier",
    "PricingError",
    "PurposeClass",
    "RevenueError",
    "RevenueLine",
    "RevenueReport",
    "RevenueTotals",
    "RowsUse",
    "ScheduleError",
    "SettlementError",
    "Unit",
    "charge_revenue_lines",
    "check_caps",
    "check_money",
    "format_money",
    "parse_caps",
    "parse_money",
    "parse_schedule",
    "price",
    "revenue_report",
    "round_fen",
    "settle",
    "sum_money",
]
