"""Inspection reports for the regulator (and usage for the bureau), as JSON, CSV or XLSX; how
a department's own datasets are used, for the department."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from sandbox.api.deps import Ctx, CurrentActor
from sandbox.api.files import ListingFormat, export_response
from sandbox.api.models.common import ERRORS, SIGNED_IN, ModelRoute, files
from sandbox.api.models.oversight import DatasetUsage, Releases, Usage
from sandbox.records import listings, provision

router = APIRouter(tags=["reports"], route_class=ModelRoute, responses=ERRORS)


@router.get("/releases", response_model=Releases, responses=SIGNED_IN | files("csv", "xlsx"))
def releases(
    period: str,
    ctx: Ctx,
    actor: CurrentActor,
    operator_id: str | None = None,
    format: ListingFormat = "json",
) -> Any:
    """Every aggregate released in a month, with the cells suppressed and why (regulator)."""
    rows = listings.releases(ctx, actor, period, operator_id)
    if format != "json":
        return export_response(listings.releases_table(rows), format, f"releases-{period}")
    return {"period": period, "releases": rows}


@router.get("/reports/usage", response_model=Usage, responses=SIGNED_IN | files("csv", "xlsx"))
def usage(period: str, ctx: Ctx, actor: CurrentActor, format: ListingFormat = "json") -> Any:
    """Usage and charges per operator for a month (regulator, bureau)."""
    rows = listings.usage(ctx, actor, period)
    if format != "json":
        return export_response(listings.usage_table(rows), format, f"usage-{period}")
    return {"period": period, "operators": rows}


@router.get("/usage/datasets", response_model=DatasetUsage, responses=SIGNED_IN)
def dataset_usage(ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    """How the calling department's datasets are used, per month: jobs and rows scanned
    (department). Counts only: never job code, parameters or outputs."""
    return {"datasets": provision.dataset_usage(ctx, actor)}
