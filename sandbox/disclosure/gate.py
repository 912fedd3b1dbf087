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

from sandbox.common.lru import LRU
from sandbox.disclosure.audit import Conflict, Partition, Undo, digest, members

# Per released row, its sets: (space, serialized bitmap), the space saying what the people
# were released about ("people" for groups, "measure:<columns>" for those contributing to a
# magnitude). Each space has its own partition: a count says nothing about incomes.
Rows = Sequence[Sequence[tuple[str, bytes]] | None]


class Gate:
    def __init__(
        self, load: Callable[[str], Iterable[tuple[str, bytes]]], max_bytes: int = 2 << 30
    ) -> None:
        self._load = load
        self._lock = threading.Lock()
        self._held: LRU[str, dict[str, Partition]] = LRU(max_bytes, _nbytes)
        self._audits: dict[str, int] = {}

    def _partitions(self, operator: str) -> dict[str, Partition]:
        held = self._held.get(operator)
        if held is None:
            held = {}
            for space, blob in self._load(operator):
                part = held.setdefault(space, Partition())
                part.add(members(blob))
                part.known.add(digest(blob))
            self._held.put(operator, held)
        return held

    def audit(self, operator: str, rows: Rows, threshold: int) -> list[Conflict | None]:
        """Check each row's sets against the operator's releases (and the rows before it)
        and record the rows that pass; per row, why it may not be released, or None."""
        with self._lock:
            spaces = self._partitions(operator)
            out = [_admit(spaces, sets, threshold) if sets else None for sets in rows]
            self._held.put(operator, spaces)  # its size may have changed
            self._audits[operator] = self._audits.get(operator, 0) + 1
            return out

    def held_bytes(self, operator: str) -> int:
        """What the gate holds for the operator's releases (0 when it holds nothing now)."""
        with self._lock:
            return _nbytes(self._held.get(operator) or {})

    def audits(self, operator: str) -> int:
        """How many releases of the operator this gate has audited since it started: the
        order in which concurrent jobs reached the gate, for whoever must check it."""
        with self._lock:
            return self._audits.get(operator, 0)


def _nbytes(spaces: dict[str, Partition]) -> int:
    return sum(p.nbytes for p in spaces.values())


def _admit(
    spaces: dict[str, Partition], sets: Sequence[tuple[str, bytes]], threshold: int
) -> Conflict | None:
    if threshold <= 1:
        return None
    digests = [(space, digest(blob)) for space, blob in sets]
    if all(space in spaces and d in spaces[space].known for space, d in digests):
        return None  # asked before: the same people, nothing new to combine
    # A row with several sets (a join's tables, its measures) passes only as a whole: the
    # later sets are checked against the earlier ones too, and a refusal undoes them all.
    created = {space for space, _ in sets if space not in spaces}
    recorded: list[tuple[Partition, Undo]] = []
    for space, blob in sets:
        partition = spaces.setdefault(space, Partition())
        ids = members(blob)
        conflict = partition.conflict(ids, threshold)
        if conflict is not None:
            for done, change in reversed(recorded):
                done.undo(change)
            for name in created:
                spaces.pop(name, None)
            return conflict
        recorded.append((partition, partition.add(ids)))
    for space, d in digests:
        spaces[space].known.add(d)
    return None


class GateActor:
    """The gate as a Ray actor: one per database, so that every API process and every job
    driver of an instance shares it. It reads the recorded sets itself."""

    def __init__(self, load: Callable[[str], Iterable[tuple[str, bytes]]]) -> None:
        self._gate = Gate(load)

    def audit(self, operator: str, rows: Rows, threshold: int) -> list[Conflict | None]:
        return self._gate.audit(operator, rows, threshold)

    def audits(self, operator: str) -> int:
        return self._gate.audits(operator)
