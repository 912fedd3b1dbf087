"""Entities: one number per person or firm the datasets describe, the same in every dataset.

Disclosure control counts people, not rows, and follows a person from one dataset to another
(population and social insurance describe the same residents; a release from each about the
same people differs by whoever is in one and not the other). An entity is named by a dataset's
first identifier column (`resident_id`, `credit_code`): rows with the same identifier value are
one entity, in this dataset and in every other. Rows without an identifier value, and the rows
of a dataset without an identifier column, are each an entity of their own.

Numbers are dense (0, 1, 2…, in order of first appearance), so the sets of people the release
gate keeps compress well as roaring bitmaps. They are assigned at ingest and stored with the
rows, as column `__entity` of every partition. The registry, under the datasets directory,
keeps for each identifier value seen a keyed digest of it (AES under the registry's own secret
key, `key`, over the value's 64-bit hash) and its number: a copy of the registry without the
key cannot be searched for a known resident number. A version of a dataset ingested later
finds its people's numbers here, so the release history knows them across versions. An ingest
holds the registry's file lock while it assigns numbers. Nothing here leaves the trusted side
of the service.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

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
# The secret the digests are keyed with (32 random bytes, readable by the service only).
KEY = "key"
# Keys held apart from the sorted ones while a session assigns numbers, merged past this many:
# a stream of batches costs a merge per million new people, not a sort of everyone per batch.
_RECENT_MAX = 1 << 20


def _load_key(directory: Path) -> bytes:
    path = directory / KEY
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    with os.fdopen(fd, "wb") as f:
        f.write(os.urandom(32))
    return path.read_bytes()


def keyed(key: bytes, hashes: np.ndarray) -> np.ndarray:
    """Each 64-bit hash through AES-256 under `key` (one block per hash, the first 8 bytes
    of the result): without the key, a registry's digests say nothing of the values."""
    blocks = np.zeros((len(hashes), 2), np.uint64)
    blocks[:, 0] = hashes
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    out = encryptor.update(blocks.tobytes()) + encryptor.finalize()
    return np.frombuffer(out, np.uint64).reshape(-1, 2)[:, 0].copy()


def _find(
    keys: np.ndarray, numbers: np.ndarray, query: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Whether each of `query` is among the sorted `keys`, and its number where it is."""
    if not len(keys):
        return np.zeros(len(query), bool), np.zeros(len(query), np.uint64)
    at = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    found = keys[at] == query
    return found, np.where(found, numbers[at], np.uint64(0))


def _merge(
    keys: np.ndarray, numbers: np.ndarray, more_keys: np.ndarray, more_numbers: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    all_keys = np.concatenate([keys, more_keys])
    order = np.argsort(all_keys, kind="stable")
    return all_keys[order], np.concatenate([numbers, more_numbers])[order]


class Numbering:
    """Numbers being assigned under the registry's lock: batch after batch, kept only when
    the session ends without an error."""

    def __init__(self, key: bytes, keys: np.ndarray, numbers: np.ndarray, next_number: int):
        self._key = key
        self._keys, self._numbers = keys, numbers
        self._recent_keys = np.zeros(0, np.uint64)
        self._recent_numbers = np.zeros(0, np.uint64)
        self.next = next_number

    def fresh(self, count: int) -> np.ndarray:
        """`count` numbers no one has: for states of people the release history must tell
        apart from the people themselves (catalog.revisions)."""
        out = np.arange(self.next, self.next + count, dtype=np.uint64)
        self.next += count
        return out

    def number(self, values: pa.ChunkedArray | pa.Array | None, rows: int) -> pa.Array:
        """The entity number of each row, given the rows' identifier values (None: the
        dataset has no identifier column, so every row is its own entity)."""
        out = np.empty(rows, np.uint64)
        named = np.zeros(rows, bool)
        if values is not None and rows:
            arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
            named = pc.is_valid(arr).to_numpy(zero_copy_only=False)
            hashes = keyed(self._key, key_hash(arr.filter(pa.array(named))))
            distinct, first, which = np.unique(hashes, return_index=True, return_inverse=True)
            known, assigned = _find(self._keys, self._numbers, distinct)
            recent, numbers = _find(self._recent_keys, self._recent_numbers, distinct[~known])
            assigned[np.flatnonzero(~known)[recent]] = numbers[recent]
            known[np.flatnonzero(~known)[recent]] = True
            # In order of first appearance: rows next to each other get numbers next to
            # each other, which keeps the gate's sets of people compact.
            fresh_at = np.flatnonzero(~known)[np.argsort(first[~known], kind="stable")]
            assigned[fresh_at] = self.fresh(len(fresh_at))
            out[named] = assigned[which]
            self._recent_keys, self._recent_numbers = _merge(
                self._recent_keys, self._recent_numbers, distinct[~known], assigned[~known]
            )
            if len(self._recent_keys) > _RECENT_MAX:
                self._fold()
        unnamed = int((~named).sum())
        out[~named] = self.fresh(unnamed)
        return pa.array(out, pa.uint64())

    def _fold(self) -> None:
        self._keys, self._numbers = _merge(
            self._keys, self._numbers, self._recent_keys, self._recent_numbers
        )
        self._recent_keys = np.zeros(0, np.uint64)
        self._recent_numbers = np.zeros(0, np.uint64)

    def state(self) -> tuple[np.ndarray, np.ndarray, int]:
        self._fold()
        return self._keys, self._numbers, self.next


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
        key = _load_key(self._dir)
        if (self._dir / _STATE).exists():
            with np.load(self._dir / _STATE) as state:
                keys, numbers, next_number = state["keys"], state["numbers"], int(state["next"][0])
                if "keyed" in state.files:
                    return keys, numbers, next_number
        elif (self._dir / _KEYS).exists():
            keys, numbers = np.load(self._dir / _KEYS), np.load(self._dir / _NUMBERS)
            next_number = int(np.load(self._dir / _NEXT)[0])
        else:
            return np.zeros(0, np.uint64), np.zeros(0, np.uint64), 0
        # Written before digests were keyed: keyed now, kept so at the next save.
        keys, numbers = _merge(
            np.zeros(0, np.uint64), np.zeros(0, np.uint64), keyed(key, keys), numbers
        )
        return keys, numbers, next_number

    def _save(self, keys: np.ndarray, numbers: np.ndarray, next_number: int) -> None:
        tmp = self._dir / f".{_STATE}.tmp"
        try:
            with open(tmp, "wb") as f:
                np.savez(
                    f,
                    keys=keys,
                    numbers=numbers,
                    next=np.array([next_number], np.uint64),
                    keyed=np.array([1], np.uint8),
                )
            tmp.replace(self._dir / _STATE)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def copy_to(self, target: Path) -> list[str]:
        """Copy the registry's files into `target` (a backup) as one consistent state, taken
        while no ingest assigns numbers; the names of the files copied."""
        with self._locked():
            names = [n for n in (_STATE, _KEYS, _NUMBERS, _NEXT, KEY) if (self._dir / n).exists()]
            if names:
                target.mkdir(parents=True, exist_ok=True)
            for name in names:
                if name == KEY:
                    # Readable by its owner only from the moment it exists, as at home.
                    fd = os.open(target / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(fd, "wb") as out:
                        out.write((self._dir / name).read_bytes())
                else:
                    shutil.copyfile(self._dir / name, target / name)
        return names

    def number(self, values: pa.ChunkedArray | pa.Array | None, rows: int) -> pa.Array:
        """The entity number of each row (see `numbering`), kept at once."""
        with self.numbering(values, rows) as numbers:
            return numbers

    @contextmanager
    def numbering(self, values: pa.ChunkedArray | pa.Array | None, rows: int) -> Iterator[pa.Array]:
        """The entity number of each row (Numbering.number), kept only when the block they are
        given to ends without an error: an ingest that fails keeps none of its identifiers
        here. The registry stays locked until then."""
        with self.session() as numbering:
            yield numbering.number(values, rows)

    @contextmanager
    def session(self) -> Iterator[Numbering]:
        """Numbers assigned batch by batch under the registry's lock, kept when the block ends
        without an error."""
        with self._locked():
            numbering = Numbering(_load_key(self._dir), *self._load())
            yield numbering
            self._save(*numbering.state())
