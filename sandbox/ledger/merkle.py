"""RFC 6962 / RFC 9162 Merkle tree hashing, proofs and their verification.

The hash is SHA-256 as RFC 6962 says, or SM3 for an instance of the ``sm`` crypto suite: the
structure (leaf prefix 0x00, node prefix 0x01, the split at the largest power of two) is
RFC 6962's either way, and both hashes are 32 bytes. Every function takes the hash as
``hasher`` (a :class:`TreeHasher`), SHA-256 unless told.

Proofs are built from a ``hash_at(start, end)`` callable that returns the Merkle tree hash
(MTH) of leaves ``[start, end)``. Every function here calls it only for *complete aligned
subtrees* — ``end - start == 2**level`` and ``start % 2**level == 0`` — so a store answers
each call with one lookup of the stored node ``(level, start >> level)``; ragged right edges
are composed here from O(log n) such nodes. Node storage layout, shared by
:class:`MemoryTree` and the SQL store::

    (level, index) -> MTH of leaves [index * 2**level, (index + 1) * 2**level)

Level 0 holds the leaf hashes; a node exists once all the leaves it covers exist, and never
changes afterwards (the log is append-only).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from operators.suite import Suite, sm3
from sandbox.ledger.errors import ProofError, ProofRangeError

HASH_SIZE = 32

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


@dataclass(frozen=True)
class TreeHasher:
    """RFC 6962's leaf and node hashes over one 32-byte hash function."""

    name: str
    digest: Callable[[bytes], bytes]

    def leaf(self, data: bytes) -> bytes:
        return self.digest(_LEAF_PREFIX + data)

    def node(self, left: bytes, right: bytes) -> bytes:
        return self.digest(_NODE_PREFIX + left + right)

    @property
    def empty_root(self) -> bytes:
        return self.digest(b"")


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


SHA256 = TreeHasher("SHA-256", _sha256)
SM3 = TreeHasher("SM3", sm3)
EMPTY_ROOT = SHA256.empty_root


def hasher_for(suite: Suite) -> TreeHasher:
    return SHA256 if suite is Suite.international else SM3


HashAt = Callable[[int, int], bytes]
"""``hash_at(start, end)``: MTH of leaves [start, end), asked only for complete aligned subtrees."""

NodeAt = Callable[[int, int], bytes]
"""``node_at(level, index)``: the stored hash of a complete subtree (see the module docstring)."""


def leaf_hash(data: bytes, hasher: TreeHasher = SHA256) -> bytes:
    return hasher.leaf(data)


def node_hash(left: bytes, right: bytes, hasher: TreeHasher = SHA256) -> bytes:
    return hasher.node(left, right)


def root_hash(leaf_hashes: Sequence[bytes], hasher: TreeHasher = SHA256) -> bytes:
    """MTH of a whole list of leaf hashes: the reference definition, O(n) hashing."""
    if not leaf_hashes:
        return hasher.empty_root
    return _mth(leaf_hashes, 0, len(leaf_hashes), hasher)


def _mth(leaves: Sequence[bytes], start: int, end: int, hasher: TreeHasher) -> bytes:
    if end - start == 1:
        return leaves[start]
    mid = start + _split(end - start)
    return hasher.node(_mth(leaves, start, mid, hasher), _mth(leaves, mid, end, hasher))


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (n >= 2): RFC 6962's ``k``."""
    return 1 << ((n - 1).bit_length() - 1)


def is_complete_subtree(start: int, end: int) -> bool:
    width = end - start
    return width > 0 and width & (width - 1) == 0 and start % width == 0


def node_position(start: int, end: int) -> tuple[int, int]:
    """The ``(level, index)`` under which the hash of leaves [start, end) is stored."""
    if start < 0 or not is_complete_subtree(start, end):
        raise ValueError(
            f"leaves [{start}, {end}) are not a complete aligned subtree; only ranges whose "
            "width is a power of two and whose start is a multiple of that width are stored"
        )
    level = (end - start).bit_length() - 1
    return level, start >> level


def range_hash(start: int, end: int, hash_at: HashAt, hasher: TreeHasher = SHA256) -> bytes:
    """MTH of leaves [start, end), composed from complete aligned subtrees.

    Ranges whose start is a multiple of the largest power of two not above their width (all
    ranges that occur in proofs and every ``[0, size)``) cost at most log2(width) + 1 calls
    of ``hash_at``; other ranges are correct but may cost more.
    """
    if start == end == 0:
        return hasher.empty_root
    if not 0 <= start < end:
        raise ProofRangeError(
            f"leaf range [{start}, {end}) is empty or negative; ask for 0 <= start < end"
        )
    if is_complete_subtree(start, end):
        return hash_at(start, end)
    mid = start + _split(end - start)
    return hasher.node(
        range_hash(start, mid, hash_at, hasher), range_hash(mid, end, hash_at, hasher)
    )


def completed_subtrees(
    index: int, leaf: bytes, node_at: NodeAt, hasher: TreeHasher = SHA256
) -> list[tuple[int, int, bytes]]:
    """Nodes ``(level, index, hash)`` that become complete when leaf ``index`` is appended.

    The first entry is the leaf itself; each further one joins the previous entry with its
    already stored left sibling, so an append costs amortised one hash and one lookup.
    """
    nodes = [(0, index, leaf)]
    level, position, current = 0, index, leaf
    while position & 1:
        current = hasher.node(node_at(level, position - 1), current)
        level, position = level + 1, position >> 1
        nodes.append((level, position, current))
    return nodes


def inclusion_proof(
    index: int, size: int, hash_at: HashAt, hasher: TreeHasher = SHA256
) -> list[bytes]:
    """RFC 9162 §2.1.3.1 audit path for leaf ``index`` in the tree of the first ``size`` leaves."""
    if not 0 <= index < size:
        raise ProofRangeError(
            f"no inclusion proof for index {index} in a tree of size {size}; "
            "the index must be at least 0 and below the tree size"
        )
    siblings: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        mid = start + _split(end - start)
        if index < mid:
            siblings.append(range_hash(mid, end, hash_at, hasher))
            end = mid
        else:
            siblings.append(range_hash(start, mid, hash_at, hasher))
            start = mid
    # Collected root-down; the proof lists siblings leaf-up.
    siblings.reverse()
    return siblings


def consistency_proof(
    first: int, second: int, hash_at: HashAt, hasher: TreeHasher = SHA256
) -> list[bytes]:
    """RFC 9162 §2.1.4.1 proof that the tree of size ``first`` is a prefix of size ``second``."""
    if not 0 < first <= second:
        raise ProofRangeError(
            f"no consistency proof from size {first} to size {second}; RFC 9162 needs "
            "0 < first <= second (every tree is trivially consistent with the empty tree)"
        )
    nodes: list[bytes] = []
    start, end = 0, second
    while first != end:
        mid = start + _split(end - start)
        if first <= mid:
            nodes.append(range_hash(mid, end, hash_at, hasher))
            end = mid
        else:
            nodes.append(range_hash(start, mid, hash_at, hasher))
            start = mid
    # SUBPROOF's flag b: while the walk only went left, [0, first) is itself a node of the
    # old tree and the verifier already knows it as the old root; otherwise it needs it.
    if start > 0:
        nodes.append(range_hash(start, end, hash_at, hasher))
    nodes.reverse()
    return nodes


def verify_inclusion(
    leaf: bytes,
    index: int,
    size: int,
    proof: Sequence[bytes],
    root: bytes,
    hasher: TreeHasher = SHA256,
) -> None:
    """Check an audit path (RFC 9162 §2.1.3.2); raise :class:`ProofError` saying why it fails."""
    if not 0 <= index < size:
        raise ProofError(
            f"leaf index {index} is not inside a tree of size {size}; an inclusion proof "
            "needs 0 <= index < size — check the index and the checkpoint's size"
        )
    _check_hash("leaf hash", leaf)
    _check_hash("root hash", root)
    _check_proof_nodes(proof)
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise _inclusion_length_error(index, size, proof)
        if fn & 1 or fn == sn:
            r = hasher.node(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = hasher.node(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise _inclusion_length_error(index, size, proof)
    if r != root:
        raise ProofError(
            f"inclusion proof does not lead from the leaf at index {index} to the root of "
            f"size {size}: the leaf, the proof or the root is not the log's — compare the "
            "root with a signed checkpoint of that size"
        )


def verify_consistency(
    first: int,
    second: int,
    first_root: bytes,
    second_root: bytes,
    proof: Sequence[bytes],
    hasher: TreeHasher = SHA256,
) -> None:
    """Check a consistency proof (RFC 9162 §2.1.4.2); raise :class:`ProofError` saying why."""
    if first < 0 or second < first:
        raise ProofError(
            f"cannot prove size {first} consistent with size {second}; the first size must "
            "not be negative nor larger than the second — pass the older checkpoint first"
        )
    if first == 0:
        raise ProofError(
            "a consistency proof from the empty tree proves nothing and RFC 9162 requires "
            "0 < first; skip the check for a size-0 checkpoint"
        )
    if first == second:
        # Equal sizes prove only that the roots are equal, whatever their form, as
        # transparency-dev/merkle does.
        if proof:
            raise ProofError(
                f"trees of equal size {first} need an empty consistency proof, "
                f"got {len(proof)} nodes; compare the two roots directly"
            )
        if first_root != second_root:
            raise ProofError(
                f"two different root hashes for the same tree size {first}: the log has "
                "forked or one checkpoint is forged"
            )
        return
    _check_hash("first root hash", first_root)
    _check_hash("second root hash", second_root)
    _check_proof_nodes(proof)
    if not proof:
        raise _consistency_length_error(first, second, proof)
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise _consistency_length_error(first, second, proof)
        if fn & 1 or fn == sn:
            fr, sr = hasher.node(c, fr), hasher.node(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = hasher.node(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise _consistency_length_error(first, second, proof)
    if fr != first_root:
        raise ProofError(
            f"consistency proof does not reproduce the root of size {first}: the proof or "
            "the older checkpoint is not the log's — fetch both again from the log"
        )
    if sr != second_root:
        raise ProofError(
            f"consistency proof does not reproduce the root of size {second}: the log has "
            f"rewritten history after size {first} or the newer checkpoint is forged"
        )


def _inclusion_length_error(index: int, size: int, proof: Sequence[bytes]) -> ProofError:
    return ProofError(
        f"inclusion proof for index {index} in a tree of size {size} must have "
        f"{_inclusion_length(index, size)} nodes, got {len(proof)}; fetch the proof again "
        "for exactly this index and size"
    )


def _consistency_length_error(first: int, second: int, proof: Sequence[bytes]) -> ProofError:
    return ProofError(
        f"consistency proof from size {first} to {second} must have "
        f"{_consistency_length(first, second)} nodes, got {len(proof)}; fetch the proof "
        "again for exactly these sizes"
    )


def _inclusion_length(index: int, size: int) -> int:
    # Levels where the path to `index` and the path to the last leaf differ need a sibling
    # each; above them, only levels where `index` is a right child do.
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def _consistency_length(first: int, second: int) -> int:
    # The path of leaf first-1 in the second tree, less the levels inside the largest
    # complete subtree ending at `first`, whose root is the proof's seed.
    shift = (first & -first).bit_length() - 1
    inner = (((first - 1) ^ (second - 1)).bit_length()) - shift
    border = ((first - 1) >> (inner + shift)).bit_count()
    seed = 0 if first == 1 << shift else 1
    return seed + inner + border


def _check_hash(what: str, value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(
            f"{what} is {len(value)} bytes; a tree hash (SHA-256 or SM3) is {HASH_SIZE} "
            "bytes — decode it from base64 exactly once"
        )


def _check_proof_nodes(proof: Sequence[bytes]) -> None:
    for position, node in enumerate(proof):
        _check_hash(f"proof node {position}", node)


class MemoryTree:
    """An append-only Merkle tree kept in memory; the reference the SQL store mirrors.

    ``_levels[level][index]`` holds the hash of the complete subtree covering leaves
    ``[index * 2**level, (index + 1) * 2**level)`` — the same (level, index) keys as the
    store's node table. Appends cost amortised one hash; ``hash_at``, ``root``, and both
    proofs fetch O(log n) nodes.
    """

    def __init__(self, leaf_hashes: Iterable[bytes] = (), hasher: TreeHasher = SHA256) -> None:
        self.hasher = hasher
        self._levels: list[list[bytes]] = [[]]
        for leaf in leaf_hashes:
            self.append(leaf)

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def __len__(self) -> int:
        return self.size

    def append(self, leaf: bytes) -> int:
        """Add a leaf hash and return its index."""
        if len(leaf) != HASH_SIZE:
            raise ValueError(
                f"a leaf hash is {HASH_SIZE} bytes, got {len(leaf)}; "
                "hash the entry with leaf_hash(data) or use append_data(data)"
            )
        index = self.size
        for level, _position, value in completed_subtrees(index, leaf, self.node, self.hasher):
            if level == len(self._levels):
                self._levels.append([])
            # Subtrees of one level complete left to right, so `position` is the next slot.
            self._levels[level].append(value)
        return index

    def append_data(self, data: bytes) -> int:
        return self.append(self.hasher.leaf(data))

    def node(self, level: int, index: int) -> bytes:
        """Stored hash of the complete subtree (level, index)."""
        if (
            level < 0
            or index < 0
            or level >= len(self._levels)
            or index >= len(self._levels[level])
        ):
            raise ProofRangeError(
                f"no complete subtree at level {level}, index {index} in a tree of size "
                f"{self.size}; it covers leaves that have not been appended yet"
            )
        return self._levels[level][index]

    def hash_at(self, start: int, end: int) -> bytes:
        """MTH of leaves [start, end) of this tree (any non-empty range inside it)."""
        self._check_size(end)
        return range_hash(start, end, self._complete, self.hasher)

    def root(self, size: int | None = None) -> bytes:
        """Root hash of the first ``size`` leaves (default: all of them)."""
        size = self.size if size is None else size
        self._check_size(size)
        return range_hash(0, size, self._complete, self.hasher)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        size = self.size if size is None else size
        self._check_size(size)
        return inclusion_proof(index, size, self._complete, self.hasher)

    def consistency_proof(self, first: int, second: int | None = None) -> list[bytes]:
        second = self.size if second is None else second
        self._check_size(second)
        return consistency_proof(first, second, self._complete, self.hasher)

    def _complete(self, start: int, end: int) -> bytes:
        return self.node(*node_position(start, end))

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self.size:
            raise ProofRangeError(
                f"tree size {size} is outside this log, which has {self.size} leaves; "
                f"ask for a size between 0 and {self.size}"
            )
