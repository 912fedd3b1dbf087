"""Entities: one number per person or firm the datasets describe, the same in every dataset.

Disclosure control counts people, not rows, and follows a person from one dataset to another
(population and social insurance describe the same residents; a release from each about the
same people differs by whoever is in one and not the other). An entity is named by a dataset's
first identifier column (`resident_id`, `credit_code`): rows with the same identifier value are
one entity, in this dataset and in every other. Rows without an identifier value, and the rows
of a dataset without an identifier column, are each an entity of their own.

Numbers are dense (0, 1, 2…, in order of first appearance), so the sets of people the release
gate keeps compress well as roaring bitmaps. They are assigned at ingest and stored with the
rows, as column `__entity` of every partition; the registry keeps a 64-bit hash of each
identifier value seen and its number, under the datasets directory, and an ingest holds its
file lock while it assigns numbers. Nothing here leaves the trusted side of the service.
"""

from __future__ import annotations

import fcntl
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sandbox.common.hashing import key_hash

# Under the datasets directory (a name no dataset can have: names start with a letter).
DIRECTORY = ".entities"
# Keys, numbers and the next number, in one file written whole and renamed into place: a full
# disk or a crash leaves the registry as it was or as it became, never half of each.
_STATE = "registry.npz"
# Where instances written before the one-file state kept it (read when there is no _STATE).
_KEYS = "keys.npy"
_NUMBERS = "numbers.npy"
_NEXT = "next.npy"


class Registry:
    """The instance's entity numbers, kept in `directory`."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self._dir.mkdir(parents=True, exist_ok=True)
        with open(self._dir / "lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _load(self) -> tuple[np.ndarray, np.ndarray, int]:
        if (self._dir / _STATE).exists():
            with np.load(self._dir / _STATE) as state:
                return state["keys"], state["numbers"], int(state["next"][0])
        if not (self._dir / _KEYS).exists():
            return np.zeros(0, np.uint64), np.zeros(0, np.uint64), 0
        return (
            np.load(self._dir / _KEYS),
            np.load(self._dir / _NUMBERS),
            int(np.load(self._dir / _NEXT)[0]),
        )

    def _save(self, keys: np.ndarray, numbers: np.ndarray, next_number: int) -> None:
        tmp = self._dir / f".{_STATE}.tmp"
        try:
            with open(tmp, "wb") as f:
                np.savez(f, keys=keys, numbers=numbers, next=np.array([next_number], np.uint64))
            tmp.replace(self._dir / _STATE)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def copy_to(self, target: Path) -> list[str]:
        """Copy the registry's files into `target` (a backup) as one consistent state, taken
        while no ingest assigns numbers; the names of the files copied."""
        with self._locked():
            names = [n for n in (_STATE, _KEYS, _NUMBERS, _NEXT) if (self._dir / n).exists()]
            if names:
                target.mkdir(parents=True, exist_ok=True)
            for name in names:
                shutil.copyfile(self._dir / name, target / name)
        return names

    def number(self, values: pa.ChunkedArray | pa.Array | None, rows: int) -> pa.Array:
        """The entity number of each row (see `numbering`), kept at once."""
        with self.numbering(values, rows) as numbers:
            return numbers

    @contextmanager
    def numbering(self, values: pa.ChunkedArray | pa.Array | None, rows: int) -> Iterator[pa.Array]:
        """The entity number of each row, given the rows' identifier values (None: the
        dataset has no identifier column, so every row is its own entity). The numbers are
        kept only when the block they are given to ends without an error: an ingest that
        fails keeps none of its identifiers here. The registry stays locked until then."""
        with self._locked():
            numbers, state = self._assign(values, rows)
            yield numbers
            self._save(*state)

    def _assign(
        self, values: pa.ChunkedArray | pa.Array | None, rows: int
    ) -> tuple[pa.Array, tuple[np.ndarray, np.ndarray, int]]:
        """The rows' numbers, and the registry's state with them assigned (not yet kept)."""
        keys, numbers, next_number = self._load()
        out = np.empty(rows, np.uint64)
        named = np.zeros(rows, bool)
        if values is not None and rows:
            arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
            named = pc.is_valid(arr).to_numpy(zero_copy_only=False)
            hashes = key_hash(arr.filter(pa.array(named)))
            distinct, first, which = np.unique(hashes, return_index=True, return_inverse=True)
            at = np.minimum(np.searchsorted(keys, distinct), max(len(keys) - 1, 0))
            known = (
                (at < len(keys)) & (keys[at] == distinct)
                if len(keys)
                else np.zeros(len(distinct), bool)
            )
            assigned = np.empty(len(distinct), np.uint64)
            assigned[known] = numbers[at[known]]
            fresh = int((~known).sum())
            # In order of first appearance: rows next to each other get numbers next to
            # each other, which keeps the gate's sets of people compact.
            fresh_at = np.flatnonzero(~known)[np.argsort(first[~known], kind="stable")]
            assigned[fresh_at] = np.arange(next_number, next_number + fresh, dtype=np.uint64)
            next_number += fresh
            out[named] = assigned[which]
            all_keys = np.concatenate([keys, distinct[~known]])
            order = np.argsort(all_keys, kind="stable")
            keys = all_keys[order]
            numbers = np.concatenate([numbers, assigned[~known]])[order]
        unnamed = int((~named).sum())
        out[~named] = np.arange(next_number, next_number + unnamed, dtype=np.uint64)
        next_number += unnamed
        return pa.array(out, pa.uint64()), (keys, numbers, next_number)
