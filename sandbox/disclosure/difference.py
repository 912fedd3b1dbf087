"""Difference checks across a contract's releases: no two released cells, and no cell and
the difference of two released cells, may differ in fewer than `threshold` contributors.

Each released cell's contributing rows are a roaring bitmap (engine.protection). Two releases
whose sets differ in a few rows let an operator subtract one value from the other and learn
about those few people: the classic differencing attack (two filters that differ by one
resident). A new set N is refused when, for some earlier released set E:

- 0 < |N Δ E| < threshold (the two releases differ by a few people), or
- N ⊂ E or E ⊂ N, and the difference D = E \\ N (or N \\ E), itself a derivable release,
  differs from some earlier released set F in 0 < |D Δ F| < threshold. This is the tracker:
  with P, (not P and not C) and everyone released, everyone − P − (not P and not C) is C.

Identical sets are not refused: the same people give the same values again. Sets only get
compared when their sizes differ by less than the threshold, which a sorted index of sizes
makes cheap. Not covered: unions of three or more earlier releases compared with a new one.
Group keys are released from the data even when a cell is suppressed.
"""

from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass, field
from typing import Any

from pyroaring import BitMap64, FrozenBitMap64

from sandbox.lru import LRU

RULE = "difference"


def digest(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


@dataclass(frozen=True)
class Conflict:
    """Why a set was refused: how many rows it differs from an earlier release by."""

    differs_by: int
    via: str   # "pair" (with an earlier release) or "difference" (with a derived one)


@dataclass
class History:
    """The released sets of one contract × dataset, by size."""

    _sizes: list[int] = field(default_factory=list)
    _sets: list[FrozenBitMap64] = field(default_factory=list)
    _digests: set[str] = field(default_factory=set)
    nbytes: int = 0   # of the sets, serialized

    @classmethod
    def of(cls, blobs: "list[bytes] | tuple[bytes, ...]") -> "History":
        h = cls()
        for blob in blobs:
            h.add(blob)
        return h

    def __len__(self) -> int:
        return len(self._sets)

    def copy(self) -> "History":
        """An independent history with the same sets (which are immutable, so shared)."""
        return History(list(self._sizes), list(self._sets), set(self._digests), self.nbytes)

    def add(self, blob: bytes, d: str | None = None) -> bool:
        """Remember a released set; False when it was already known. `d`: its digest, when
        the caller has it (a set of millions of rows is megabytes to hash)."""
        d = d or digest(blob)
        if d in self._digests:
            return False
        s = FrozenBitMap64.deserialize(blob)
        i = bisect.bisect_left(self._sizes, len(s))
        self._sizes.insert(i, len(s))
        self._sets.insert(i, s)
        self._digests.add(d)
        self.nbytes += len(blob)
        return True

    def _near(self, size: int, threshold: int) -> list[FrozenBitMap64]:
        lo = bisect.bisect_left(self._sizes, size - threshold + 1)
        hi = bisect.bisect_right(self._sizes, size + threshold - 1)
        return self._sets[lo:hi]

    def _close(self, s: "FrozenBitMap64 | BitMap64", threshold: int) -> int | None:
        for e in self._near(len(s), threshold):
            d = s.symmetric_difference_cardinality(e)
            if 0 < d < threshold:
                return d
        return None

    def conflict(self, blob: bytes, threshold: int, d: str | None = None) -> Conflict | None:
        if threshold <= 1 or (d or digest(blob)) in self._digests:
            return None
        new = FrozenBitMap64.deserialize(blob)
        d = self._close(new, threshold)
        if d is not None:
            return Conflict(d, "pair")
        n = len(new)
        for size, e in zip(self._sizes, self._sets):
            if size == n:
                continue
            if size > n and new.issubset(e):
                derived = e - new
            elif size < n and e.issubset(new):
                derived = new - e
            else:
                continue
            d = self._close(derived, threshold)
            if d is not None:
                return Conflict(d, "difference")
        return None


@dataclass(frozen=True)
class Snapshot:
    """A contract × dataset's released sets up to its newest one: what a job's difference
    check starts from. `key` (contract, dataset, newest set id) names the content; the sets
    come inline, or as a handle to resolve (a Ray object ref) when they were shared."""

    key: tuple[str, str, int]
    sets: tuple[bytes, ...] | None = None
    ref: Any = None


class Histories:
    """Histories built from snapshots, kept by a process that checks many jobs' releases (a
    job driver) so that a contract's next job need not deserialize the same sets again.
    Each job gets its own copy to add its releases to. Bounded by the sets' bytes."""

    def __init__(self, max_bytes: int = 256 << 20) -> None:
        self._kept: LRU[tuple[str, str, int], History] = LRU(max_bytes, lambda h: h.nbytes)

    def history(self, snapshot: Snapshot, resolve: Any = None) -> History:
        kept = self._kept.get(snapshot.key)
        if kept is None:
            sets = snapshot.sets if snapshot.sets is not None else resolve(snapshot.ref)
            kept = History.of(sets)
            self._kept.put(snapshot.key, kept)
        return kept.copy()
