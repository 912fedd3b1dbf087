"""The regulator's and the bureau's views: releases, usage, flags."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from sandbox.api.models.common import Open


class Release(Open):
    """One aggregate released to operator code, with what was suppressed and why."""

    job_id: str
    operator_id: str
    operator_name: str | None = None
    contract_id: str
    finished_at: str | None
    dataset: str | None = None
    dataset_title: str | None = None
    department: str | None = None


class Releases(Open):
    period: str
    releases: list[Release]


class OperatorUsage(Open):
    operator_id: str
    operator_name: str | None = None
    jobs: int
    by_status: dict[str, int]
    rows_scanned: int
    compute_seconds: str
    outputs: int
    amount: str
    list_amount: str


class Usage(Open):
    period: str
    operators: list[OperatorUsage]


class DatasetUse(Open):
    dataset: str
    title: str
    period: str = Field(description="Billing month, YYYY-MM")
    jobs: int = Field(description="Finished jobs that read the dataset")
    rows: int = Field(description="Rows they scanned in it")


class DatasetUsage(Open):
    datasets: list[DatasetUse]


class FlaggedJob(Open):
    id: str
    status: str
    code: str
    params: dict[str, Any] | None
    created_at: str | None


class Flag(Open):
    id: int
    job_id: str
    operator_id: str
    contract_id: str
    pattern: str
    score: int
    about: str = Field(description="What the pattern means")
    detail: dict[str, Any] | None
    created_at: str | None
    reviewed_at: str | None
    reviewed_by: str | None
    note: str | None
    job: FlaggedJob | None


class Flags(Open):
    flags: list[Flag]
