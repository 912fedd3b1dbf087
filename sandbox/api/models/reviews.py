"""Output reviews: releases held for people to check before the job's code receives them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sandbox.api.models.common import Open


class ReviewDecided(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Literal["release", "refuse"]
    reason: str | None = Field(
        None, max_length=2000, description="Why; required to refuse, shown to the operator"
    )


class ReviewDecision(Open):
    by: str
    role: str
    decision: str
    reason: str
    at: str | None = None


class Review(Open):
    """A held release. `held` (the released table as the rules made it, before its job's code
    received it) is shown to its reviewers and regulators, and cleared once refused."""

    id: str
    job_id: str
    operator_id: str
    contract_id: str
    release_index: int = Field(description="Which collect() of the job, from 0")
    datasets: list[str]
    reasons: list[str] = Field(
        description="The rules that held it: level:<L>, cells (its size), contract"
    )
    required: int = Field(description="Distinct reviewers who must release it")
    status: str = Field(description="pending, released or refused")
    decisions: list[ReviewDecision]
    created_at: str | None
    decided_at: str | None
    waited_seconds: int
    held: dict[str, Any] | None = None
    report: dict[str, Any] | None = Field(None, description="The release's disclosure report")
    can_decide: bool = Field(description="Whether the caller may decide on it now")


class Reviews(Open):
    reviews: list[Review]
