"""Usage contracts in the database: apply, approve or refuse, sign, suspend, read.

The rules live in the `contracts` package; this module loads, records and logs.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from contracts import lifecycle
from contracts.canonical import canonical_bytes
from contracts.document import ContractDocument, parse_application
from contracts.lifecycle import Status
from contracts.signing import sign_contract, verify_contract
from operators.roles import Role
from sandbox.accounts import Actor, new_id, require
from sandbox.catalog import registry
from sandbox.context import Context
from sandbox.errors import BadRequest, Forbidden, NotFound
from sandbox.ledger import log
from sandbox.store.models import Contract, Principal


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def document(row: Contract) -> ContractDocument:
    return ContractDocument.from_json(row.document)


def load(session: Session, actor: Actor, contract_id: str) -> Contract:
    """The contract, if `actor` is a party to it or oversees it; 404 otherwise (no probing)."""
    row = session.get(Contract, contract_id)
    if row is None or not _may_read(session, actor, row):
        raise NotFound(f"no contract {contract_id!r} visible to you")
    return row


def _may_read(session: Session, actor: Actor, row: Contract) -> bool:
    if actor.role in (Role.bureau, Role.regulator):
        return True
    if actor.role == Role.operator:
        return row.operator_id == actor.id
    return actor.id in row.required_approvals


def view(row: Contract) -> dict[str, Any]:
    return {
        "id": row.id, "status": row.status, "status_reason": row.status_reason,
        "document": row.document,
        "canonical": base64.b64encode(row.canonical).decode(),
        "signatures": {"bureau": row.bureau_signature, "operator": row.operator_signature},
        "approvals": {"required": row.required_approvals, "given": row.approvals},
        "spend": {"reserved_fen": row.reserved_fen, "spent_fen": row.spent_fen},
    }


def apply(ctx: Context, actor: Actor, body: dict[str, Any]) -> dict[str, Any]:
    require(actor, Role.operator)
    with ctx.transaction() as s:
        datasets = {d.name: d for d in registry.all_datasets(ctx, s)}
        known = {name: [c.name for c in d.columns] for name, d in datasets.items()}
        doc = parse_application(body, contract_id=new_id("c"), operator_id=actor.id,
                                issued_at=now(), known_columns=known)
        required = sorted({datasets[name].provider_id for name in doc.datasets})
        row = Contract(id=doc.id, operator_id=actor.id, document=doc.to_json(),
                       canonical=canonical_bytes(doc), status=Status.pending_approval,
                       required_approvals=required, approvals=[])
        s.add(row)
        s.flush()
        log.append(s, "contract.applied", actor.id, doc.id,
                   {"document": doc.to_json(), "required_approvals": required})
        return view(row)


def approve(ctx: Context, actor: Actor, contract_id: str) -> dict[str, Any]:
    require(actor, Role.provider)
    with ctx.transaction() as s:
        row = load(s, actor, contract_id)
        status, given = lifecycle.approve(Status(row.status), frozenset(row.approvals), actor.id,
                                          frozenset(row.required_approvals))
        row.status, row.approvals = status, sorted(given)
        log.append(s, "contract.approved", actor.id, row.id, {"status": status})
        return view(row)


def refuse(ctx: Context, actor: Actor, contract_id: str, reason: str) -> dict[str, Any]:
    require(actor, Role.provider)
    if not reason.strip():
        raise BadRequest("a refusal needs a reason: {\"reason\": \"…\"}")
    with ctx.transaction() as s:
        row = load(s, actor, contract_id)
        if actor.id not in row.required_approvals:
            raise Forbidden("only a provider of one of the contract's datasets can refuse it")
        row.status = lifecycle.refuse(Status(row.status))
        row.status_reason = reason
        log.append(s, "contract.refused", actor.id, row.id, {"reason": reason})
        return view(row)


def sign(ctx: Context, actor: Actor, contract_id: str, signature: str | None) -> dict[str, Any]:
    require(actor, Role.bureau, Role.operator)
    with ctx.transaction() as s:
        row = load(s, actor, contract_id)
        doc = document(row)
        if actor.role == Role.bureau:
            row.status = lifecycle.sign_by_bureau(Status(row.status))
            row.bureau_signature = sign_contract(ctx.bureau_key, doc)
            log.append(s, "contract.signed", actor.id, row.id,
                       {"by": "bureau", "signature": row.bureau_signature})
        else:
            if not signature:
                raise BadRequest("send {\"signature\": base64 Ed25519 signature over the "
                                 "contract's canonical bytes (GET /v1/contracts/{id})}")
            status = lifecycle.sign_by_operator(Status(row.status))
            key = s.get(Principal, actor.id).public_key  # type: ignore[union-attr]
            if not key:
                raise BadRequest("register your public key with the bureau before signing")
            verify_contract(key, doc, signature)
            row.status, row.operator_signature = status, signature
            log.append(s, "contract.signed", actor.id, row.id,
                       {"by": "operator", "signature": signature})
            log.append(s, "contract.activated", actor.id, row.id, {})
        return view(row)


def suspend(ctx: Context, actor: Actor, contract_id: str, reason: str) -> dict[str, Any]:
    require(actor, Role.bureau, Role.regulator)
    if not reason.strip():
        raise BadRequest("a suspension needs a reason: {\"reason\": \"…\"}")
    with ctx.transaction() as s:
        row = load(s, actor, contract_id)
        row.status = lifecycle.suspend(Status(row.status))
        row.status_reason = reason
        log.append(s, "contract.suspended", actor.id, row.id, {"reason": reason})
        return view(row)


def get(ctx: Context, actor: Actor, contract_id: str) -> dict[str, Any]:
    with ctx.reading() as s:
        return view(load(s, actor, contract_id))
