"""Readable names beside ids: principals (operators, departments, the bureau) and datasets.

Reports name things by id so that they join up; people read names. Both are small tables,
so a report reads them whole, once.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from sandbox.store.models import Dataset, Principal


@dataclass(frozen=True)
class Directory:
    principals: dict[str, str]  # id → name
    datasets: dict[str, tuple[str, str]]  # name → (title, provider id)

    def name(self, principal_id: str | None) -> str | None:
        return self.principals.get(principal_id) if principal_id else None

    def dataset_title(self, dataset: str | None) -> str | None:
        return self.datasets[dataset][0] if dataset in self.datasets else None

    def department(self, dataset: str | None) -> str | None:
        """The name of the department that provides a dataset."""
        return self.name(self.datasets[dataset][1]) if dataset in self.datasets else None


def load(session: Session) -> Directory:
    return Directory(
        principals={
            id_: name for id_, name in session.execute(select(Principal.id, Principal.name))
        },
        datasets={
            name: (title, provider)
            for name, title, provider in session.execute(
                select(Dataset.name, Dataset.title, Dataset.provider_id)
            )
        },
    )
