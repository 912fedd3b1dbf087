from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Body

from sandbox import billing
from sandbox.api.deps import Ctx, CurrentActor
from sandbox.api.files import csv_response

router = APIRouter(tags=["pricing"])


@router.post("/price-schedules", status_code=201)
def publish(ctx: Ctx, actor: CurrentActor, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
    return billing.publish(ctx, actor, body)


@router.get("/price-schedules/current")
def current(ctx: Ctx) -> dict[str, Any]:
    """Published fees, readable without a token: the rules require fees to be public."""
    with ctx.reading() as s:
        schedule_id, schedule = billing.in_force(s)
    return {"id": schedule_id, **schedule.to_json()}


@router.get("/bills")
def bills(period: str, ctx: Ctx, actor: CurrentActor, operator_id: str | None = None,
          format: Literal["json", "csv"] = "json") -> Any:
    """A monthly statement (Beijing-time month); `format=csv` gives one row per charge line."""
    statement = billing.bills(ctx, actor, period, operator_id)
    if format == "json":
        return statement
    name = f"statement-{period}" + (f"-{operator_id}" if operator_id else "")
    return csv_response(billing.statement_csv(statement), f"{name}.csv")
