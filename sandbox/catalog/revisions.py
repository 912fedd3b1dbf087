"""Revisions: people whose rows changed from one version of a dataset to the next.

The release history counts people by their entity numbers, which stay the same from one
version to the next (catalog.entities): a person added to or removed from a group between two
versions splits that group's atom, and the difference check refuses it. A person whose *values*
changed is the same person in the same groups, though: a sum released on version 1 and the
same sum on version 2 differ by exactly that person's change. So every person whose rows changed
gets, in that version, a revision number (a fresh entity number no one else has) that stands for
them in the sets of people contributing to magnitudes ("measure:" spaces). To the release
history the revised person is someone who left the sum and someone new who joined it, which the
difference check refuses unless enough people changed together. Counts of people keep the entity
number: a change of income does not move anyone in or out of a count.

A person's content is the multiset of their rows over the columns both versions have (all but
identifiers): a digest per person, the sum of their rows' hashes, independent of row order and
partitioning. The map from entity to revision number is cumulative (a person revised in version
2 and unchanged in version 3 keeps the number of version 2) and kept with each version, in
`revisions.npz` in its directory. Nothing here leaves the trusted side of the service.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyroaring import BitMap64

from sandbox.catalog import encryption
from sandbox.catalog.models import ENTITY, ColumnInfo
from sandbox.common.hashing import K, is_text, is_time, key_hash, mix

FILE = "revisions.npz"
_NULL = np.uint64(0x6A09E667F3BCC908)  # the hash of a missing value


def content_columns(old: Sequence[ColumnInfo], new: Sequence[ColumnInfo]) -> tuple[str, ...]:
    """The columns a person's content is compared over: those both versions have with the
    same type, identifiers aside (they name the person; they are not what changes)."""
    before = {c.name: c.type for c in old if c.role != "identifier"}
    return tuple(
        sorted(c.name for c in new if c.role != "identifier" and before.get(c.name) == c.type)
    )


def _hashable(column: pa.Array) -> pa.Array:
    t = column.type
    if pa.types.is_boolean(t) or pa.types.is_integer(t) or pa.types.is_floating(t):
        return column
    if pa.types.is_decimal(t) or is_time(t) or is_text(t):
        return column
    return pc.cast(column, pa.string())


def row_hashes(table: pa.Table | pa.RecordBatch, columns: Sequence[str]) -> np.ndarray:
    """One 64-bit hash per row of its values in `columns`, nulls included."""
    out = np.zeros(table.num_rows, np.uint64)
    for i, name in enumerate(columns):
        col = table.column(name)
        arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        valid = pc.is_valid(arr).to_numpy(zero_copy_only=False)
        hashed = np.full(len(arr), _NULL, np.uint64)
        if valid.any():
            hashed[valid] = key_hash(_hashable(arr.filter(pa.array(valid))))
        with np.errstate(over="ignore"):
            out ^= mix(hashed + np.uint64(i + 1) * K)
    return out


@dataclass(frozen=True)
class Digests:
    """Per person (sorted `entities`), the digest of their rows' content."""

    entities: np.ndarray
    sums: np.ndarray

    @classmethod
    def of(cls, entities: np.ndarray, hashes: np.ndarray) -> Digests:
        """The digests of rows given as each one's person and content hash."""
        return cls.summed(entities, mix(hashes) if len(hashes) else hashes)

    @classmethod
    def join(cls, parts: Iterable[Digests]) -> Digests:
        """The digests of the rows of every part together."""
        parts = list(parts)
        return cls.summed(
            np.concatenate([np.zeros(0, np.uint64), *(p.entities for p in parts)]),
            np.concatenate([np.zeros(0, np.uint64), *(p.sums for p in parts)]),
        )

    @classmethod
    def summed(cls, entities: np.ndarray, values: np.ndarray) -> Digests:
        """Per person, the sum (modulo 2**64) of their `values`."""
        if not len(entities):
            return cls(np.zeros(0, np.uint64), np.zeros(0, np.uint64))
        order = np.argsort(entities, kind="stable")
        ordered = entities[order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        with np.errstate(over="ignore"):
            sums = np.add.reduceat(values[order].astype(np.uint64), starts)
        return cls(ordered[starts], sums.astype(np.uint64))


def digests_of_files(paths: Iterable[str], columns: Sequence[str]) -> Digests:
    """The content digests of a stored version, read a partition at a time."""
    parts = []
    for path in paths:
        table = pq.read_table(
            path, columns=[*columns, ENTITY], decryption_properties=encryption.decryption_for(path)
        )
        parts.append(
            Digests.of(
                table.column(ENTITY).to_numpy().astype(np.uint64), row_hashes(table, columns)
            )
        )
    return Digests.join(parts)


def changed(old: Digests, new: Digests) -> np.ndarray:
    """The people in both whose content differs (sorted)."""
    common, at_old, at_new = np.intersect1d(
        old.entities, new.entities, assume_unique=True, return_indices=True
    )
    out: np.ndarray = common[old.sums[at_old] != new.sums[at_new]]
    return out


@dataclass(frozen=True)
class Revisions:
    """Who was revised as of a version (sorted `entities`) and the number each goes by."""

    entities: np.ndarray
    numbers: np.ndarray

    @classmethod
    def empty(cls) -> Revisions:
        return cls(np.zeros(0, np.uint64), np.zeros(0, np.uint64))

    def __len__(self) -> int:
        return len(self.entities)

    def updated(self, revised: np.ndarray, numbers: np.ndarray) -> Revisions:
        """These, with `revised` (sorted) going by new `numbers` from now on."""
        keep = ~np.isin(self.entities, revised)
        entities = np.concatenate([self.entities[keep], revised])
        order = np.argsort(entities, kind="stable")
        return Revisions(entities[order], np.concatenate([self.numbers[keep], numbers])[order])

    def save(self, directory: Path) -> str:
        with open(directory / FILE, "wb") as f:
            np.savez(f, entities=self.entities, numbers=self.numbers)
        return FILE

    @functools.cached_property
    def _members(self) -> BitMap64:
        return BitMap64(self.entities.tolist())

    def apply(self, blob: bytes) -> bytes:
        """A serialized set of people, with each revised person under their revision number."""
        if not len(self.entities):
            return blob
        members = BitMap64.deserialize(blob)
        revised = members & self._members
        if not revised:
            return blob
        ids = np.asarray(revised.to_array(), dtype=np.uint64)
        numbers = self.numbers[np.searchsorted(self.entities, ids)]
        out: BitMap64 = (members - revised) | BitMap64(numbers.tolist())
        return bytes(out.serialize())


@functools.lru_cache(maxsize=64)
def load(path: str) -> Revisions:
    """A version's revisions (files never change once written: kept per path)."""
    with np.load(path) as state:
        return Revisions(state["entities"], state["numbers"])
