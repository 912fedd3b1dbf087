"""Data products: caps per scenario (bureau), products and customers' keys (operators),
suspension (bureau, regulator), customers' calls (by product key), the public list."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header
from starlette.concurrency import run_in_threadpool

from sandbox.api.deps import Ctx, CurrentActor
from sandbox.api.models.common import ERRORS, SIGNED_IN, ModelRoute, errors
from sandbox.api.models.products import (
    Call,
    CallMade,
    Caps,
    CapSet,
    KeyIssued,
    Product,
    ProductKey,
    ProductKeys,
    ProductPublished,
    Products,
    PublicProducts,
    Reason,
)
from sandbox.api.models.products import Cap as CapModel
from sandbox.pipeline import products as calls
from sandbox.records import products

router = APIRouter(tags=["products"], route_class=ModelRoute, responses=ERRORS)
public_router = APIRouter(tags=["public"], route_class=ModelRoute, responses=ERRORS)

STEP = SIGNED_IN | errors(404, 409)
ProductKeyHeader = Annotated[
    str | None, Header(alias="X-Product-Key", description="The customer's key, pk_…")
]


@router.get("/product-caps", response_model=Caps)
def caps(ctx: Ctx) -> dict[str, Any]:
    """Every scenario's cap per call (public: no token needed)."""
    return {"caps": products.caps(ctx)}


@router.put("/product-caps/{scenario}", response_model=CapModel, responses=SIGNED_IN)
def set_cap(scenario: str, body: CapSet, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    """Bureau: set or change the most a product of `scenario` may charge per call. A cap
    lowered later caps what calls of dearer products cost from then on."""
    return products.set_cap(ctx, actor, scenario, body.max_price, body.description)


@router.post("/products", status_code=201, response_model=Product, responses=STEP)
def publish(body: ProductPublished, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    """Operator: publish a product on its approved template version under its active
    contract, priced at or below the scenario's cap (optionally a trial price until a date)."""
    return products.publish(ctx, actor, body.model_dump(exclude_none=True))


@router.get("/products", response_model=Products, responses=SIGNED_IN)
def list_products(ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    """An operator's own products, or all for the bureau and the regulator, with calls and
    revenue."""
    return {"products": products.listing(ctx, actor)}


@router.get("/products/{product_id}", response_model=Product, responses=SIGNED_IN | errors(404))
def get(product_id: str, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    return products.get(ctx, actor, product_id)


@router.post("/products/{product_id}/suspend", response_model=Product, responses=STEP)
def suspend(product_id: str, body: Reason, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    """Bureau or regulator: stop the product's calls, with the reason shown on it."""
    return products.suspend(ctx, actor, product_id, body.reason)


@router.post("/products/{product_id}/resume", response_model=Product, responses=STEP)
def resume(product_id: str, body: Reason, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    """Bureau or regulator (only the regulator for a product it suspended)."""
    return products.resume(ctx, actor, product_id, body.reason)


@router.get("/products/{product_id}/keys", response_model=ProductKeys, responses=STEP)
def list_keys(product_id: str, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    return {"keys": products.keys(ctx, actor, product_id)}


@router.post(
    "/products/{product_id}/keys", status_code=201, response_model=ProductKey, responses=STEP
)
def issue_key(product_id: str, body: KeyIssued, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    """Operator: a key for one customer; the key is in this answer only (kept as a hash)."""
    return products.issue_key(ctx, actor, product_id, body.customer)


@router.post(
    "/products/{product_id}/keys/{key_id}/revoke", response_model=ProductKey, responses=STEP
)
def revoke_key(product_id: str, key_id: str, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    return products.revoke_key(ctx, actor, product_id, key_id)


@router.post(
    "/products/{product_id}/calls",
    response_model=Call,
    responses=SIGNED_IN | errors(404, 409, 429, 502, 503),
)
async def call(
    product_id: str, body: CallMade, ctx: Ctx, key: ProductKeyHeader = None
) -> dict[str, Any]:
    """Customer (header `X-Product-Key`): call the product with parameters; answered when
    the call is done, with its released outputs and its price. A refused call is answered
    with the job's error code."""
    return await run_in_threadpool(
        calls.call, ctx, key, product_id, body.params, body.idempotency_key
    )


@router.get(
    "/products/{product_id}/calls/{call_id}",
    response_model=Call,
    responses=SIGNED_IN | errors(404),
)
def get_call(
    product_id: str, call_id: str, ctx: Ctx, key: ProductKeyHeader = None
) -> dict[str, Any]:
    """Customer: one of its calls (one still running or held shows its status)."""
    return calls.get_call(ctx, key, product_id, call_id)


@public_router.get("/products", response_model=PublicProducts)
def public_products(ctx: Ctx) -> dict[str, Any]:
    """The active products by scenario, with their operators and prices (no token)."""
    return {"scenarios": products.public_listing(ctx)}
