"""Auditing an operator's releases as a whole: no combination of released cells may single out
fewer people than the threshold.

Every released cell is an aggregate over a set of people (entities, catalog.entities). An
operator who holds exact answers over sets S1, S2, … can add and subtract them: whatever
linear combination of the answers they form is an aggregate over a combination of the sets.
Take the *atoms* of the released sets: the classes of people who are in exactly the same
released sets. Every such combination is constant on each atom, so the finest thing the
operator can isolate is one atom's aggregate (Chin and Özsoyoğlu's audit of SUM queries, on
the partition of people the queries induce). The rule kept here is therefore:

    every atom holds either no one, or at least `threshold` people,

checked when a set is about to be released: the set splits each atom it touches into the part
inside and the part outside, and both must be empty or hold at least `threshold` people.
People never released before form a new atom of those that the set brings in. This one rule
covers two filters differing by one person, the tracker built from complementary filters,
unions of three or more releases, and the same queries spread over several contracts or
datasets of one operator (one partition per operator, over everyone in every dataset). A set
that repeats earlier ones (a union of atoms) changes nothing and is always allowed.

The cost of a check is proportional to the set's size (a binary search per member into the
sorted people released so far), never to the number of earlier releases: the partition holds
one atom number per person, however many sets made it. Not covered: a small atom whose sum is
dominated by one large contribution (dominance is checked per released cell, not per atom),
and atoms whose members were released under a lower level's threshold.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
from pyroaring import BitMap64

RULE = "difference"


@dataclass(frozen=True)
class Conflict:
    """Why a set was refused: the smallest piece of people it would have singled out."""

    differs_by: int
    via: str  # "new" (people released for the first time) or "atoms" (a split of earlier ones)
    # Whether the set is nearly a union of earlier atoms: fewer than the threshold of people
    # added to, or left out of, the atoms it touches (two filters differing by a person, a
    # tracker), rather than a new cross-classification of people already released (whose
    # small pieces are inside the set).
    near: bool = False


def digest(blob: bytes) -> bytes:
    return hashlib.blake2b(blob, digest_size=16).digest()


def members(blob: bytes) -> np.ndarray:
    """A serialized bitmap's members, sorted."""
    return np.asarray(BitMap64.deserialize(blob).to_array(), dtype=np.uint64)


@dataclass
class Partition:
    """The atoms of one operator's released sets: for each person ever released (sorted
    `people`), the number of their atom; `sizes[a]`: how many people atom `a` holds."""

    people: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    atoms: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    sizes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    # Digests of the sets added: a set released before is a union of atoms, always allowed,
    # and recognised without a search (the same query asked again costs a hash).
    known: set[bytes] = field(default_factory=set)

    @property
    def nbytes(self) -> int:
        return int(
            self.people.nbytes + self.atoms.nbytes + self.sizes.nbytes + 48 * len(self.known)
        )

    def _locate(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each member's place in `people`, and whether it is there."""
        at = np.searchsorted(self.people, ids)
        known = np.zeros(len(ids), bool)
        inside = at < len(self.people)
        known[inside] = self.people[at[inside]] == ids[inside]
        return at, known

    def _pieces(
        self, at: np.ndarray, known: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        touched, inside = np.unique(self.atoms[at[known]], return_counts=True)
        return touched, inside, self.sizes[touched] - inside

    def conflict(self, ids: np.ndarray, threshold: int) -> Conflict | None:
        """Why releasing an aggregate over `ids` (sorted) would single out fewer than
        `threshold` people when combined with what was released before, or None."""
        if threshold <= 1 or len(ids) == 0:
            return None
        at, known = self._locate(ids)
        fresh = int(len(ids) - known.sum())
        _, inside, outside = self._pieces(at, known)
        split = outside > 0
        left_out = int(outside[split].sum())
        if 0 < fresh < threshold:
            # Near only if it reaches into earlier releases: a few people never released
            # before (a small cell of a first release) are no variant of anything.
            return Conflict(fresh, "new", near=bool(known.any()) and left_out < threshold)
        small = split & ((inside < threshold) | (outside < threshold))
        if small.any():
            return Conflict(
                int(np.minimum(inside[small], outside[small]).min()),
                "atoms",
                near=left_out < threshold and fresh < threshold,
            )
        return None

    def add(self, ids: np.ndarray) -> None:
        """Refine the atoms by a released set (sorted `ids`)."""
        if len(ids) == 0:
            return
        at, known = self._locate(ids)
        touched, inside, outside = self._pieces(at, known)
        split = touched[outside > 0]
        if len(split):
            # The part of each split atom inside the set becomes a new atom.
            renumbered = np.arange(len(self.sizes), len(self.sizes) + len(split))
            current = self.atoms[at[known]]
            where = np.searchsorted(split, current)
            moved = (where < len(split)) & (split[np.minimum(where, len(split) - 1)] == current)
            self.atoms[at[known][moved]] = renumbered[where[moved]]
            moved_sizes = inside[outside > 0]
            self.sizes[split] -= moved_sizes
            self.sizes = np.concatenate([self.sizes, moved_sizes])
        fresh = ids[~known]
        if len(fresh):
            atom = len(self.sizes)
            self.sizes = np.concatenate([self.sizes, [len(fresh)]])
            place = np.searchsorted(self.people, fresh)
            self.people = np.insert(self.people, place, fresh)
            self.atoms = np.insert(self.atoms, place, atom)
