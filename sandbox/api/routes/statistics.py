"""The departments' statistics (考核): how each dataset and each department's datasets were
kept up to date and used in a month. A department sees its own; the bureau and the
regulator see all; operators are refused."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from sandbox.api.deps import Ctx, CurrentActor
from sandbox.api.files import ListingFormat, export_response
from sandbox.api.models.common import ERRORS, SIGNED_IN, ModelRoute, files
from sandbox.api.models.statistics import DatasetStatistics, DepartmentStatistics
from sandbox.records import statistics

router = APIRouter(
    prefix="/statistics", tags=["statistics"], route_class=ModelRoute, responses=ERRORS
)


@router.get(
    "/datasets", response_model=DatasetStatistics, responses=SIGNED_IN | files("csv", "xlsx")
)
def datasets(
    ctx: Ctx, actor: CurrentActor, month: str | None = None, format: ListingFormat = "json"
) -> Any:
    """Per dataset, for a month (YYYY-MM, Beijing time; default the current one): versions,
    jobs, operators, rows, fees, refusals, suppressed cells, approval times, open demands."""
    report = statistics.datasets(ctx, actor, month)
    if format != "json":
        table = statistics.datasets_table(report)
        return export_response(table, format, f"statistics-datasets-{report['month']}")
    return report


@router.get(
    "/departments",
    response_model=DepartmentStatistics,
    responses=SIGNED_IN | files("csv", "xlsx"),
)
def departments(
    ctx: Ctx, actor: CurrentActor, month: str | None = None, format: ListingFormat = "json"
) -> Any:
    """Per department, its datasets' figures for a month rolled up (each job, release,
    decision and demand counted once)."""
    report = statistics.departments(ctx, actor, month)
    if format != "json":
        table = statistics.departments_table(report)
        return export_response(table, format, f"statistics-departments-{report['month']}")
    return report
