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


class Dataset(Open):
    name: str
    title: str
    provider_id: str
    level: str = Field(description="L1 to L4")
    row_count: int
    columns: list[Column]


class Datasets(Open):
    datasets: list[Dataset]
