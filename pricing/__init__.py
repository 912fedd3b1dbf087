"""Pricing: price schedules, metered usage → charges, settlement against quotes.

A pure domain package: no web framework, database or cluster imports.
"""

from pricing.charge import (
    CURRENCY,
    PURPOSE_CLASSES,
    Charge,
    ChargeLine,
    Metered,
    PurposeClass,
    price,
    settle,
)
from pricing.errors import (
    ChargeError,
    MeteringError,
    MoneyError,
    PricingError,
    ScheduleError,
    SettlementError,
)
from pricing.money import FEN, check_money, format_money, parse_money, round_fen, sum_money
from pricing.schedule import LEVELS, UNITS, PriceItem, PriceSchedule, Unit, parse_schedule

__all__ = [
    "CURRENCY",
    "FEN",
    "LEVELS",
    "PURPOSE_CLASSES",
    "UNITS",
    "Charge",
    "ChargeError",
    "ChargeLine",
    "Metered",
    "MeteringError",
    "MoneyError",
    "PriceItem",
    "PriceSchedule",
    "PricingError",
    "PurposeClass",
    "ScheduleError",
    "SettlementError",
    "Unit",
    "check_money",
    "format_money",
    "parse_money",
    "parse_schedule",
    "price",
    "round_fen",
    "settle",
    "sum_money",
]
