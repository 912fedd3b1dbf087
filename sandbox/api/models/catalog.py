"""The catalog: datasets and their columns, never their values."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from sandbox.api.models.common import Number, Open


class Column(Open):
    name: str
    type: str
    role: str = Field(description="identifier, quasi_identifier, sensitive or attribute")
    lower: Number | None = Field(None, description="Declared lower bound, when there is one")
    upper: Number | None = Field(None, description="Declared upper bound, when there is one")
    description: str | None = Field(None, description="What the column means")


class Dataset(Open):
    name: str
    title: str
    provider_id: str
    level: str = Field(description="L1 to L4")
    row_count: int
    columns: list[Column]
    topic: str | None = Field(None, description="The catalog's subject heading")
    description: str | None = None
    registered_at: str | None = Field(None, description="When the data was last updated")
    as_of: str | None = Field(
        None,
        description=(
            "The date the data describes (数据截至, YYYY-MM-DD): declared with the version, "
            "or the day it was published"
        ),
    )
    version: int = Field(1, description="The version in force: what new jobs read")


class Datasets(Open):
    datasets: list[Dataset]


class DatasetVersion(Open):
    dataset: str
    version: int
    mode: str = Field(description="initial, replace or append")
    source: str = Field(description="upload or connector")
    row_count: int
    columns: list[str]
    created_at: str
    superseded_at: str | None = None
    retired_at: str | None = Field(None, description="When its files were removed")
    quality_status: str | None = Field(
        None, description="passed, flagged or unchecked: the bureau and the owner only"
    )


class DatasetVersions(Open):
    versions: list[DatasetVersion]


class DatasetVersionPublished(Open):
    dataset: str
    version: int
    mode: str
    row_count: int
    added_columns: list[str]
    removed_columns: list[str]
    retyped_columns: list[str]
    revised: int = Field(description="People whose rows changed since the previous version")
    affected_contracts: list[str] = Field(
        description="Contracts granting a column this version no longer has"
    )
    quality_status: str
    quality: dict[str, Any] | None


class QualityRules(Open):
    not_null: list[str] = []
    unique: list[str] = []
    on_failure: str = Field(description="refuse or flag")


class DatasetSource(Open):
    dataset: str
    url: str = Field(description="SQLAlchemy URL of the department's database, without password")
    password_ref: str | None = Field(None, description="env:NAME or file:/path, never the password")
    table: str | None = None
    query: str | None = None
    mode: str = Field(description="replace or append")
    schedule: str | None = Field(None, description='e.g. "daily 02:00 Asia/Shanghai"')
    next_run_at: str | None = None


class DatasetRefresh(Open):
    id: int
    dataset: str
    trigger: str = Field(description="command, api, console or schedule")
    status: str = Field(description="running, published or failed")
    started_at: str
    finished_at: str | None = None
    version: int | None = Field(None, description="The version the pull published")
    rows: int | None = None
    error: str | None = Field(None, description="Why the pull failed; nothing changed")


class DatasetRefreshes(Open):
    refreshes: list[DatasetRefresh]


class DummyCatalog(Open):
    """What a local run needs next to a dataset's dummy table."""

    dataset: dict[str, Any] = Field(
        description=(
            "The catalog entry: schema, roles, level, bounds, and which quasi-identifiers may "
            "be grouped by as they are (group_by_raw)"
        )
    )
    disclosure: dict[str, Any] = Field(
        description="The rules in force: minimum contributors by level, dominance rules"
    )
    notice: str = Field(description="What dummy data is and is not")
