"""Demand lists and objections: what operators and departments send, and what they read."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from sandbox.api.models.common import Open

# --- request bodies (checked by `sandbox.records.demands` and `.objections`, whose messages
# say what to fix; only the shapes are checked here) -----------------------------------------


class DemandRaised(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(description="The data wanted, in a line")
    description: str = Field(description="What the data should hold: facts, years, area")
    purpose: str = Field(description="What it would be analysed for")
    dataset: str | None = Field(
        None, description="A dataset of the catalog whose further columns are wanted"
    )
    columns: list[str] | None = Field(
        None, description="With dataset: the columns it lacks that are wanted"
    )


class DemandRouted(BaseModel):
    model_config = ConfigDict(extra="forbid")
    provider_id: str = Field(description="The department (a provider principal) to answer it")
    note: str | None = Field(None, description="Why this department, for it to read")


class DemandAnswered(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: str = Field(description="planned, refused or published")
    answer: str | None = Field(
        None,
        description="planned: what is planned and when; refused: the reason (required); "
        "published: optional note",
    )
    answer_dataset: str | None = Field(
        None, description="published: the catalog name of the dataset that holds the data"
    )


class ObjectionRaised(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str = Field(description="quality (about a dataset version) or refusal (about a job)")
    text: str = Field(description="What is wrong, and what was expected")
    dataset: str | None = Field(None, description="quality: the dataset's catalog name")
    version: int | None = Field(
        None, description="quality: the version it is about (default: the one in force)"
    )
    job_id: str | None = Field(None, description="refusal: the operator's refused job")


class ObjectionAnswered(BaseModel):
    model_config = ConfigDict(extra="forbid")
    answer: str | None = Field(None, description="What was found and what will be done")


# --- responses ----------------------------------------------------------------------------


class StepEntry(Open):
    """One step of a demand's or an objection's history."""

    status: str
    at: str | None = None
    by: str | None = None
    note: str | None = None


class Demand(Open):
    id: str
    operator_id: str
    operator_name: str | None = None
    title: str
    description: str
    purpose: str
    dataset: str | None
    dataset_title: str | None = None
    columns: list[str]
    status: str = Field(description="open, routed, planned, refused or published")
    provider_id: str | None = Field(description="The department it is routed to")
    provider_name: str | None = None
    answer: str | None
    answer_dataset: str | None = Field(description="published: the dataset that holds the data")
    answer_dataset_title: str | None = None
    created_at: str | None
    updated_at: str | None
    history: list[StepEntry]


class Demands(Open):
    demands: list[Demand]


class Objection(Open):
    id: str
    kind: str = Field(description="quality or refusal")
    raised_by: str
    raised_by_name: str | None = None
    dataset: str | None
    dataset_title: str | None = None
    version: int | None
    job_id: str | None
    owner_id: str | None = Field(description="The department that answers; null: the bureau")
    owner: str = Field(description="Who answers: provider or bureau")
    owner_name: str | None = None
    text: str
    status: str = Field(description="open or answered")
    answer: str | None
    answered_by: str | None
    answered_by_name: str | None = None
    created_at: str | None
    answered_at: str | None
    history: list[StepEntry]


class Objections(Open):
    objections: list[Objection]
