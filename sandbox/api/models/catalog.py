"""The catalog: datasets and their columns, never their values."""

from __future__ import annotations

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
    version: int = Field(1, description="The version in force: what new jobs read")


class Datasets(Open):
    datasets: list[Dataset]
