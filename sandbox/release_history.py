"""The contract's history of released cells, kept for the difference check.

The job driver checks each new cell against the history as it stood when the job started
(plus the job's own earlier releases). Two jobs of one contract may run at once, so each
job's new sets are checked again at settlement, under the settlement lock, against the sets
other jobs recorded meanwhile; a job that conflicts has its outputs withheld.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pyroaring import FrozenBitMap64
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sandbox.disclosure.difference import History, Snapshot, digest
from sandbox.lru import LRU
from sandbox.store.models import ReleasedSet


def mark(session: Session) -> int:
    """The newest recorded set's id: what a job's history snapshot contains."""
    return int(session.scalar(select(func.max(ReleasedSet.id))) or 0)


def load(session: Session, contract_id: str, datasets: Iterable[str], after: int = 0,
         other_than: str | None = None, upto: int | None = None) -> dict[str, tuple[bytes, ...]]:
    query = (select(ReleasedSet.dataset, ReleasedSet.members)
             .where(ReleasedSet.contract_id == contract_id,
                    ReleasedSet.dataset.in_(list(datasets)), ReleasedSet.id > after)
             .order_by(ReleasedSet.id))
    if upto is not None:
        query = query.where(ReleasedSet.id <= upto)
    if other_than is not None:
        query = query.where(ReleasedSet.job_id != other_than)
    rows = session.execute(query)
    out: dict[str, list[bytes]] = {}
    for dataset, members in rows:
        out.setdefault(dataset, []).append(members)
    return {name: tuple(sets) for name, sets in out.items()}


def newest(session: Session, contract_id: str, datasets: Iterable[str]) -> dict[str, int]:
    """Per dataset, the id of the contract's newest released set of it (0: none yet)."""
    names = list(datasets)
    rows = session.execute(
        select(ReleasedSet.dataset, func.max(ReleasedSet.id))
        .where(ReleasedSet.contract_id == contract_id, ReleasedSet.dataset.in_(names))
        .group_by(ReleasedSet.dataset))
    found = {dataset: int(last) for dataset, last in rows}
    return {name: found.get(name, 0) for name in names}


Share = Callable[[tuple[bytes, ...]], Any]   # sets → a handle a job's driver can resolve


class Snapshots:
    """The histories jobs start from, kept while they stay current.

    A history only grows, so (contract, dataset, newest set id) names its content. Jobs of a
    contract whose history has not grown since the last job reuse what that job was given,
    instead of reading and shipping every set again; with Ray the sets go to the object store
    once (`share`) and each job's driver resolves the handle, which its process also keeps."""

    def __init__(self, share: Share | None = None, size: int = 64) -> None:
        self._share = share
        self._kept: LRU[tuple[str, str, int], Snapshot] = LRU(size)

    def for_job(self, session: Session, contract_id: str,
                datasets: Iterable[str]) -> dict[str, Snapshot]:
        out = {}
        for dataset, last in newest(session, contract_id, datasets).items():
            key = (contract_id, dataset, last)
            out[dataset] = self._kept.get(key) or self._snapshot(session, key)
        return out

    def _snapshot(self, session: Session, key: tuple[str, str, int]) -> Snapshot:
        contract_id, dataset, last = key
        sets = load(session, contract_id, [dataset], upto=last).get(dataset, ())
        if not sets:
            return Snapshot(key, sets=())
        snap = (Snapshot(key, ref=self._share(sets)) if self._share is not None
                else Snapshot(key, sets=sets))
        self._kept.put(key, snap)
        return snap


NewSets = Mapping[str, list[tuple[bytes, int]]]   # dataset → (set, threshold it passed)


def conflicting(session: Session, contract_id: str, new: NewSets, after: int,
                job_id: str) -> str | None:
    """The dataset whose new sets conflict, at the threshold each was released under, with
    sets other jobs recorded since `after`."""
    since = load(session, contract_id, new, after, other_than=job_id)
    for dataset, sets in sorted(new.items()):
        others = History.of(since.get(dataset, ()))
        if len(others) and any(others.conflict(blob, threshold) for blob, threshold in sets):
            return dataset
    return None


def record(session: Session, contract_id: str, job_id: str, new: NewSets) -> int:
    known = {(d, g) for d, g in session.execute(
        select(ReleasedSet.dataset, ReleasedSet.digest)
        .where(ReleasedSet.contract_id == contract_id, ReleasedSet.dataset.in_(list(new))))}
    added = 0
    for dataset, sets in sorted(new.items()):
        for blob, _ in sets:
            key = (dataset, digest(blob))
            if key in known:
                continue
            known.add(key)
            session.add(ReleasedSet(contract_id=contract_id, dataset=dataset, digest=key[1],
                                    cardinality=len(FrozenBitMap64.deserialize(blob)),
                                    members=blob, job_id=job_id))
            added += 1
    return added
