"""Errors raised by the pricing package.

Every class carries a snake_case ``code`` that the API puts in its JSON error
envelope; messages say what was wrong and how to fix it.

    PricingError
    ├── MoneyError          invalid_money             an amount is not yuan with fen precision
    ├── ScheduleError       invalid_price_schedule    a price schedule fails validation
    ├── CapsError           invalid_price_caps        a set of price caps fails validation
    ├── CapExceeded         price_above_cap           a schedule prices a unit above its cap
    │                                                 (or a product a call above its scenario's)
    ├── ProductPriceError   invalid_product_price     a product's price or trial is malformed
    ├── MeteringError       invalid_metering          metered usage is malformed
    ├── ChargeError         invalid_charge            a charge is malformed or cannot be computed
    ├── SettlementError     settlement_exceeds_quote  an actual charge is above its quote
    └── RevenueError        invalid_revenue           revenue lines or report inputs are malformed
"""

from __future__ import annotations


class PricingError(Exception):
    """Base of every pricing error."""

    code: str = "pricing_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MoneyError(PricingError):
    code = "invalid_money"


class ScheduleError(PricingError):
    code = "invalid_price_schedule"


class CapsError(PricingError):
    code = "invalid_price_caps"


class CapExceeded(PricingError):
    code = "price_above_cap"


class ProductPriceError(PricingError):
    code = "invalid_product_price"


class MeteringError(PricingError):
    code = "invalid_metering"


class ChargeError(PricingError):
    code = "invalid_charge"


class SettlementError(PricingError):
    code = "settlement_exceeds_quote"


class RevenueError(PricingError):
    code = "invalid_revenue"
