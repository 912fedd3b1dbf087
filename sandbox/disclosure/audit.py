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

The cost of a check or of recording a set is proportional to the set's size, never to the number
of earlier releases nor to the number of people released before: entity numbers are dense
(catalog.entities), so the partition is a table indexed by entity number holding each person's
atom, and a set's members are looked up in it directly. Not covered: a small atom whose sum is
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
    # SHA-256, not BLAKE2: x86's SHA extensions make it twice as fast on a q4-sized release
    # (37 MB of sets: 21 against 43 ms), and a release is hashed whole at every audit.
    return hashlib.sha256(blob).digest()[:16]


def members(blob: bytes) -> np.ndarray:
    """A serialized bitmap's members, sorted."""
    return np.asarray(BitMap64.deserialize(blob).to_array(), dtype=np.uint64)


# No atom yet: never released.
_NONE = -1
# Entity numbers below this are the registry's (dense, from 0: catalog.entities) and are
# looked up in a table indexed by number. Numbers at or above it are those of rows stored
# without entity numbers (engine.protection.with_row_entities: the top bit set), kept sorted
# apart, with a binary search per member: a table indexed by them could not be allocated.
DENSE_LIMIT = 1 << 32


@dataclass(frozen=True)
class Undo:
    """What recording one set changed, to take it back when the rest of its row is refused."""

    ids: np.ndarray
    before: np.ndarray  # the members' atoms before
    atoms: int  # how many atoms there were
    split: np.ndarray  # atoms that lost members to new ones …
    moved: np.ndarray  # … and how many each lost


@dataclass
class Partition:
    """The atoms of one operator's released sets: `atom_of[e]` is the atom of entity number
    `e` (`_NONE` if never released), `sizes[a]` how many people atom `a` holds. Numbers from
    `DENSE_LIMIT` up are in `sparse_people` (sorted) with their atoms in `sparse_atoms`."""

    atom_of: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    sparse_people: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    sparse_atoms: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    _sizes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    _atoms: int = 0
    # How many people were ever released.
    people: int = 0
    # Digests of the sets added: a set released before is a union of atoms, always allowed,
    # and recognised without a lookup (the same query asked again costs a hash).
    known: set[bytes] = field(default_factory=set)
    # Those of `known` that no settlement is known to have recorded yet (admitted by a job
    # still running, or by one that failed before its settlement): a job releasing one of
    # them again hands it on to be recorded, so the recorded history never misses a set.
    unrecorded: set[bytes] = field(default_factory=set)

    @property
    def sizes(self) -> np.ndarray:
        return self._sizes[: self._atoms]

    @property
    def nbytes(self) -> int:
        held = self.atom_of.nbytes + self.sparse_people.nbytes + self.sparse_atoms.nbytes
        return int(held + self._sizes.nbytes + 48 * len(self.known))

    def _lookup(self, ids: np.ndarray) -> np.ndarray:
        """Each member's atom (`ids` sorted), `_NONE` for people never released."""
        k = int(np.searchsorted(ids, DENSE_LIMIT))
        dense, sparse = ids[:k], ids[k:]
        if k and int(dense[-1]) < len(self.atom_of):
            out: np.ndarray = self.atom_of[dense]
        else:
            out = np.full(k, _NONE, np.int32)
            inside = dense < len(self.atom_of)
            out[inside] = self.atom_of[dense[inside]]
        if not len(sparse):
            return out
        at, there = self._sparse_at(sparse)
        found = np.full(len(sparse), _NONE, np.int32)
        found[there] = self.sparse_atoms[at[there]]
        return np.concatenate([out, found])

    def _assign(self, ids: np.ndarray, atoms: np.ndarray) -> None:
        """Put each of `ids` (sorted) in its atom (`_NONE`: back to never released)."""
        k = int(np.searchsorted(ids, DENSE_LIMIT))
        if k:
            self._reserve_people(int(ids[k - 1]) + 1)
            self.atom_of[ids[:k]] = atoms[:k]
        sparse, values = ids[k:], atoms[k:]
        if not len(sparse):
            return
        at, there = self._sparse_at(sparse)
        self.sparse_atoms[at[there]] = values[there]
        if not there.all():
            # Inserting costs the sparse people held: rows stored without entity numbers
            # are the exception (instances older than the registry).
            self.sparse_people = np.insert(self.sparse_people, at[~there], sparse[~there])
            self.sparse_atoms = np.insert(self.sparse_atoms, at[~there], values[~there])

    def _sparse_at(self, sparse: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where each of `sparse` (sorted) is or would go in `sparse_people`, and whether it
        is there."""
        at = np.searchsorted(self.sparse_people, sparse)
        there = at < len(self.sparse_people)
        there[there] = self.sparse_people[at[there]] == sparse[there]
        return at, there

    def _pieces(self, current: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The atoms the members fall in (sorted), how many of the members each holds, and
        how many of its people are not members."""
        if self._atoms <= 4 * len(current) + 1024:
            counts = np.bincount(current, minlength=self._atoms)
            touched = np.flatnonzero(counts)
            inside = counts[touched]
        else:
            touched, inside = np.unique(current, return_counts=True)
        return touched, inside, self.sizes[touched] - inside

    def conflict(self, ids: np.ndarray, threshold: int) -> Conflict | None:
        """Why releasing an aggregate over `ids` (sorted) would single out fewer than
        `threshold` people when combined with what was released before, or None."""
        if threshold <= 1 or len(ids) == 0:
            return None
        current = self._lookup(ids)
        known = current != _NONE
        fresh = int(len(ids) - np.count_nonzero(known))
        _, inside, outside = self._pieces(current[known])
        split = outside > 0
        left_out = int(outside[split].sum())
        if 0 < fresh < threshold:
            # Near only if it reaches into earlier releases: a few people never released
            # before (a small cell of a first release) are no variant of anything.
            return Conflict(fresh, "new", near=fresh < len(ids) and left_out < threshold)
        small = split & ((inside < threshold) | (outside < threshold))
        if small.any():
            return Conflict(
                int(np.minimum(inside[small], outside[small]).min()),
                "atoms",
                near=left_out < threshold and fresh < threshold,
            )
        return None

    def add(self, ids: np.ndarray) -> Undo:
        """Refine the atoms by a released set (sorted `ids`)."""
        empty = np.zeros(0, np.int64)
        if len(ids) == 0:
            return Undo(ids, np.zeros(0, np.int32), self._atoms, empty, empty)
        before = self._lookup(ids)
        known = before != _NONE
        old = before[known]
        atoms = self._atoms
        touched, inside, outside = self._pieces(old)
        split = touched[outside > 0]
        moved_sizes = inside[outside > 0]
        fresh = int(len(ids) - np.count_nonzero(known))
        self._reserve_atoms(atoms + len(split) + (fresh > 0))
        after = before.copy()
        if len(split):
            # The part of each split atom inside the set becomes a new atom.
            where = np.searchsorted(split, old)
            moved = (where < len(split)) & (split[np.minimum(where, len(split) - 1)] == old)
            after[np.flatnonzero(known)[moved]] = atoms + where[moved]
            self._sizes[split] -= moved_sizes
            self._sizes[atoms : atoms + len(split)] = moved_sizes
        if fresh:
            after[~known] = atoms + len(split)
            self._sizes[atoms + len(split)] = fresh
        self._assign(ids, after)
        self._atoms = atoms + len(split) + (fresh > 0)
        self.people += fresh
        return Undo(ids, before, atoms, split, moved_sizes)

    def undo(self, change: Undo) -> None:
        """Take back a set recorded by `add` (the last one recorded, or one of the last ones
        in the reverse order of recording)."""
        self.people -= int(np.count_nonzero(change.before == _NONE))
        self._assign(change.ids, change.before)
        self._sizes[change.split] += change.moved
        self._atoms = change.atoms

    def _reserve_people(self, n: int) -> None:
        if n > len(self.atom_of):
            grown = np.full(max(n, len(self.atom_of) * 5 // 4), _NONE, np.int32)
            grown[: len(self.atom_of)] = self.atom_of
            self.atom_of = grown

    def _reserve_atoms(self, n: int) -> None:
        if n > len(self._sizes):
            grown = np.zeros(max(n, len(self._sizes) * 3 // 2, 64), np.int64)
            grown[: self._atoms] = self.sizes
            self._sizes = grown
