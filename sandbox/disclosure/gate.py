"""The release gate's memory: every operator's partition of released people, in one place,
changed one release at a time.

A job's code must only ever receive final releases: two jobs of one operator running at once
must not both receive cells that are safe apart and unsafe together. So the audit of a release
and its recording are one step, taken under one lock, at the moment of release (not when the
job settles, by which time its code has seen the cells). With Ray the gate is one actor that
every job's driver calls; in-process, one object. A partition not held yet is rebuilt from the
operator's recorded sets (`load`), once per process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from sandbox.disclosure.audit import Conflict, Partition, digest, members
from sandbox.lru import LRU

Rows = Sequence[Sequence[bytes] | None]   # per released row, its sets (one per table read)


class Gate:
    def __init__(self, load: Callable[[str], Iterable[bytes]], max_bytes: int = 2 << 30) -> None:
        self._load = load
        self._lock = threading.Lock()
        self._held: LRU[str, Partition] = LRU(max_bytes, lambda p: p.nbytes)

    def _partition(self, operator: str) -> Partition:
        held = self._held.get(operator)
        if held is None:
            held = Partition()
            for blob in self._load(operator):
                held.add(members(blob))
                held.known.add(digest(blob))
            self._held.put(operator, held)
        return held

    def audit(self, operator: str, rows: Rows, threshold: int) -> list[Conflict | None]:
        """Check each row's sets against the operator's releases (and the rows before it)
        and record the rows that pass; per row, why it may not be released, or None."""
        with self._lock:
            partition = self._partition(operator)
            out = [_admit(partition, sets, threshold) if sets else None for sets in rows]
            self._held.put(operator, partition)   # its size may have changed
            return out


def _admit(partition: Partition, sets: Sequence[bytes], threshold: int) -> Conflict | None:
    if threshold <= 1:
        return None
    digests = [digest(blob) for blob in sets]
    if all(d in partition.known for d in digests):
        return None        # asked before: the same people, nothing new to combine
    arrays = [members(blob) for blob in sets]
    # A row with several sets (one per table a join read) passes only as a whole: the later
    # sets are checked against the earlier ones too, and a refusal undoes them.
    saved = _copy(partition) if len(arrays) > 1 else None
    for ids in arrays:
        conflict = partition.conflict(ids, threshold)
        if conflict is not None:
            if saved is not None:
                partition.people, partition.atoms, partition.sizes = saved
            return conflict
        partition.add(ids)
    partition.known.update(digests)
    return None


def _copy(partition: Partition) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return partition.people.copy(), partition.atoms.copy(), partition.sizes.copy()


class GateActor:
    """The gate as a Ray actor: one per database, so that every API process and every job
    driver of an instance shares it. It reads the recorded sets itself."""

    def __init__(self, database_url: str) -> None:
        from sandbox import release_history

        self._gate = Gate(release_history.loader(database_url))

    def audit(self, operator: str, rows: Rows, threshold: int) -> list[Conflict | None]:
        return self._gate.audit(operator, rows, threshold)
