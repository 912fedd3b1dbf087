"""Contract status and the transitions between them, as pure functions.

    draft ──(operator submits)──▶ pending_approval ──(every provider approves)──▶ approved
    approved ──(bureau signs)──▶ signed_by_bureau ──(operator signs)──▶ active
    pending_approval ──(a provider refuses)──▶ refused
    active ──(bureau or regulator)──▶ suspended ──(regulator resumes)──▶ active
    any status that is not final ──(bureau or operator)──▶ terminated
    any status but draft, once the term is over ──▶ expired
    active ──(an amendment is activated)──▶ superseded

An amendment is a new version of the same contract that goes through approval and both
signatures again; the version in force stays active until the new one is activated.
Each transition takes the current status and returns the next one, or raises
ContractStateError naming the current status and what would have to happen first.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from contracts.document import ContractDocument, format_time
from contracts.errors import ContractInactive, ContractStateError


class Status(StrEnum):
    draft = "draft"
    pending_approval = "pending_approval"
    approved = "approved"
    signed_by_bureau = "signed_by_bureau"
    active = "active"
    refused = "refused"
    suspended = "suspended"
    terminated = "terminated"
    expired = "expired"
    superseded = "superseded"


FINAL_STATUSES = frozenset({Status.refused, Status.terminated, Status.expired, Status.superseded})
# A draft is not expired: its operator can still edit the term before submitting it.
EXPIRABLE = frozenset(Status) - FINAL_STATUSES - {Status.draft}
TERMINABLE = frozenset(Status) - FINAL_STATUSES

# Why a contract in each status cannot be used, and what would make it usable.
_INACTIVE_REASONS: dict[Status, str] = {
    Status.draft: "it is a draft; edit it if needed (PUT /v1/contracts/{id}) and submit it "
    "(POST /v1/contracts/{id}/submit) for approval",
    Status.pending_approval: "it is waiting for approval by the providers of its datasets, "
    "then for the bureau's and the operator's signatures",
    Status.approved: "every provider has approved; it now needs the bureau's signature, "
    "then the operator's",
    Status.signed_by_bureau: "the bureau has signed; the operator must sign its canonical "
    "bytes (POST /v1/contracts/{id}/sign with a signature) to activate it",
    Status.refused: "a provider refused it; apply for a new contract",
    Status.suspended: "it is suspended; it can be used again once the regulator resumes it",
    Status.terminated: "it has been terminated; apply for a new contract",
    Status.expired: "its term is over; apply for a new contract",
    Status.superseded: "a newer version of it is in force; jobs run under the current "
    "version (GET /v1/contracts/{id})",
}


def submit(status: Status) -> Status:
    """The operator sends a draft for approval."""
    _require(
        status,
        Status.draft,
        "submit",
        "only a 'draft' is submitted; an application sent without \"draft\": true "
        "is already waiting for approval",
    )
    return Status.pending_approval


def check_editable(status: Status) -> None:
    _require(
        status,
        Status.draft,
        "edit",
        "only a 'draft' can be edited; to change the terms of an active contract, "
        "amend it (POST /v1/contracts/{id}/amend)",
    )


def approve(
    status: Status,
    approvals: frozenset[str],
    provider_id: str,
    required: frozenset[str],
) -> tuple[Status, frozenset[str]]:
    """Record one provider's approval; the contract is approved once all required approve."""
    _require(
        status,
        Status.pending_approval,
        "approve",
        "approval is only possible while it is 'pending_approval'",
    )
    if provider_id not in required:
        raise ContractStateError(
            f"cannot approve: provider {provider_id} provides none of this contract's "
            f"datasets; approvals are needed from: {_ids(required)}"
        )
    if provider_id in approvals:
        raise ContractStateError(
            f"cannot approve: provider {provider_id} has already approved; still waiting "
            f"for: {_ids(required - approvals)}"
        )
    approved = approvals | {provider_id}
    next_status = Status.approved if required <= approved else Status.pending_approval
    return next_status, approved


def refuse(status: Status) -> Status:
    _require(
        status,
        Status.pending_approval,
        "refuse",
        "refusal is only possible while it is 'pending_approval'",
    )
    return Status.refused


def sign_by_bureau(status: Status) -> Status:
    _require(
        status,
        Status.approved,
        "sign as the bureau",
        "the bureau signs only once every provider has approved (status 'approved')",
    )
    return Status.signed_by_bureau


def sign_by_operator(status: Status) -> Status:
    _require(
        status,
        Status.signed_by_bureau,
        "sign as the operator",
        "the operator signs only after the bureau has signed (status 'signed_by_bureau')",
    )
    return Status.active


def suspend(status: Status) -> Status:
    _require(status, Status.active, "suspend", "only an 'active' contract can be suspended")
    return Status.suspended


def resume(status: Status) -> Status:
    _require(status, Status.suspended, "resume", "only a 'suspended' contract can be resumed")
    return Status.active


def terminate(status: Status) -> Status:
    _require_any(status, TERMINABLE, "terminate", "any status that is not final can be terminated")
    return Status.terminated


def expire(status: Status) -> Status:
    _require_any(
        status,
        EXPIRABLE,
        "expire",
        "a contract expires from any status but 'draft' that is not final",
    )
    return Status.expired


def supersede(status: Status) -> Status:
    _require(
        status,
        Status.active,
        "supersede",
        "only the 'active' version is superseded, when an amendment is activated",
    )
    return Status.superseded


def check_amendable(status: Status) -> None:
    """An amendment is only proposed for a contract in force and not suspended."""
    _require(
        status,
        Status.active,
        "amend",
        "only an 'active' contract is amended; a suspended one must first be resumed "
        "by the regulator, and one not yet active can be refused or terminated and "
        "applied for again",
    )


def check_activatable(current: Status) -> None:
    """An amendment replaces the version in force only while that version is active.

    Activating it while the contract is suspended would lift the suspension by the back door.
    """
    _require(
        current,
        Status.active,
        "activate the amendment",
        "the version in force must be 'active'; a suspended contract must first be "
        "resumed by the regulator",
    )


def is_due_to_expire(doc: ContractDocument, status: Status, now: datetime) -> bool:
    """Whether the term of ``doc`` is over while its status still says otherwise."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware, e.g. datetime.now(UTC)")
    return Status(status) in EXPIRABLE and now >= doc.valid_to


def check_usable(doc: ContractDocument, status: Status, now: datetime) -> None:
    """Raise ContractInactive unless jobs may run under ``doc`` at ``now``.

    The term is half-open: usable from valid_from up to, not including, valid_to.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware, e.g. datetime.now(UTC)")
    status = Status(status)
    if status is not Status.active:
        reason = _INACTIVE_REASONS[status].replace("{id}", doc.id)
        raise ContractInactive(f"contract {doc.id} is '{status}', not active: {reason}")
    term = f"{format_time(doc.valid_from)} to {format_time(doc.valid_to)}"
    if now < doc.valid_from:
        raise ContractInactive(
            f"contract {doc.id} is not in force yet: its term is {term}; "
            "submit jobs on or after valid_from"
        )
    if now >= doc.valid_to:
        raise ContractInactive(
            f"contract {doc.id} has expired: its term was {term}; "
            "apply for a new contract to continue"
        )


def _require(status: Status, expected: Status, action: str, need: str) -> None:
    status = Status(status)
    if status is expected:
        return
    final = f"; '{status}' is final" if status in FINAL_STATUSES else ""
    raise ContractStateError(f"cannot {action}: the contract is '{status}'; {need}{final}")


def _require_any(status: Status, allowed: frozenset[Status], action: str, need: str) -> None:
    status = Status(status)
    if status in allowed:
        return
    final = f"; '{status}' is final" if status in FINAL_STATUSES else ""
    statuses = ", ".join(f"'{s}'" for s in Status if s in allowed)
    raise ContractStateError(
        f"cannot {action}: the contract is '{status}'; {need} ({statuses}){final}"
    )


def _ids(ids: frozenset[str]) -> str:
    return ", ".join(sorted(ids)) if ids else "(none)"
