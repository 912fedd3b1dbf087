"""Inspection reports for the regulator (and usage for the bureau), as JSON or CSV."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter

from sandbox.api.deps import Ctx, CurrentActor
from sandbox.api.files import csv_response
from sandbox.records import listings

router = APIRouter(tags=["reports"])


@router.get("/releases")
def releases(period: str, ctx: Ctx, actor: CurrentActor, operator_id: str | None = None,
             format: Literal["json", "csv"] = "json") -> Any:
    """Every aggregate released in a month, with the cells suppressed and why (regulator)."""
    rows = listings.releases(ctx, actor, period, operator_id)
    if format == "csv":
        return csv_response(listings.to_csv(rows, listings.RELEASE_COLUMNS),
                            f"releases-{period}.csv")
    return {"period": period, "releases": rows}


@router.get("/reports/usage")
def usage(period: str, ctx: Ctx, actor: CurrentActor,
          format: Literal["json", "csv"] = "json") -> Any:
    """Usage and charges per operator for a month (regulator, bureau)."""
    rows = listings.usage(ctx, actor, period)
    if format == "csv":
        return csv_response(listings.to_csv(rows, listings.USAGE_COLUMNS), f"usage-{period}.csv")
    return {"period": period, "operators": rows}
