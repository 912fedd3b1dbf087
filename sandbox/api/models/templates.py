"""Analysis templates: what operators submit and run, what departments decide, what all read."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sandbox.api.models.common import Open

# --- request bodies (checked by `sandbox.records.templates` and `sandbox.language.params`,
# whose messages say what to fix; only the shapes are checked here) -------------------------


class TemplateSubmitted(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="The analysis, in a line; the same name again adds a version")
    description: str | None = Field(None, description="What it computes and what for")
    code: str = Field(description="The job code, naming every dataset it reads literally")
    params_schema: dict[str, Any] | None = Field(
        None,
        description="The parameters a run may pass: a closed JSON Schema object, every "
        "parameter typed and bounded (a range, allowed values or a length)",
    )


class TemplateReviewed(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: str = Field(description="approve or refuse")
    reason: str | None = Field(None, description="Why; required to refuse")
    conditions: str | None = Field(
        None, description="Conditions the department attaches to its approval"
    )


class TemplateRun(BaseModel):
    model_config = ConfigDict(extra="forbid")
    contract_id: str = Field(min_length=1, max_length=64, description="The contract to run under")
    params: dict[str, Any] = Field(
        default_factory=dict, description="The parameters, checked against the schema"
    )
    version: int | None = Field(None, description="The version to run; default the latest approved")
    idempotency_key: str | None = Field(None, min_length=1, max_length=200)
    wait: bool = Field(False, description="Return once the job has finished")


# --- responses ----------------------------------------------------------------------------


class TemplateReviewer(Open):
    id: str
    name: str | None = None
    decision: str | None = Field(description="approve, refuse, or null while it has not decided")


class TemplateReview(Open):
    by: str
    by_name: str | None = None
    decision: str = Field(description="approve or refuse")
    reason: str | None
    conditions: str | None
    at: str


class TemplateVersion(Open):
    version: int
    code: str | None = Field(None, description="The exact code reviewed (not in listings)")
    code_sha256: str
    params_schema: dict[str, Any]
    datasets: list[str]
    reviewers: list[TemplateReviewer] = Field(description="The departments whose data it reads")
    reviews: list[TemplateReview]
    status: str = Field(description="pending, approved, refused or withdrawn")
    created_at: str | None
    decided_at: str | None


class Template(Open):
    id: str
    operator_id: str
    operator_name: str | None = None
    name: str
    description: str
    created_at: str | None
    latest_version: int | None
    approved_version: int | None = Field(description="The latest approved version, which runs")
    versions: list[TemplateVersion] = Field(description="Newest first")


class Templates(Open):
    templates: list[Template]
