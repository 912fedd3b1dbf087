"""What the catalog knows about a dataset: never values, only shape and policy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Role = Literal["identifier", "quasi_identifier", "sensitive", "attribute"]
ROLES: tuple[str, ...] = ("identifier", "quasi_identifier", "sensitive", "attribute")
LEVELS: tuple[str, ...] = ("L1", "L2", "L3", "L4")
# Stored with every row: the number of the person or firm it describes (catalog.entities).
ENTITY = "__entity"


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    type: str  # Arrow type, e.g. "int64", "string", "date32[day]"
    role: Role
    lower: float | None = None
    upper: float | None = None
    distinct: int | None = None  # quasi-identifiers only; internal, never shown to operators
    # Identifiers only: True when no two rows share a value (one row per person), which
    # differential privacy relies on; internal, like `distinct`.
    unique: bool | None = None
    description: str | None = None  # what the column means, in the department's words

    def to_record(self) -> dict[str, Any]:
        """The stored form, including what the catalog keeps to itself."""
        out = self.to_json()
        if self.distinct is not None:
            out["distinct"] = self.distinct
        if self.unique is not None:
            out["unique"] = self.unique
        return out

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "role": self.role}
        if self.lower is not None:
            out["lower"] = self.lower
        if self.upper is not None:
            out["upper"] = self.upper
        if self.description:
            out["description"] = self.description
        return out


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    title: str
    provider_id: str
    level: str
    row_count: int
    columns: tuple[ColumnInfo, ...]
    partitions: tuple[str, ...]  # absolute paths of the Parquet files
    topic: str | None = None  # the catalog's subject heading (人口, 企业, 社保…)
    description: str | None = None
    registered_at: str | None = None  # ISO 8601 UTC: the data's last update
    version: int = 1  # the snapshot these partitions are (dataset_versions)
    # Absolute path of the version's revisions (catalog.revisions), None when no one was revised.
    revisions: str | None = None
    # The date the version's data describes (YYYY-MM-DD): declared, or the day it was published.
    as_of: str | None = None

    def column(self, name: str) -> ColumnInfo | None:
        return next((c for c in self.columns if c.name == name), None)

    @property
    def named_by(self) -> ColumnInfo | None:
        """The identifier column that names the dataset's people (its first), by whose values
        ingest numbered them (catalog.entities); None when rows are each their own person."""
        return next((c for c in self.columns if c.role == "identifier"), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "provider_id": self.provider_id,
            "level": self.level,
            "row_count": self.row_count,
            "version": self.version,
            "columns": [c.to_json() for c in self.columns],
            **{
                k: v
                for k, v in (
                    ("topic", self.topic),
                    ("description", self.description),
                    ("registered_at", self.registered_at),
                    ("as_of", self.as_of),
                )
                if v
            },
        }
