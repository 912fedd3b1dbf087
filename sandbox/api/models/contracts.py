"""Usage contracts: the application body, the contract as the parties see it, its versions."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, SkipValidation

from sandbox.api.models.common import DomainChecked, Open
from sandbox.api.models.principals import HistoryEntry

Grants = dict[str, dict[str, list[str]]]

# --- request bodies (checked by `contracts`) -----------------------------------------------


class ApplicationBody(DomainChecked):
    """The terms applied for; also the body of an edit (without `draft`) and an amendment."""

    REQUIRED: ClassVar[tuple[str, ...]] = (
        "datasets",
        "purpose",
        "purpose_class",
        "valid_from",
        "valid_to",
    )
    datasets: SkipValidation[Grants] = Field(
        None, description=("dataset → column → uses, each of group_by, filter, aggregate, join")
    )
    purpose: SkipValidation[str] = Field(None)
    purpose_class: SkipValidation[str] = Field(None, description="public_interest or commercial")
    valid_from: SkipValidation[str] = Field(None, description="ISO 8601 with a time zone")
    valid_to: SkipValidation[str] = Field(None, description="ISO 8601 with a time zone")
    quotas: SkipValidation[dict[str, int]] = Field(
        None, description=("jobs_per_day, rows_per_month")
    )
    spend_cap: SkipValidation[str | None] = Field(None, description="Decimal string of yuan")
    disclosure: SkipValidation[dict[str, Any]] = Field(
        None, description=("Stricter disclosure rules than the defaults")
    )
    privacy: SkipValidation[dict[str, dict[str, Any]]] = Field(
        None, description=("dataset → differential-privacy terms: epsilon, per_job_epsilon")
    )
    review: SkipValidation[dict[str, bool]] = Field(
        None,
        description=(
            "templates_only: jobs run only as approved templates; outputs: every release "
            "is held until reviewers release it"
        ),
    )
    draft: SkipValidation[bool] = Field(
        None, description=("Apply only: true keeps the application an editable draft")
    )


# --- responses ----------------------------------------------------------------------------


class Document(Open):
    """The signed terms; the `contracts` package defines the rest of the document."""

    id: str
    version: int
    operator_id: str
    datasets: Grants
    purpose: str
    purpose_class: str
    valid_from: str
    valid_to: str
    quotas: dict[str, Any]
    spend_cap: str | None
    issued_at: str
    disclosure: dict[str, Any] | None = None
    privacy: dict[str, Any] | None = None
    review: dict[str, bool] | None = None


class Signatures(Open):
    bureau: str | None
    operator: str | None


class Approvals(Open):
    required: list[str]
    given: list[str]


class Spend(Open):
    reserved_fen: int
    spent_fen: int


class Budget(Open):
    """Privacy budget (ε) of one dataset, as decimal strings."""

    total: str
    spent: str
    reserved: str
    remaining: str
    per_job_epsilon: str | None = None


class VersionState(Open):
    version: int
    status: str


class VersionSummary(VersionState):
    status_reason: str | None
    history: list[HistoryEntry]
    created_at: str | None


class Contract(Open):
    id: str
    status: str
    status_reason: str | None
    version: int
    document: Document
    canonical: str = Field(description="base64 of the canonical bytes the parties sign")
    signatures: Signatures
    operator_key_id: str | None
    approvals: Approvals
    spend: Spend
    privacy: dict[str, Budget]
    history: list[HistoryEntry]
    amendment: VersionState | None = Field(description="A newer version still in progress")
    versions: list[VersionSummary]


class Contracts(Open):
    contracts: list[Contract]


class ContractBudgets(Open):
    contract_id: str
    version: int
    privacy: dict[str, Budget]


class ContractVersion(Open):
    id: str
    version: int
    status: str
    status_reason: str | None
    document: Document
    canonical: str = Field(description="base64 of the canonical bytes the parties sign")
    signatures: Signatures
    operator_key_id: str | None
    approvals: Approvals
    history: list[HistoryEntry]
    created_at: str | None
