"""Merkle tree hashing and proofs against the published RFC 6962 vectors and a naive reference."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from sandbox.ledger.errors import ProofError, ProofRangeError
from sandbox.ledger.merkle import (
    EMPTY_ROOT,
    MemoryTree,
    completed_subtrees,
    consistency_proof,
    inclusion_proof,
    is_complete_subtree,
    leaf_hash,
    node_hash,
    node_position,
    range_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)

VECTORS_PATH = Path(__file__).resolve().parents[2] / "data" / "rfc6962" / "vectors.json"
VECTORS: dict[str, Any] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
LEAF_HASHES = [leaf_hash(bytes.fromhex(x)) for x in VECTORS["leaf_inputs_hex"]]

INLINE_INCLUSION = [r for r in VECTORS["inclusion_proofs_inline_hex"] if r["leaf_1based"] > 0]
INLINE_CONSISTENCY = VECTORS["consistency_proofs_inline_hex"]
INCLUSION_PROBES = VECTORS["inclusion_probes"]
CONSISTENCY_PROBES = VECTORS["consistency_probes"]


def _hashes(hex_list: list[str] | None) -> list[bytes]:
    return [bytes.fromhex(x) for x in hex_list or []]


def _tree(size: int = len(LEAF_HASHES)) -> MemoryTree:
    return MemoryTree(LEAF_HASHES[:size])


# --- naive reference: RFC 6962 §2.1 definitions, recursive over leaf lists ----------------


@cache
def ref_mth(leaves: tuple[bytes, ...]) -> bytes:
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return node_hash(ref_mth(leaves[:k]), ref_mth(leaves[k:]))


def ref_path(m: int, leaves: tuple[bytes, ...]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return ref_path(m, leaves[:k]) + [ref_mth(leaves[k:])]
    return ref_path(m - k, leaves[k:]) + [ref_mth(leaves[:k])]


def ref_subproof(m: int, leaves: tuple[bytes, ...], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [ref_mth(leaves)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return ref_subproof(m, leaves[:k], complete) + [ref_mth(leaves[k:])]
    return ref_subproof(m - k, leaves[k:], False) + [ref_mth(leaves[:k])]


# --- published vectors ----------------------------------------------------------------------


def test_vectors_file_is_complete() -> None:
    assert sorted(VECTORS["root_hashes_hex_by_tree_size"], key=int) == [str(n) for n in range(9)]
    assert len(INCLUSION_PROBES) == 98
    assert len(CONSISTENCY_PROBES) == 98
    # Both outcomes occur, so the probe tests below check acceptance as well as rejection.
    assert {p["raw"]["wantErr"] for p in INCLUSION_PROBES} == {True, False}
    assert {p["raw"]["wantErr"] for p in CONSISTENCY_PROBES} == {True, False}
    assert len(INLINE_INCLUSION) == len(VECTORS["inclusion_proofs_inline_hex"]) - 1


@pytest.mark.parametrize("size", range(9))
def test_root_hash_for_every_published_size(size: int) -> None:
    want = bytes.fromhex(VECTORS["root_hashes_hex_by_tree_size"][str(size)])
    assert root_hash(LEAF_HASHES[:size]) == want
    assert _tree(size).root() == want
    assert _tree().root(size) == want


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    assert EMPTY_ROOT.hex() == VECTORS["hashing_rules"]["empty_tree_root_hex"]
    assert MemoryTree().root() == EMPTY_ROOT


def test_hasher_vectors() -> None:
    operations: dict[str, Callable[[], bytes]] = {
        "EmptyRoot()": lambda: root_hash([]),
        "HashLeaf(b'')": lambda: leaf_hash(b""),
        "HashLeaf(b'L123456')": lambda: leaf_hash(b"L123456"),
        "HashChildren(b'N123', b'N456')": lambda: node_hash(b"N123", b"N456"),
    }
    assert {v["operation"] for v in VECTORS["hasher_vectors"]} == set(operations)
    for vector in VECTORS["hasher_vectors"]:
        assert operations[vector["operation"]]().hex() == vector["want_hex"], vector["desc"]


def test_stored_nodes_match_published_node_hashes() -> None:
    tree = _tree()
    for level_name, hashes in VECTORS["node_hashes_hex_by_level"].items():
        level = int(level_name.removeprefix("level_"))
        for index, want in enumerate(hashes):
            assert tree.node(level, index).hex() == want
            width = 1 << level
            assert tree.hash_at(index * width, (index + 1) * width).hex() == want


@pytest.mark.parametrize(
    "row", INLINE_INCLUSION, ids=lambda r: f"leaf{r['leaf_1based']}-size{r['tree_size']}"
)
def test_inline_inclusion_proofs(row: dict[str, Any]) -> None:
    index, size = row["leaf_index_0based"], row["tree_size"]
    want = _hashes(row["proof_hex"])
    tree = _tree(size)
    assert tree.inclusion_proof(index) == want
    assert inclusion_proof(index, size, tree.hash_at) == want
    assert LEAF_HASHES[index].hex() == row["leaf_hash_hex"]
    assert tree.root().hex() == row["root_hex"]
    verify_inclusion(LEAF_HASHES[index], index, size, want, bytes.fromhex(row["root_hex"]))


@pytest.mark.parametrize("row", INLINE_CONSISTENCY, ids=lambda r: f"{r['size1']}-to-{r['size2']}")
def test_inline_consistency_proofs(row: dict[str, Any]) -> None:
    first, second = row["size1"], row["size2"]
    want = _hashes(row["proof_hex"])
    tree = _tree(second)
    assert tree.consistency_proof(first) == want
    assert consistency_proof(first, second, tree.hash_at) == want
    root1, root2 = bytes.fromhex(row["root1_hex"]), bytes.fromhex(row["root2_hex"])
    assert (tree.root(first), tree.root()) == (root1, root2)
    verify_consistency(first, second, root1, root2, want)


@pytest.mark.parametrize("probe", INCLUSION_PROBES, ids=lambda p: p["file"])
def test_inclusion_probes(probe: dict[str, Any]) -> None:
    case = probe["hex"]

    def verify() -> None:
        verify_inclusion(
            bytes.fromhex(case["leafHash"]),
            case["leafIdx"],
            case["treeSize"],
            _hashes(case["proof"]),
            bytes.fromhex(case["root"]),
        )

    if probe["raw"]["wantErr"]:
        with pytest.raises(ProofError):
            verify()
    else:
        verify()


@pytest.mark.parametrize("probe", CONSISTENCY_PROBES, ids=lambda p: p["file"])
def test_consistency_probes(probe: dict[str, Any]) -> None:
    case = probe["hex"]

    def verify() -> None:
        verify_consistency(
            case["size1"],
            case["size2"],
            bytes.fromhex(case["root1"]),
            bytes.fromhex(case["root2"]),
            _hashes(case["proof"]),
        )

    if probe["raw"]["wantErr"]:
        with pytest.raises(ProofError):
            verify()
    else:
        verify()


# --- against the naive reference --------------------------------------------------------------

RNG = random.Random(6962)
BIG_LEAVES = [leaf_hash(f"事件 {i}".encode()) for i in range(300)]
BIG_TREE = MemoryTree(BIG_LEAVES)
SIZES = list(range(1, 33)) + sorted(RNG.sample(range(33, 301), 20)) + [300]


def _positions(size: int) -> list[int]:
    if size <= 32:
        return list(range(size))
    return sorted({0, size - 1, size // 2, *RNG.sample(range(size), 6)})


@pytest.mark.parametrize("size", SIZES)
def test_inclusion_proofs_match_reference(size: int) -> None:
    leaves = tuple(BIG_LEAVES[:size])
    root = BIG_TREE.root(size)
    assert root == ref_mth(leaves)
    for index in _positions(size):
        proof = BIG_TREE.inclusion_proof(index, size)
        assert proof == ref_path(index, leaves)
        verify_inclusion(leaves[index], index, size, proof, root)


@pytest.mark.parametrize("second", SIZES)
def test_consistency_proofs_match_reference(second: int) -> None:
    leaves = tuple(BIG_LEAVES[:second])
    for first in [p + 1 for p in _positions(second)]:
        proof = BIG_TREE.consistency_proof(first, second)
        assert proof == ref_subproof(first, leaves, True)
        verify_consistency(first, second, BIG_TREE.root(first), BIG_TREE.root(second), proof)


def test_hash_at_of_any_range_is_the_range_root() -> None:
    tree = MemoryTree(BIG_LEAVES[:21])
    for start in range(21):
        for end in range(start + 1, 22):
            assert tree.hash_at(start, end) == ref_mth(tuple(BIG_LEAVES[start:end]))


def test_trees_grown_one_leaf_at_a_time_keep_every_old_root() -> None:
    tree = MemoryTree()
    for index, leaf in enumerate(BIG_LEAVES[:70]):
        assert tree.append(leaf) == index
        assert tree.root() == ref_mth(tuple(BIG_LEAVES[: index + 1]))
    assert [tree.root(n) for n in range(71)] == [ref_mth(tuple(BIG_LEAVES[:n])) for n in range(71)]


# --- cost: only complete subtrees, O(log n) of them ---------------------------------------


class CountingStore:
    """A stand-in for a huge log: any complete subtree hash is made up on demand."""

    def __init__(self) -> None:
        self.calls = 0

    def hash_at(self, start: int, end: int) -> bytes:
        assert is_complete_subtree(start, end), (start, end)
        self.calls += 1
        return hashlib.sha256(f"{start}:{end}".encode()).digest()


@pytest.mark.parametrize("size", [1, 2, 3, 255, 256, 257, 10**6 + 3, 10**12 + 7, 2**40])
def test_proofs_fetch_only_logarithmically_many_complete_subtrees(size: int) -> None:
    bound = 2 * size.bit_length() + 1
    for index in {0, size // 3, size - 1}:
        store = CountingStore()
        inclusion_proof(index, size, store.hash_at)
        assert store.calls <= bound
    for first in {1, size // 2 or 1, size}:
        store = CountingStore()
        consistency_proof(first, size, store.hash_at)
        assert store.calls <= bound
    store = CountingStore()
    range_hash(0, size, store.hash_at)
    assert store.calls <= size.bit_length()


# --- tampering ---------------------------------------------------------------------------


def _flip(value: bytes, position: int = 0) -> bytes:
    return value[:position] + bytes([value[position] ^ 1]) + value[position + 1 :]


@pytest.mark.parametrize("size", [5, 37, 64])
def test_tampered_inclusion_proofs_fail(size: int) -> None:
    tree = MemoryTree(BIG_LEAVES[:size])
    root = tree.root()
    for index in {0, 3, size // 2, size - 1}:
        proof = tree.inclusion_proof(index)
        leaf = BIG_LEAVES[index]
        for position in range(len(proof)):
            bad = list(proof)
            bad[position] = _flip(bad[position], position % 32)
            with pytest.raises(ProofError):
                verify_inclusion(leaf, index, size, bad, root)
        with pytest.raises(ProofError):
            verify_inclusion(_flip(leaf), index, size, proof, root)
        with pytest.raises(ProofError):
            verify_inclusion(BIG_LEAVES[index + 1], index, size, proof, root)
        with pytest.raises(ProofError):
            verify_inclusion(leaf, index, size, proof, _flip(root, 31))
        with pytest.raises(ProofError, match=f"must have {len(proof)} nodes"):
            verify_inclusion(leaf, index, size, proof[:-1], root)
        with pytest.raises(ProofError, match=f"must have {len(proof)} nodes"):
            verify_inclusion(leaf, index, size, [*proof, root], root)


@pytest.mark.parametrize("second", [6, 37, 64])
def test_tampered_consistency_proofs_fail(second: int) -> None:
    tree = MemoryTree(BIG_LEAVES[:second])
    for first in {1, 2, 3, second // 2, second - 1}:
        proof = tree.consistency_proof(first)
        root1, root2 = tree.root(first), tree.root()
        for position in range(len(proof)):
            bad = list(proof)
            bad[position] = _flip(bad[position], 7)
            with pytest.raises(ProofError):
                verify_consistency(first, second, root1, root2, bad)
        with pytest.raises(ProofError):
            verify_consistency(first, second, _flip(root1), root2, proof)
        with pytest.raises(ProofError):
            verify_consistency(first, second, root1, _flip(root2), proof)
        with pytest.raises(ProofError, match=f"must have {len(proof)} nodes"):
            verify_consistency(first, second, root1, root2, proof[:-1])
        with pytest.raises(ProofError, match=f"must have {len(proof)} nodes"):
            verify_consistency(first, second, root1, root2, [*proof, root2])


def test_history_rewrite_is_caught_by_consistency() -> None:
    honest = MemoryTree(BIG_LEAVES[:20])
    forked = MemoryTree(BIG_LEAVES[:9] + [leaf_hash("篡改".encode())] + BIG_LEAVES[10:20])
    proof = forked.consistency_proof(12)
    with pytest.raises(ProofError, match="size 12"):
        verify_consistency(12, 20, honest.root(12), forked.root(), proof)


def test_proof_errors_carry_the_api_code() -> None:
    with pytest.raises(ProofError) as caught:
        verify_inclusion(LEAF_HASHES[0], 0, 1, [], EMPTY_ROOT)
    assert caught.value.code == "ledger_proof_invalid"
    with pytest.raises(ProofError, match="32 bytes"):
        verify_inclusion(LEAF_HASHES[0], 0, 2, [b"short"], EMPTY_ROOT)


# --- storage layout and bounds --------------------------------------------------------------


def test_completed_subtrees_follow_the_storage_layout() -> None:
    tree = _tree(7)
    nodes = completed_subtrees(7, LEAF_HASHES[7], tree.node)
    assert [(level, index) for level, index, _ in nodes] == [(0, 7), (1, 3), (2, 1), (3, 0)]
    by_level = VECTORS["node_hashes_hex_by_level"]
    for level, index, value in nodes:
        assert value.hex() == by_level[f"level_{level}"][index]
    assert [(lv, ix) for lv, ix, _ in completed_subtrees(6, LEAF_HASHES[6], tree.node)] == [(0, 6)]


def test_node_position_maps_complete_ranges_to_level_and_index() -> None:
    assert node_position(0, 1) == (0, 0)
    assert node_position(8, 12) == (2, 2)
    assert node_position(0, 256) == (8, 0)
    for start, end in [(1, 3), (0, 3), (2, 6), (5, 5)]:
        with pytest.raises(ValueError, match="complete aligned subtree"):
            node_position(start, end)


def test_memory_tree_refuses_out_of_range_requests() -> None:
    tree = _tree(5)
    for call in [
        lambda: tree.root(6),
        lambda: tree.inclusion_proof(5),
        lambda: tree.inclusion_proof(0, 6),
        lambda: tree.consistency_proof(0, 5),
        lambda: tree.consistency_proof(3, 6),
        lambda: tree.consistency_proof(4, 3),
        lambda: tree.node(2, 1),
        lambda: tree.hash_at(3, 3),
    ]:
        with pytest.raises(ProofRangeError) as caught:
            call()
        assert caught.value.code == "ledger_proof_range"
    assert tree.consistency_proof(5) == []
    with pytest.raises(ValueError, match="32 bytes"):
        tree.append(b"not a hash")
    assert len(tree) == 5


def test_append_data_hashes_as_a_leaf() -> None:
    tree = MemoryTree()
    tree.append_data("账单 #1".encode())
    assert tree.root() == leaf_hash("账单 #1".encode())
