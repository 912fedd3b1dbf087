"""Data products: the bureau's caps per scenario, operators' products and customers' keys,
customers' calls, and the public list."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sandbox.api.models.common import Open

# --- request bodies (checked by `sandbox.records.products`, whose messages say what to fix)


class CapSet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_price: str = Field(description='The most a call may cost, yuan as text, e.g. "5.00"')
    description: str | None = Field(None, description="What the scenario covers")


class ProductPublished(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="The product's name, e.g. 小微企业经营指数")
    scenario: str = Field(description="Its application scenario (应用场景), which has a cap")
    description: str = Field(description="What it answers, for the public list")
    contract_id: str = Field(description="The operator's active contract its calls run under")
    template_id: str = Field(description="The operator's template it runs")
    template_version: int = Field(description="The approved version of that template")
    price: str = Field(description='Price per call in yuan, at most the cap, e.g. "4.00"')
    purpose_class: str | None = Field(None, description="The contract's; checked if given")
    trial_price: str | None = Field(None, description="试运行价格: at most price")
    trial_until: str | None = Field(None, description="When the trial price ends (ISO 8601)")


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(description="Why; shown on the product")


class KeyIssued(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer: str = Field(description="Who the key is for")


class CallMade(BaseModel):
    model_config = ConfigDict(extra="forbid")
    params: dict[str, Any] = Field(default_factory=dict, description="The template's parameters")
    idempotency_key: str | None = Field(None, description="The same key returns the same call")


# --- responses ---------------------------------------------------------------------------


class Cap(Open):
    scenario: str
    max_price: str
    description: str
    updated_at: str | None
    updated_by: str | None
    history: list[dict[str, Any]]


class Caps(Open):
    caps: list[Cap]


class ProductKey(Open):
    id: str
    product_id: str
    customer: str
    issued_at: str | None
    revoked_at: str | None
    key: str | None = Field(None, description="The key itself: in the answer to issuing only")


class ProductKeys(Open):
    keys: list[ProductKey]


class Product(Open):
    id: str
    operator_id: str
    operator_name: str | None = None
    contract_id: str
    template_id: str
    template_version: int
    name: str
    scenario: str
    description: str
    purpose_class: str
    price: str
    trial_price: str | None
    trial_until: str | None
    cap: str | None
    price_now: str | None = Field(None, description="What a call costs now (trial, capped)")
    currency: str
    status: str = Field(description="active or suspended")
    status_reason: str | None
    created_at: str | None
    history: list[dict[str, Any]]
    calls: int = 0
    charged_calls: int = Field(0, description="Calls that delivered a result (and were charged)")
    revenue: str = Field("0.00", description="The operator's prices of the charged calls")


class Products(Open):
    products: list[Product]


class Call(Open):
    id: str = Field(description="The call's id (the id of the job that ran it)")
    product_id: str | None
    status: str
    created_at: str | None
    finished_at: str | None
    outputs: dict[str, Any]
    price: str
    charged: bool = Field(description="Whether the customer pays for it: only if it succeeded")
    currency: str


class PublicProduct(Open):
    id: str
    name: str
    operator_name: str | None
    description: str
    price: str
    trial_price: str | None
    trial_until: str | None
    price_now: str | None = None


class PublicScenario(Open):
    scenario: str
    cap: str | None
    products: list[PublicProduct]


class PublicProducts(Open):
    scenarios: list[PublicScenario]
