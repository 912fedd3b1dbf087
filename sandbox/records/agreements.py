"""Usage contracts in the database: apply (or draft, edit and submit), approve or refuse, sign,
suspend, resume, terminate, expire, amend, read.

The rules live in the `contracts` package; this module loads, records and logs. Every version
of a contract has a `ContractVersion` row with its own status history; the `Contract` row
mirrors the version in force (before the first activation, the version applied for), which is
what jobs run under. Approvals and signatures act on the newest version still in progress.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts import lifecycle
from contracts.canonical import canonical_bytes
from contracts.document import ContractDocument, format_time, parse_application
from contracts.errors import ContractInvalid, ContractStateError
from contracts.lifecycle import FINAL_STATUSES, Status
from contracts.signing import sign_contract, verify_contract
from operators.roles import Role
from operators.suite import Suite
from sandbox.common import clock
from sandbox.context import Context
from sandbox.disclosure.dp import ineligibility
from sandbox.errors import BadRequest, Forbidden, NotFound
from sandbox.ledger import log
from sandbox.records import budgets, principals, registry
from sandbox.records.principals import (
    Actor,
    history_entry,
    new_id,
    require,
    require_reason,
)
from sandbox.store.models import Contract, ContractVersion
from sandbox.store.parsed import ByContent

_APPLICATION_FIELDS = (
    "datasets",
    "purpose",
    "purpose_class",
    "valid_from",
    "valid_to",
    "quotas",
    "spend_cap",
    "disclosure",
    "privacy",
    "review",
)


def document(row: Contract | ContractVersion) -> ContractDocument:
    return _stored_document(row.document)


# Every submission and settlement reads the terms of its contract version.
_stored_document = ByContent(ContractDocument.from_json)


# --- loading -------------------------------------------------------------------------------


def load(session: Session, actor: Actor, contract_id: str) -> Contract:
    """The contract, if `actor` is a party to it or oversees it; 404 otherwise (no probing)."""
    row = session.get(Contract, contract_id)
    if row is None or not may_read(session, actor, row):
        raise NotFound(f"no contract {contract_id!r} visible to you")
    return row


def may_read(session: Session, actor: Actor, row: Contract) -> bool:
    if actor.role in (Role.bureau, Role.regulator):
        return True
    if actor.role == Role.operator:
        return row.operator_id == actor.id
    # A provider sees what it is asked to approve; a draft is still the operator's own.
    return any(
        actor.id in v.required_approvals
        for v in versions(session, row.id)
        if v.status != Status.draft
    )


def versions(session: Session, contract_id: str) -> list[ContractVersion]:
    return list(
        session.scalars(
            select(ContractVersion)
            .where(ContractVersion.contract_id == contract_id)
            .order_by(ContractVersion.version)
        )
    )


def _version(session: Session, contract_id: str, number: int) -> ContractVersion:
    v = session.get(ContractVersion, (contract_id, number))
    if v is None:
        raise NotFound(f"contract {contract_id} has no version {number}")
    return v


def version_document(session: Session, contract_id: str, number: int) -> ContractDocument:
    """The terms of one version: a job runs and is billed under the version it was quoted on."""
    return document(_version(session, contract_id, number))


def _current(session: Session, row: Contract) -> ContractVersion:
    return _version(session, row.id, row.version)


def _amendment(session: Session, row: Contract) -> ContractVersion | None:
    """The newer version still in progress, if the operator has proposed one."""
    latest = versions(session, row.id)[-1]
    if latest.version > row.version and Status(latest.status) not in FINAL_STATUSES:
        return latest
    return None


def _working(session: Session, row: Contract) -> ContractVersion:
    """The version approvals and signatures act on: an amendment in progress, else the current."""
    return _amendment(session, row) or _current(session, row)


def _mirror(row: Contract, v: ContractVersion) -> None:
    row.version = v.version
    row.document, row.canonical = v.document, v.canonical
    row.status, row.status_reason = v.status, v.status_reason
    row.required_approvals, row.approvals = v.required_approvals, v.approvals
    row.bureau_signature, row.operator_signature = v.bureau_signature, v.operator_signature


def _move(
    row: Contract, v: ContractVersion, status: Status, by: str | None, reason: str | None
) -> None:
    v.status, v.status_reason = status, reason
    # Reassign rather than append: the JSON column only notices a new value.
    v.history = [*(v.history or []), history_entry(status, by, reason)]
    if v.version == row.version:
        _mirror(row, v)


def _require_owner(actor: Actor, row: Contract) -> None:
    if actor.role != Role.operator or row.operator_id != actor.id:
        raise Forbidden(f"only the operator of contract {row.id} can do this")


# --- views ---------------------------------------------------------------------------------


def view(session: Session, row: Contract) -> dict[str, Any]:
    current = _current(session, row)
    amendment = _amendment(session, row)
    return {
        "id": row.id,
        "status": row.status,
        "status_reason": row.status_reason,
        "version": row.version,
        "document": row.document,
        "canonical": base64.b64encode(row.canonical).decode(),
        "signatures": {"bureau": row.bureau_signature, "operator": row.operator_signature},
        "operator_key_id": current.operator_key_id,
        "approvals": {"required": row.required_approvals, "given": row.approvals},
        "spend": {"reserved_fen": row.reserved_fen, "spent_fen": row.spent_fen},
        "privacy": budgets.balances(session, document(row)),
        "history": list(current.history or []),
        "amendment": (
            None
            if amendment is None
            else {"version": amendment.version, "status": amendment.status}
        ),
        "versions": [
            {
                "version": v.version,
                "status": v.status,
                "status_reason": v.status_reason,
                "history": list(v.history or []),
                "created_at": clock.text(v.created_at),
            }
            for v in versions(session, row.id)
        ],
    }


def version_view(v: ContractVersion) -> dict[str, Any]:
    return {
        "id": v.contract_id,
        "version": v.version,
        "status": v.status,
        "status_reason": v.status_reason,
        "document": v.document,
        "canonical": base64.b64encode(v.canonical).decode(),
        "signatures": {"bureau": v.bureau_signature, "operator": v.operator_signature},
        "operator_key_id": v.operator_key_id,
        "approvals": {"required": v.required_approvals, "given": v.approvals},
        "history": list(v.history or []),
        "created_at": clock.text(v.created_at),
    }


def get(ctx: Context, actor: Actor, contract_id: str) -> dict[str, Any]:
    _expire_first(ctx, contract_id)
    with ctx.reading() as s:
        return view(s, load(s, actor, contract_id))


def budget(ctx: Context, actor: Actor, contract_id: str) -> dict[str, Any]:
    """The privacy budgets of the terms in force: ε total, spent, reserved, remaining."""
    _expire_first(ctx, contract_id)
    with ctx.reading() as s:
        row = load(s, actor, contract_id)
        return {
            "contract_id": row.id,
            "version": row.version,
            "privacy": budgets.balances(s, document(row)),
        }


def get_version(ctx: Context, actor: Actor, contract_id: str, number: int) -> dict[str, Any]:
    _expire_first(ctx, contract_id)
    with ctx.reading() as s:
        load(s, actor, contract_id)
        return version_view(_version(s, contract_id, number))


# --- applying, drafts and amendments -------------------------------------------------------


def _parse(
    ctx: Context, session: Session, body: Any, contract_id: str, operator_id: str, version: int
) -> tuple[ContractDocument, list[str]]:
    """Version ``version`` of a contract from application terms, checked against the catalog."""
    datasets = {d.name: d for d in registry.all_datasets(ctx, session)}
    known = {name: [c.name for c in d.columns] for name, d in datasets.items()}
    doc = parse_application(
        body,
        contract_id=contract_id,
        operator_id=operator_id,
        issued_at=clock.now(),
        known_columns=known,
        levels={name: d.level for name, d in datasets.items()},
    )
    for name in doc.privacy:
        reason = ineligibility(datasets[name])
        if reason is not None:
            raise ContractInvalid(
                f"dataset '{name}' cannot be granted under differential "
                f"privacy: {reason}; ask the bureau to register it with one "
                "row per person"
            )
    if version != 1:
        doc = dataclasses.replace(doc, version=version)
    if ctx.suite is not Suite.international:
        # Signed into the document, so that anyone checking it knows the algorithms.
        doc = dataclasses.replace(doc, crypto_suite=ctx.suite.value)
    return doc, sorted({datasets[name].provider_id for name in doc.datasets})


def _split_draft(body: Any) -> tuple[bool, Any]:
    if not isinstance(body, Mapping) or "draft" not in body:
        return False, body
    draft = body["draft"]
    if not isinstance(draft, bool):
        raise ContractInvalid(
            f"draft must be true or false, got {draft!r}; send "
            '"draft": true to keep editing before submitting'
        )
    return draft, {k: v for k, v in body.items() if k != "draft"}


def apply(ctx: Context, actor: Actor, body: Any) -> dict[str, Any]:
    """Apply for a contract; with ``"draft": true`` keep it as an editable draft."""
    require(actor, Role.operator)
    draft, terms = _split_draft(body)
    with ctx.transaction() as s:
        principals.check_license(s, actor.id, clock.now())
        doc, required = _parse(ctx, s, terms, new_id("c"), actor.id, 1)
        status = Status.draft if draft else Status.pending_approval
        v = ContractVersion(
            contract_id=doc.id,
            version=1,
            document=doc.to_json(),
            canonical=canonical_bytes(doc),
            status=status,
            required_approvals=required,
            approvals=[],
            history=[history_entry(status, actor.id, None)],
        )
        row = Contract(
            id=doc.id,
            operator_id=actor.id,
            document=v.document,
            canonical=v.canonical,
            status=status,
            required_approvals=required,
            approvals=[],
            version=1,
        )
        s.add(row)
        s.flush()
        s.add(v)
        log.append(
            s,
            "contract.drafted" if draft else "contract.applied",
            actor.id,
            doc.id,
            {"version": 1, "document": doc.to_json(), "required_approvals": required},
        )
        return view(s, row)


def edit(ctx: Context, actor: Actor, contract_id: str, body: Any) -> dict[str, Any]:
    """Replace the terms of a draft (`PUT /v1/contracts/{id}`)."""
    require(actor, Role.operator)
    if isinstance(body, Mapping) and "draft" in body:
        raise BadRequest(
            "leave 'draft' out when editing: a draft stays a draft until "
            f"POST /v1/contracts/{contract_id}/submit"
        )
    with ctx.transaction() as s:
        row = load(s, actor, contract_id)
        v = _working(s, row)
        lifecycle.check_editable(Status(v.status))
        doc, required = _parse(ctx, s, body, row.id, row.operator_id, v.version)
        _replace_terms(row, v, doc, required)
        log.append(
            s,
            "contract.draft_updated",
            actor.id,
            row.id,
            {"version": v.version, "document": doc.to_json(), "required_approvals": required},
        )
        return view(s, row)


def submit(ctx: Context, actor: Actor, contract_id: str) -> dict[str, Any]:
    """Send a draft for approval, re-checked against today's catalog and clock."""
    require(actor, Role.operator)
    with ctx.transaction() as s:
        row = load(s, actor, contract_id)
        principals.check_license(s, actor.id, clock.now())
        v = _working(s, row)
        status = lifecycle.submit(Status(v.status))
        terms = {k: v.document[k] for k in _APPLICATION_FIELDS if k in v.document}
        # A draft may wait for weeks: its term and datasets must still hold when it is sent.
        doc, required = _parse(ctx, s, terms, row.id, row.operator_id, v.version)
        _replace_terms(row, v, doc, required)
        _move(row, v, status, actor.id, None)
        log.append(
            s,
            "contract.submitted",
            actor.id,
            row.id,
            {"version": v.version, "document": doc.to_json(), "required_approvals": required},
        )
        return view(s, row)


def _replace_terms(
    row: Contract, v: ContractVersion, doc: ContractDocument, required: list[str]
) -> None:
    v.document, v.canonical = doc.to_json(), canonical_bytes(doc)
    v.required_approvals, v.approvals = required, []
    if v.version == row.version:
        _mirror(row, v)


def amend(ctx: Context, actor: Actor, contract_id: str, body: Any) -> dict[str, Any]:
    """Propose new terms for an active contract as its next version.

    The version in force stays active until the new one has been approved and signed by
    both parties; spend and quotas belong to the contract, so they carry over.
    """
    require(actor, Role.operator)
    if isinstance(body, Mapping) and "draft" in body:
        raise BadRequest("an amendment is not a draft; send the complete new terms without 'draft'")
    _expire_first(ctx, contract_id)
    with ctx.transaction() as s:
        row = load(s, actor, contract_id)
        principals.check_license(s, actor.id, clock.now())
        lifecycle.check_amendable(Status(row.status))
        pending = _amendment(s, row)
        if pending is not None:
            raise ContractStateError(
                f"cannot amend: version {pending.version} of contract {row.id} is already "
                f"'{pending.status}'; wait until it is activated or refused before proposing "
                "another amendment"
            )
        number = versions(s, row.id)[-1].version + 1
        doc, required = _parse(ctx, s, body, row.id, row.operator_id, number)
        s.add(
            ContractVersion(
                contract_id=row.id,
                version=number,
                document=doc.to_json(),
                canonical=canonical_bytes(doc),
                status=Status.pending_approval,
                required_approvals=required,
                approvals=[],
                history=[history_entry(Status.pending_approval, actor.id, None)],
            )
        )
        s.flush()
        log.append(
            s,
            "contract.amended",
            actor.id,
            row.id,
            {"version": number, "document": doc.to_json(), "required_approvals": required},
        )
        return view(s, row)


# --- approval and signatures ---------------------------------------------------------------


def approve(ctx: Context, actor: Actor, contract_id: str) -> dict[str, Any]:
    require(actor, Role.provider)
    _expire_first(ctx, contract_id)
    with ctx.transaction() as s:
        row = load(s, actor, contract_id)
        v = _working(s, row)
        status, given = lifecycle.approve(
            Status(v.status), frozenset(v.approvals), actor.id, frozenset(v.required_approvals)
        )
        v.approvals = sorted(given)
        if status != v.status:
            _move(row, v, status, actor.id, None)
        elif v.version == row.version:
            _mirror(row, v)
        log.append(
            s, "contract.approved", actor.id, row.id, {"status": status, "version": v.version}
        )
        return view(s, row)


def refuse(ctx: Context, actor: Actor, contract_id: str, reason: str) -> dict[str, Any]:
    require(actor, Role.provider)
    reason = require_reason(reason, "a refusal")
    _expire_first(ctx, contract_id)
    with ctx.transaction() as s:
        row = load(s, actor, contract_id)
        v = _working(s, row)
        if actor.id not in v.required_approvals:
            raise Forbidden("only a provider of one of the contract's datasets can refuse it")
        _move(row, v, lifecycle.refuse(Status(v.status)), actor.id, reason)
        log.append(
            s, "contract.refused", actor.id, row.id, {"reason": reason, "version": v.version}
        )
        return view(s, row)


def sign(ctx: Context, actor: Actor, contract_id: str, signature: str | None) -> dict[str, Any]:
    require(actor, Role.bureau, Role.operator)
    _expire_first(ctx, contract_id)
    with ctx.transaction() as s:
        row = load(s, actor, contract_id)
        v = _working(s, row)
        if actor.role == Role.bureau:
            status = lifecycle.sign_by_bureau(Status(v.status))
            v.bureau_signature = sign_contract(ctx.bureau_key, document(v))
            _move(row, v, status, actor.id, None)
            log.append(
                s,
                "contract.signed",
                actor.id,
                row.id,
                {"by": "bureau", "signature": v.bureau_signature, "version": v.version},
            )
        else:
            _sign_as_operator(s, actor, row, v, signature)
        return view(s, row)


def _sign_as_operator(
    session: Session, actor: Actor, row: Contract, v: ContractVersion, signature: str | None
) -> None:
    if not signature:
        raise BadRequest(
            'send {"signature": base64 Ed25519 signature over the '
            "contract's canonical bytes (GET /v1/contracts/{id})}"
        )
    status = lifecycle.sign_by_operator(Status(v.status))
    principals.check_license(session, actor.id, clock.now())
    amendment = v.version != row.version
    if amendment:
        lifecycle.check_activatable(Status(row.status))
    key = principals.current_key(session, actor.id)
    if key is None:
        raise BadRequest("register your public key with the bureau before signing")
    verify_contract(key.public_key, document(v), signature)
    v.operator_signature, v.operator_key_id = signature, key.id
    _move(row, v, status, actor.id, None)
    log.append(
        session,
        "contract.signed",
        actor.id,
        row.id,
        {"by": "operator", "signature": signature, "key_id": key.id, "version": v.version},
    )
    if amendment:
        old = _current(session, row)
        _move(
            row,
            old,
            lifecycle.supersede(Status(old.status)),
            actor.id,
            f"superseded by version {v.version}",
        )
        log.append(
            session,
            "contract.superseded",
            actor.id,
            row.id,
            {"version": old.version, "by_version": v.version},
        )
        _mirror(row, v)
    log.append(session, "contract.activated", actor.id, row.id, {"version": v.version})


# --- suspension, termination, expiry -------------------------------------------------------


def suspend(ctx: Context, actor: Actor, contract_id: str, reason: str) -> dict[str, Any]:
    require(actor, Role.bureau, Role.regulator)
    reason = require_reason(reason, "a suspension")
    return _contract_transition(
        ctx, actor, contract_id, lifecycle.suspend, reason, "contract.suspended"
    )


def resume(ctx: Context, actor: Actor, contract_id: str, reason: str) -> dict[str, Any]:
    """Only the regulator lifts a suspension, whoever imposed it."""
    require(actor, Role.regulator)
    reason = require_reason(reason, "resuming a contract")
    return _contract_transition(
        ctx, actor, contract_id, lifecycle.resume, reason, "contract.resumed"
    )


def terminate(ctx: Context, actor: Actor, contract_id: str, reason: str) -> dict[str, Any]:
    """End a contract for good: by the bureau, or by its own operator."""
    require(actor, Role.bureau, Role.operator)
    reason = require_reason(reason, "a termination")
    return _contract_transition(
        ctx, actor, contract_id, lifecycle.terminate, reason, "contract.terminated"
    )


def _contract_transition(
    ctx: Context,
    actor: Actor,
    contract_id: str,
    transition: Callable[[Status], Status],
    reason: str,
    event: str,
) -> dict[str, Any]:
    """Move the version in force; a final status also closes an amendment in progress."""
    _expire_first(ctx, contract_id)
    with ctx.transaction() as s:
        row = load(s, actor, contract_id)
        current = _current(s, row)
        status = transition(Status(current.status))
        _move(row, current, status, actor.id, reason)
        log.append(s, event, actor.id, row.id, {"reason": reason, "version": current.version})
        if status in FINAL_STATUSES:
            _close_amendment(s, row, status, actor.id)
        return view(s, row)


def _close_amendment(session: Session, row: Contract, status: Status, by: str | None) -> None:
    pending = _amendment(session, row)
    if pending is None:
        return
    reason = f"the contract is {status}"
    _move(row, pending, status, by, reason)
    log.append(
        session, f"contract.{status}", by, row.id, {"reason": reason, "version": pending.version}
    )


def current_due_to_expire(session: Session, row: Contract) -> bool:
    """Whether the version in force is past its term and not yet recorded as expired."""
    current = _current(session, row)
    return lifecycle.is_due_to_expire(document(current), Status(current.status), clock.now())


def expire_current_if_due(session: Session, row: Contract) -> bool:
    """Expire the version in force if its term is over; True when it was."""
    if not current_due_to_expire(session, row):
        return False
    current = _current(session, row)
    doc = document(current)
    reason = f"its term ended at {format_time(doc.valid_to)}"
    _move(row, current, lifecycle.expire(Status(current.status)), None, reason)
    log.append(
        session, "contract.expired", None, row.id, {"reason": reason, "version": current.version}
    )
    _close_amendment(session, row, Status.expired, None)
    return True


def expire_if_due(session: Session, row: Contract) -> bool:
    """Expire whatever versions of ``row`` are past their term; True if any was."""
    changed = expire_current_if_due(session, row)
    pending = _amendment(session, row)
    if pending is not None:
        doc = document(pending)
        if lifecycle.is_due_to_expire(doc, Status(pending.status), clock.now()):
            reason = f"its term ended at {format_time(doc.valid_to)} before it was activated"
            _move(row, pending, lifecycle.expire(Status(pending.status)), None, reason)
            log.append(
                session,
                "contract.expired",
                None,
                row.id,
                {"reason": reason, "version": pending.version},
            )
            changed = True
    return changed


def _expire_first(ctx: Context, contract_id: str) -> None:
    """Record an expiry in its own transaction, so a refusal that follows cannot undo it."""
    with ctx.transaction() as s:
        row = s.get(Contract, contract_id)
        if row is not None:
            expire_if_due(s, row)


def expire_due(ctx: Context) -> int:
    """Expire every contract (and amendment) past its term; run when the service starts."""
    expirable = [str(s) for s in lifecycle.EXPIRABLE]
    with ctx.transaction() as s:
        rows = s.scalars(select(Contract).where(Contract.status.in_(expirable))).all()
        return sum(expire_if_due(s, row) for row in rows)
