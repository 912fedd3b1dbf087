"""Whether what a job does stays inside what its contract grants."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from contracts.document import USES, ContractDocument, Use
from contracts.errors import ContractScopeError


def check_scope(doc: ContractDocument, usage: Mapping[str, Mapping[str, Collection[Use]]]) -> None:
    """Raise ContractScopeError on the first dataset, column or use ``doc`` does not grant.

    ``usage`` is what a job's plan does: dataset → column → uses. Datasets and columns are
    checked in name order and uses in USES order, so the same job always gets the same
    message.
    """
    for dataset in sorted(usage):
        granted_columns = doc.datasets.get(dataset)
        if granted_columns is None:
            raise ContractScopeError(
                f"dataset '{dataset}' is not part of contract {doc.id}; granted datasets: "
                f"{', '.join(sorted(doc.datasets))}. Change the job to use these, or "
                "apply for a contract that grants it"
            )
        for column in sorted(usage[dataset]):
            granted_uses = granted_columns.get(column)
            if granted_uses is None:
                raise ContractScopeError(
                    f"column '{column}' of dataset '{dataset}' is not granted in contract "
                    f"{doc.id}; granted columns: {', '.join(sorted(granted_columns))}. "
                    "Change the job to use these, or apply for a contract that grants it"
                )
            for use in _in_use_order(usage[dataset][column]):
                if use not in granted_uses:
                    raise ContractScopeError(
                        f"column '{column}' is not granted for {use} in contract {doc.id}; "
                        f"granted uses: {', '.join(granted_uses)}. To {use} '{column}' of "
                        f"dataset '{dataset}', apply for a contract that grants it"
                    )


def _in_use_order(uses: Collection[str]) -> list[str]:
    return sorted(set(uses), key=_use_rank)


def _use_rank(use: str) -> tuple[int, str]:
    # Unknown uses sort last (by name) so they are still reported, deterministically.
    known: tuple[str, ...] = USES
    return (known.index(use) if use in known else len(known), use)
