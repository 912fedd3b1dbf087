"""The departments' statistics (考核), per dataset and per department for a month."""

from __future__ import annotations

from pydantic import Field

from sandbox.api.models.common import Open


class Figures(Open):
    """What is counted for a dataset, or for a department over its datasets."""

    versions_published: int = Field(description="Versions created in the month")
    last_version_at: str | None = Field(description="The newest version by the as-of time")
    days_since_last_version: int | None = Field(
        description="Whole days from the newest version to the as-of time"
    )
    jobs: int = Field(description="Jobs finished in the month that read it, any outcome")
    jobs_succeeded: int
    operators: int = Field(description="Distinct operators of those jobs")
    rows_scanned: int
    fees: str = Field(description="Its share of the month's charges, yuan")
    refusals: int = Field(description="Jobs refused by disclosure rules or plan checks")
    refusals_by_code: dict[str, int]
    suppressed_cells: int
    suppressed_by_rule: dict[str, int]
    approval_decisions: int = Field(description="Approvals and refusals made in the month")
    approval_median_hours: float | None = Field(description="From application to decision")
    approval_max_hours: float | None
    open_demands: int = Field(description="Demands open, routed or planned at the as-of time")
    product_calls: int = Field(0, description="Calls of data products among the jobs")


class DatasetFigures(Figures):
    dataset: str
    title: str | None
    department_id: str | None
    department: str | None


class DepartmentFigures(Figures):
    department_id: str
    department: str | None
    datasets: int = Field(description="Its datasets in the catalog by the as-of time")


class _Report(Open):
    month: str = Field(description="Calendar month, Beijing time, YYYY-MM")
    as_of: str = Field(description="The end of the month, or now if earlier")
    currency: str
    charges: str | None = Field(
        None, description="The month's charges (bureau and regulator): the fees add up to them"
    )
    unattributed_fees: str | None = Field(
        None, description="Charges no dataset in the catalog could be found for"
    )


class DatasetStatistics(_Report):
    datasets: list[DatasetFigures]


class DepartmentStatistics(_Report):
    departments: list[DepartmentFigures]
