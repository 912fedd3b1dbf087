"""Data products' prices (数据产品价格): a cap per application scenario (应用场景) set by the
bureau, an operator's price per call at or below it, a trial price (试运行价格) for a set
period, and the products' revenue by scenario against the maximum allowed revenue.

Rules, in the terms of the 2025 price-formation rules for authorized operation:

- a product's price per call is at most the cap of its scenario; a public-interest product
  (公共治理/公益) is free, whatever the cap;
- a trial price is at most the regular price (so at most the cap) and applies before
  ``trial_until``; from that moment on the regular price applies;
- a call is charged the price in force when it is made, and never more than the cap in
  force then: a cap lowered after publication lowers what calls cost, it never lets a
  call cost more than the cap (``charged_at``);
- the customer pays only for calls that delivered a result: a call the disclosure rules
  refused, or that failed, costs the customer nothing (the operator still pays the
  bureau's schedule for the job, as for any job);
- the maximum allowed revenue of a scenario is the sum, over the calls that were charged,
  of the cap per call in force at each; revenue is ``within`` when it is at most that.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from pricing.charge import PURPOSE_CLASSES, PurposeClass
from pricing.errors import CapExceeded, MoneyError, ProductPriceError
from pricing.money import ZERO, check_money, format_money, sum_money

SCENARIO_MAX = 100
PUBLIC_INTEREST_FREE = "public-interest use free"


def _scenario(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ProductPriceError('scenario: name the application scenario, e.g. "普惠金融"')
    text = value.strip()
    if len(text) > SCENARIO_MAX:
        raise ProductPriceError(f"scenario: keep the name to {SCENARIO_MAX} characters")
    return text


def _money(value: object, what: str) -> Decimal:
    try:
        return check_money(value, what=what)  # type: ignore[arg-type]  # checked inside
    except MoneyError as error:
        raise ProductPriceError(error.message) from None


def _aware(moment: object, what: str) -> datetime:
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise ProductPriceError(f"{what}: give a time with its zone, e.g. 2026-07-01T00:00:00Z")
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class ScenarioCap:
    """The most a product of ``scenario`` may charge per call, in yuan."""

    scenario: str
    max_price: Decimal

    def __post_init__(self) -> None:
        object.__setattr__(self, "scenario", _scenario(self.scenario))
        object.__setattr__(self, "max_price", _money(self.max_price, "max_price"))


@dataclass(frozen=True)
class ProductPrice:
    """An operator's price per call for one product; ``trial_price`` applies before
    ``trial_until`` (both or neither)."""

    scenario: str
    price: Decimal
    purpose_class: PurposeClass = "commercial"
    trial_price: Decimal | None = None
    trial_until: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "scenario", _scenario(self.scenario))
        if self.purpose_class not in PURPOSE_CLASSES:
            raise ProductPriceError(
                f"purpose_class: {self.purpose_class!r} is not known; "
                f"use one of {', '.join(PURPOSE_CLASSES)}"
            )
        price = _money(self.price, "price")
        object.__setattr__(self, "price", price)
        if (self.trial_price is None) != (self.trial_until is None):
            raise ProductPriceError(
                "a trial price needs trial_until, the moment the regular price takes over, "
                "and trial_until needs a trial_price; give both or neither"
            )
        if self.trial_price is not None:
            trial = _money(self.trial_price, "trial_price")
            object.__setattr__(self, "trial_price", trial)
            object.__setattr__(self, "trial_until", _aware(self.trial_until, "trial_until"))
            if trial > price:
                raise ProductPriceError(
                    f"trial_price {format_money(trial)} yuan is above the regular price "
                    f"{format_money(price)} yuan; a trial price is at most the regular one"
                )
        if self.purpose_class == "public_interest" and (
            price != ZERO or self.trial_price not in (None, ZERO)
        ):
            raise ProductPriceError(
                f"price: {PUBLIC_INTEREST_FREE}: a public-interest product is priced 0.00 "
                f"per call, not {format_money(price)} yuan"
            )

    def price_at(self, when: datetime) -> Decimal:
        """The price per call of a call made at ``when``: the trial price before
        ``trial_until``, the regular price from then on."""
        at = _aware(when, "when")
        if self.trial_price is not None and self.trial_until is not None and at < self.trial_until:
            return self.trial_price
        return self.price

    def charged_at(self, when: datetime, cap: ScenarioCap) -> Decimal:
        """What a call at ``when`` is charged under ``cap``, the cap in force then: the
        price in force, never above the cap (a cap lowered after publication)."""
        _same_scenario(self, cap)
        return min(self.price_at(when), cap.max_price)


def _same_scenario(product: ProductPrice, cap: ScenarioCap) -> None:
    if product.scenario != cap.scenario:
        raise ProductPriceError(
            f"the cap given is for scenario {cap.scenario!r}, not the product's "
            f"{product.scenario!r}"
        )


def check_price(product: ProductPrice, cap: ScenarioCap | None) -> None:
    """Refuse a product priced above its scenario's cap, naming the scenario, the price and
    the cap; a scenario without a cap cannot hold products yet."""
    if cap is None:
        raise ProductPriceError(
            f"scenario {product.scenario!r} has no price cap yet: the bureau sets one "
            "(PUT /v1/product-caps/{scenario}) before products are published in it"
        )
    _same_scenario(product, cap)
    for what, price in (("price", product.price), ("trial_price", product.trial_price)):
        if price is not None and price > cap.max_price:
            raise CapExceeded(
                f"{what} {format_money(price)} yuan per call is above the cap "
                f"{format_money(cap.max_price)} yuan per call of scenario {cap.scenario!r}; "
                f"lower it to at most {format_money(cap.max_price)}"
            )


@dataclass(frozen=True)
class ProductCall:
    """One call of a product: its scenario, the price charged (the operator's, capped) and
    the cap in force when it was made; ``delivered`` when it gave the customer a result."""

    scenario: str
    price: Decimal
    cap: Decimal
    delivered: bool

    def __post_init__(self) -> None:
        object.__setattr__(self, "scenario", _scenario(self.scenario))
        object.__setattr__(self, "price", _money(self.price, "price"))
        object.__setattr__(self, "cap", _money(self.cap, "cap"))
        if self.price > self.cap:
            raise CapExceeded(
                f"a call of scenario {self.scenario!r} charged {format_money(self.price)} "
                f"yuan, above the cap {format_money(self.cap)} yuan in force"
            )


@dataclass(frozen=True)
class ScenarioRevenue:
    """A scenario's calls (all, and those charged), revenue and maximum allowed revenue."""

    scenario: str
    calls: int
    charged_calls: int
    revenue: Decimal
    max_allowed: Decimal

    @property
    def within(self) -> bool:
        return self.revenue <= self.max_allowed

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "calls": self.calls,
            "charged_calls": self.charged_calls,
            "revenue": format_money(self.revenue),
            "max_allowed_revenue": format_money(self.max_allowed),
            "within": self.within,
        }


def revenue_by_scenario(calls: Iterable[ProductCall]) -> Mapping[str, ScenarioRevenue]:
    """Per scenario (in name order): every call counted, only delivered calls charged."""
    groups: dict[str, list[ProductCall]] = {}
    for call in calls:
        if not isinstance(call, ProductCall):
            raise ProductPriceError(f"expected a ProductCall, not {type(call).__name__}")
        groups.setdefault(call.scenario, []).append(call)
    out: dict[str, ScenarioRevenue] = {}
    for scenario in sorted(groups):
        charged = [c for c in groups[scenario] if c.delivered]
        out[scenario] = ScenarioRevenue(
            scenario=scenario,
            calls=len(groups[scenario]),
            charged_calls=len(charged),
            revenue=sum_money(c.price for c in charged),
            max_allowed=sum_money(c.cap for c in charged),
        )
    return MappingProxyType(out)


def to_fen(amount: Decimal) -> int:
    """Yuan with fen precision as integer fen."""
    return int(_money(amount, "amount") * 100)


def from_fen(fen: int) -> Decimal:
    if isinstance(fen, bool) or not isinstance(fen, int) or fen < 0:
        raise ProductPriceError(f"fen must be a whole number of fen, zero or more, not {fen!r}")
    # Built from text: exact whatever the Decimal context's precision.
    return Decimal(f"{fen // 100}.{fen % 100:02d}")
