"""Privacy budgets in the database: reserve a job's ε when it is admitted, charge or refund it
when the job settles, and show what is left of each budget.

The rules (what ε a job needs, whether it fits) live in `contracts.budget`; this module loads,
records and logs, inside the caller's transaction: the one that reserves or settles the job's
money, under the same lock.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.budget import ZERO, Epsilon, check_budget, remaining
from contracts.document import ContractDocument
from contracts.errors import ContractInvalid
from sandbox.errors import BadRequest
from sandbox.language.analysis import CodeFacts
from sandbox.ledger import log
from sandbox.store.models import PrivacyBudget


def job_epsilon(
    contract: ContractDocument, facts: CodeFacts, requested: Mapping[str, str] | None
) -> dict[str, Epsilon]:
    """The ε a job reserves per private dataset it may read (those its code names, or all of
    the contract's when a name is computed at run time): what it declares, else the
    contract's per_job_epsilon."""
    requested = requested or {}
    private = frozenset(contract.privacy)
    touched = private if facts.datasets is None else facts.datasets & private
    for name in sorted(requested):
        if name not in private:
            raise BadRequest(
                f"epsilon names dataset '{name}', which contract {contract.id} does not "
                "analyse under differential privacy; datasets it does: "
                f"{', '.join(sorted(private)) or '(none)'}"
            )
        if name not in touched:
            raise BadRequest(
                f"epsilon names dataset '{name}', which this job's code never "
                "reads; remove it from epsilon"
            )
    wanted: dict[str, Epsilon] = {}
    for name in sorted(touched):
        if name not in requested:
            wanted[name] = contract.privacy[name].per_job_epsilon
            continue
        try:
            wanted[name] = Epsilon.parse(requested[name], f"epsilon for dataset '{name}'")
        except ContractInvalid as exc:
            raise BadRequest(str(exc)) from None
    return wanted


def reserve(
    session: Session,
    contract: ContractDocument,
    job_id: str,
    actor_id: str,
    wanted: Mapping[str, Epsilon],
) -> None:
    """Hold each dataset's ε for the job, refusing when a budget has too little left."""
    for name, eps in sorted(wanted.items()):
        row = _row(session, contract.id, name)
        check_budget(
            Epsilon.from_micro(row.spent_micro),
            Epsilon.from_micro(row.reserved_micro),
            eps,
            contract.privacy[name].epsilon,
            dataset=name,
            contract_id=contract.id,
        )
        row.reserved_micro += eps.micro()
        log.append(
            session,
            "privacy.reserved",
            actor_id,
            job_id,
            {"contract_id": contract.id, "dataset": name, "epsilon": str(eps)},
        )


def settle(
    session: Session,
    contract_id: str,
    job_id: str,
    reserved: Mapping[str, str],
    usage: Mapping[str, Any],
    service_fault: bool,
) -> None:
    """Release a settled job's hold. The ε its releases used stays spent, whatever became of
    the job, since the noisy values reached its code; a service fault refunds everything."""
    used = usage.get("epsilon_by_dataset", {}) or {}
    for name, text in sorted(reserved.items()):
        held = Epsilon.parse(text)
        spent = ZERO if service_fault else min(Epsilon.from_text(used.get(name, "0")), held)
        row = _row(session, contract_id, name)
        row.reserved_micro -= held.micro()
        row.spent_micro += spent.micro()
        if spent > ZERO:
            log.append(
                session,
                "privacy.spent",
                None,
                job_id,
                {"contract_id": contract_id, "dataset": name, "epsilon": str(spent)},
            )
        if held - spent > ZERO:
            log.append(
                session,
                "privacy.refunded",
                None,
                job_id,
                {
                    "contract_id": contract_id,
                    "dataset": name,
                    "epsilon": str(held - spent),
                    "reason": "service fault" if service_fault else "not used by the job",
                },
            )


def balances(session: Session, contract: ContractDocument) -> dict[str, dict[str, str]]:
    """Per private dataset of the terms in force: total, spent, reserved and remaining ε."""
    rows = {
        r.dataset: r
        for r in session.scalars(
            select(PrivacyBudget).where(PrivacyBudget.contract_id == contract.id)
        )
    }
    out: dict[str, dict[str, str]] = {}
    for name, term in sorted(contract.privacy.items()):
        row = rows.get(name)
        spent = Epsilon.from_micro(row.spent_micro if row else 0)
        held = Epsilon.from_micro(row.reserved_micro if row else 0)
        out[name] = {
            "total": str(term.epsilon),
            "spent": str(spent),
            "reserved": str(held),
            "remaining": str(remaining(term.epsilon, spent, held)),
            "per_job_epsilon": str(term.per_job_epsilon),
        }
    return out


def _row(session: Session, contract_id: str, dataset: str) -> PrivacyBudget:
    row = session.get(PrivacyBudget, (contract_id, dataset), with_for_update=True)
    if row is None:
        row = PrivacyBudget(
            contract_id=contract_id, dataset=dataset, spent_micro=0, reserved_micro=0
        )
        session.add(row)
        session.flush()
    return row
