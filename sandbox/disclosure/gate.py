"""The release gate's memory: every operator's partition of released people, in one place,
changed one release at a time.

A job's code must only ever receive final releases: two jobs of one operator running at once
must not both receive cells that are safe apart and unsafe together. So the audit of a release
and its recording are one step, taken under one lock, at the moment of release (not when the
job settles, by which time its code has seen the cells). With Ray the gate is one actor that
every job's driver calls; in-process, one object. A partition not held yet is rebuilt from the
operator's recorded sets (`load`), once per process.

A release repeated (a dashboard's refresh) should cost no more than its digests. A job's
driver sends each row's sets as digests (`entries`), and the sets themselves only for the
rows the gate asks for (`NEEDED`: a set it does not know), or at once when they are small.
And the gate knows which of the sets it holds the history has recorded: a row whose sets all
were released and recorded before passes as `RECORDED`, and the job need not hand them on to
settlement (q4's release is 37 MB of sets). A set stays unrecorded from its admission until
the settlement of a job that handed it on says it was recorded (`settled`); until then every
job releasing it hands it on again, so a job that dies before its settlement loses nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from sandbox.common.lru import LRU
from sandbox.disclosure.audit import Conflict, Partition, Undo, digest, members

# Per released row, its sets: (space, serialized bitmap), the space saying what the people
# were released about ("people" for groups, "measure:<columns>" for those contributing to a
# magnitude). Each space has its own partition: a count says nothing about incomes.
Rows = Sequence[Sequence[tuple[str, bytes]] | None]
# One set as a driver sends it: (space, digest, serialized bitmap or None until asked for).
Entry = tuple[str, bytes, bytes | None]
Entries = Sequence[Sequence[Entry] | None]


@dataclass(frozen=True)
class Recorded:
    """A row that passed because every one of its sets was released and recorded before:
    nothing new for the history, so the job need not hand its sets on to be recorded."""


@dataclass(frozen=True)
class Needed:
    """The row holds a set the gate does not know, sent without its members: send them."""


RECORDED, NEEDED = Recorded(), Needed()
# Per row: why it may not be released, None (released: its sets go to the history),
# RECORDED (released, every set of it recorded already) or NEEDED.
Verdict = Conflict | Recorded | Needed | None
# Sets up to this size in all go with their digests: asking for them would cost a round trip.
INLINE_BYTES = 1 << 16


def entries(rows: Rows, inline_bytes: int | None = INLINE_BYTES) -> list[list[Entry] | None]:
    """Rows as a driver sends them: each set's digest, and its members too when the rows'
    sets add up to at most `inline_bytes` (None: always)."""
    size = sum(len(blob) for row in rows if row for _, blob in row)
    inline = inline_bytes is None or size <= inline_bytes
    digests = _Digests()
    return [
        [(space, digests.of(blob), blob if inline else None) for space, blob in row]
        if row
        else None
        for row in rows
    ]


class _Digests:
    """Digests of sets that often repeat: a group's people, again as those who count for
    each of its magnitudes (q4's rows hold every set three times, 36 MB for 12). An equal
    set seen before is found by its length and ends and confirmed by comparing the bytes,
    several times faster than hashing them again."""

    def __init__(self) -> None:
        self._seen: dict[tuple[int, bytes, bytes], list[tuple[bytes, bytes]]] = {}

    def of(self, blob: bytes) -> bytes:
        key = (len(blob), blob[:32], blob[-32:])
        known = self._seen.setdefault(key, [])
        for other, found in known:
            if other is blob or other == blob:
                return found
        found = digest(blob)
        known.append((blob, found))
        return found


def with_sets(rows: Rows, sent: Entries, wanted: set[int]) -> list[list[Entry] | None]:
    """The `wanted` rows again, members and all; the others left out (None)."""
    out: list[list[Entry] | None] = []
    for i, (row, row_sent) in enumerate(zip(rows, sent)):
        if i in wanted and row and row_sent:
            out.append([(s, d, blob) for (s, d, _), (_, blob) in zip(row_sent, row)])
        else:
            out.append(None)
    return out


class Gate:
    def __init__(
        self, load: Callable[[str], Iterable[tuple[str, bytes]]], max_bytes: int = 2 << 30
    ) -> None:
        self._load = load
        self._lock = threading.Lock()
        self._held: LRU[str, dict[str, Partition]] = LRU(max_bytes, _nbytes)
        self._audits: dict[str, int] = {}
        # Per running job, the sets it handed on that were unrecorded: (operator, space, digest).
        self._pending: dict[str, list[tuple[str, str, bytes]]] = {}

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
        verdicts = self.release(operator, entries(rows, inline_bytes=None), threshold, None)
        return [v if isinstance(v, Conflict) else None for v in verdicts]

    def release(
        self, operator: str, rows: Entries, threshold: int, job: str | None
    ) -> list[Verdict]:
        """`audit` for a job's release, its sets sent as `entries`: a row that passes is
        RECORDED when the history holds every set of it (the others' unrecorded sets wait
        for `job`'s settlement), and NEEDED when it holds a set the gate does not know
        whose members were not sent."""
        with self._lock:
            spaces = self._partitions(operator)
            handed: list[tuple[str, bytes]] = []
            out = [_admit(spaces, sets, threshold, handed) if sets else None for sets in rows]
            if job is not None and handed:
                self._pending.setdefault(job, []).extend((operator, s, d) for s, d in handed)
            self._held.put(operator, spaces)  # its size may have changed
            if not any(isinstance(v, Needed) for v in out):  # else audited when they come
                self._audits[operator] = self._audits.get(operator, 0) + 1
            return out

    def settled(self, job: str, recorded: bool) -> None:
        """`job` was settled: when `recorded`, the history now holds every set it handed on."""
        with self._lock:
            handed = self._pending.pop(job, [])
            if not recorded:
                return
            for operator, space, d in handed:
                held = self._held.get(operator)
                if held is not None and space in held:
                    held[space].unrecorded.discard(d)

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
    spaces: dict[str, Partition],
    sets: Sequence[Entry],
    threshold: int,
    handed: list[tuple[str, bytes]],
) -> Verdict:
    """One row's verdict; the unrecorded sets of a row that passes go to `handed`."""
    if threshold <= 1:
        return None
    digests = [(space, d) for space, d, _ in sets]
    if all(space in spaces and d in spaces[space].known for space, d in digests):
        # Asked before: the same people, nothing new to combine.
        unrecorded = [(s, d) for s, d in digests if d in spaces[s].unrecorded]
        handed += unrecorded
        return None if unrecorded else RECORDED
    if any(blob is None for _, _, blob in sets):
        return NEEDED
    # A row with several sets (a join's tables, its measures) passes only as a whole: the
    # later sets are checked against the earlier ones too, and a refusal undoes them all.
    created = {space for space, _, _ in sets if space not in spaces}
    recorded: list[tuple[Partition, Undo]] = []
    for space, _, blob in sets:
        assert blob is not None
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
        partition = spaces[space]
        if d not in partition.known or d in partition.unrecorded:
            partition.known.add(d)
            partition.unrecorded.add(d)
            handed.append((space, d))
    return None


class GateActor:
    """The gate as a Ray actor: one per database, so that every API process and every job
    driver of an instance shares it. It reads the recorded sets itself."""

    def __init__(self, load: Callable[[str], Iterable[tuple[str, bytes]]]) -> None:
        self._gate = Gate(load)

    def audit(self, operator: str, rows: Rows, threshold: int) -> list[Conflict | None]:
        return self._gate.audit(operator, rows, threshold)

    def release(
        self, operator: str, rows: Entries, threshold: int, job: str | None
    ) -> list[Verdict]:
        return self._gate.release(operator, rows, threshold, job)

    def settled(self, job: str, recorded: bool) -> None:
        self._gate.settled(job, recorded)

    def audits(self, operator: str) -> int:
        return self._gate.audits(operator)
