"""Money: price schedules and caps, charges and quotes, prepaid accounts, bills, revenue."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SkipValidation

from sandbox.api.models.common import DomainChecked, Number, Open

_MONEY = "Decimal string of yuan"

# --- request bodies (checked by `pricing`) ---------------------------------------------------


class TierBody(DomainChecked):
    REQUIRED: ClassVar[tuple[str, ...]] = ("price",)
    up_to: SkipValidation[int | None] = Field(
        None, description="Last unit of the tier; null for the last tier"
    )
    price: SkipValidation[str] = Field(None, description=_MONEY)


class PriceItemBody(DomainChecked):
    REQUIRED: ClassVar[tuple[str, ...]] = ("unit",)
    unit: SkipValidation[str] = Field(None, description="call, rows, compute_seconds, output…")
    price: SkipValidation[str] = Field(None, description=_MONEY + " (or `tiers`)")
    per: SkipValidation[int] = Field(None, description="Units the price is for, e.g. 10000 rows")
    level: SkipValidation[str] = Field(None, description="Only for data of this level (L1–L4)")
    tiers: SkipValidation[list[TierBody]] = Field(None, description="Graduated prices")


class PriceScheduleBody(DomainChecked):
    """A new version of the published fees."""

    REQUIRED: ClassVar[tuple[str, ...]] = ("name", "effective_from", "items")
    name: SkipValidation[str] = Field(None)
    effective_from: SkipValidation[str] = Field(None, description="ISO 8601 with a time zone")
    items: SkipValidation[list[PriceItemBody]] = Field(None)
    multipliers: SkipValidation[dict[str, str]] = Field(
        None, description=("Per dataset, a decimal factor on its data-volume price")
    )


class CapBody(DomainChecked):
    REQUIRED: ClassVar[tuple[str, ...]] = ("unit", "max_price")
    unit: SkipValidation[str] = Field(None)
    max_price: SkipValidation[str] = Field(None, description=_MONEY)
    per: SkipValidation[int] = Field(None)
    level: SkipValidation[str] = Field(None)


class PriceCapsBody(DomainChecked):
    """Maximum fees; later schedules above them are refused."""

    REQUIRED: ClassVar[tuple[str, ...]] = ("name", "effective_from", "items")
    name: SkipValidation[str] = Field(None)
    effective_from: SkipValidation[str] = Field(None, description="ISO 8601 with a time zone")
    items: SkipValidation[list[CapBody]] = Field(None)


# --- responses ----------------------------------------------------------------------------


class Tier(Open):
    up_to: int | None = None
    price: str | None = None


class PriceItem(Open):
    unit: str
    price: str | None = Field(None, description=_MONEY)
    per: int | None = None
    level: str | None = None
    tiers: list[Tier] | None = None


class PriceSchedule(Open):
    id: int
    name: str
    effective_from: str
    items: list[PriceItem]
    multipliers: dict[str, str] | None = None


class Cap(Open):
    unit: str
    max_price: str = Field(description=_MONEY)
    per: int | None = None
    level: str | None = None


class PriceCaps(Open):
    id: int | None = Field(None, description="Present when just published")
    name: str
    effective_from: str
    items: list[Cap]


class ChargeLine(Open):
    unit: str
    quantity: Number | str
    amount: str = Field(description=_MONEY)
    list_amount: str | None = Field(None, description="The amount at list price")
    level: str | None = None
    dataset: str | None = None
    tier: int | None = None


class Charge(Open):
    """A quote or a charge: the amount, in CNY, line by line."""

    amount: str = Field(description=_MONEY)
    currency: str
    lines: list[ChargeLine]
    list_amount: str | None = None


class AllowedRevenue(Open):
    period: str
    amount: str = Field(description=_MONEY)


class Prepaid(Open):
    operator_id: str
    balance: str
    reserved: str
    available: str


class BilledCharge(Charge):
    job_id: str
    contract_id: str
    operator_id: str
    operator_name: str | None = None
    status: str
    finished_at: str | None = None


class Statement(Open):
    period: str
    operator_id: str | None
    currency: str
    charges: list[BilledCharge]
    total: str
    list_total: str


class RevenueByOperator(Open):
    operator_id: str | None = None
    operator_name: str | None = None
    amount: str
    list_amount: str


class RevenueByDataset(Open):
    dataset: str | None = None
    dataset_title: str | None = None
    department: str | None = None
    amount: str
    list_amount: str


class RevenueByUnit(Open):
    unit: str | None = None
    amount: str
    list_amount: str


class RevenueByScenario(Open):
    """Data products' calls in one scenario: what customers paid, against the caps."""

    scenario: str
    calls: int
    charged_calls: int
    revenue: str
    max_allowed_revenue: str
    within: bool


class Revenue(Open):
    period: str
    currency: str
    revenue: str
    list_value: str
    public_interest_list_value: str
    allowed_revenue: str | None = None
    carried_deduction: str | None = None
    effective_allowed: str | None = None
    excess: str | None = None
    carry_forward: str | None = None
    by_operator: list[RevenueByOperator]
    by_dataset: list[RevenueByDataset]
    by_unit: list[RevenueByUnit]
    products_by_scenario: list[RevenueByScenario] = []
