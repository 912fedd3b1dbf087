from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from sandbox.api.deps import Ctx, CurrentActor
from sandbox.api.files import ListingFormat, export_response
from sandbox.api.models.common import ERRORS, SIGNED_IN, ModelRoute, errors, files
from sandbox.api.models.pricing import (
    AllowedRevenue,
    Prepaid,
    PriceCaps,
    PriceCapsBody,
    PriceSchedule,
    PriceScheduleBody,
    Revenue,
    Statement,
)
from sandbox.errors import NotFound
from sandbox.records import money

router = APIRouter(tags=["pricing"], route_class=ModelRoute, responses=ERRORS)


@router.post(
    "/price-schedules",
    status_code=201,
    response_model=PriceSchedule,
    responses=SIGNED_IN | errors(409),
)
def publish(body: PriceScheduleBody, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    return money.publish(ctx, actor, body.as_sent())


@router.get("/price-schedules/current", response_model=PriceSchedule, responses=errors(409))
def current(ctx: Ctx) -> dict[str, Any]:
    """Published fees, readable without a token: the rules require fees to be public."""
    with ctx.reading() as s:
        schedule_id, schedule = money.in_force(s)
    return {"id": schedule_id, **schedule.to_json()}


@router.post(
    "/price-caps", status_code=201, response_model=PriceCaps, responses=SIGNED_IN | errors(409)
)
def publish_caps(body: PriceCapsBody, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    """Maximum fees (上限收费标准): later schedules above them are refused."""
    return money.publish_caps(ctx, actor, body.as_sent())


@router.get("/price-caps/current", response_model=PriceCaps, responses=errors(404))
def current_caps(ctx: Ctx) -> dict[str, Any]:
    with ctx.reading() as s:
        caps = money.caps_in_force(s)
    if caps is None:
        raise NotFound("no price caps are recorded")
    return caps.to_json()


class Amount(BaseModel):
    """An amount of money: a decimal string of yuan."""

    model_config = ConfigDict(extra="forbid")
    amount: str = Field(description='Decimal string of yuan, e.g. "120000.00"')


@router.put("/revenue/allowed/{period}", response_model=AllowedRevenue, responses=SIGNED_IN)
def record_allowed(period: str, body: Amount, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    """Record the maximum allowed revenue (最高准许收入) of a billing month."""
    return money.record_allowed_revenue(ctx, actor, period, body.amount)


@router.get("/reports/revenue", response_model=Revenue, responses=SIGNED_IN | files("csv", "xlsx"))
def revenue(period: str, ctx: Ctx, actor: CurrentActor, format: ListingFormat = "json") -> Any:
    """Revenue by operator, dataset and unit, public-interest use at list value, and the
    comparison with the month's allowed revenue (an excess is deducted from the next month).
    `format=csv` or `xlsx`: one row for the month, then one per operator, dataset and unit."""
    report = money.revenue(ctx, actor, period)
    if format == "json":
        return report
    return export_response(money.revenue_table(report), format, f"revenue-{period}")


@router.post(
    "/prepaid/{operator_id}/top-ups",
    status_code=201,
    response_model=Prepaid,
    responses=SIGNED_IN | errors(404),
)
def top_up(operator_id: str, body: Amount, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    """Credit an operator's prepaid balance (the bureau); jobs then reserve against it."""
    return money.top_up(ctx, actor, operator_id, body.amount)


@router.get("/prepaid/{operator_id}", response_model=Prepaid, responses=SIGNED_IN | errors(404))
def prepaid(operator_id: str, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    return money.prepaid(ctx, actor, operator_id)


@router.get("/bills", response_model=Statement, responses=SIGNED_IN | files("csv", "xlsx"))
def bills(
    period: str,
    ctx: Ctx,
    actor: CurrentActor,
    operator_id: str | None = None,
    format: ListingFormat = "json",
) -> Any:
    """A monthly statement (Beijing-time month); `format=csv` or `xlsx` gives one row per
    charge line and a total row."""
    statement = money.bills(ctx, actor, period, operator_id)
    if format == "json":
        return statement
    name = f"statement-{period}" + (f"-{operator_id}" if operator_id else "")
    return export_response(money.statement_table(ctx, statement), format, name)
