"""The Merkle tree under SM3, against a second implementation written here from RFC 6962 §2.1
(MTH, PATH and PROOF as the RFC defines them, recursively) over pyca/cryptography's SM3."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes

from sandbox.ledger import merkle
from sandbox.ledger.errors import ProofError


def sm3(data: bytes) -> bytes:
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize()


def k_of(n: int) -> int:
    """The largest power of two smaller than n (RFC 6962: 2^(k-1) < n <= 2^k's split)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d: list[bytes]) -> bytes:
    n = len(d)
    if n == 0:
        return sm3(b"")
    if n == 1:
        return sm3(b"\x00" + d[0])
    k = k_of(n)
    return sm3(b"\x01" + mth(d[:k]) + mth(d[k:]))


def path(m: int, d: list[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = k_of(n)
    if m < k:
        return path(m, d[:k]) + [mth(d[k:])]
    return path(m - k, d[k:]) + [mth(d[:k])]


def proof(m: int, d: list[bytes]) -> list[bytes]:
    return subproof(m, d, True)


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = k_of(n)
    if m <= k:
        return subproof(m, d[:k], b) + [mth(d[k:])]
    return subproof(m - k, d[k:], False) + [mth(d[:k])]


ENTRIES = [f"事件 {i}".encode() for i in range(19)]


def test_the_empty_sm3_tree_is_sm3_of_nothing() -> None:
    # GB/T 32905: SM3("") is 1ab21d83…; RFC 6962: the empty tree's hash is the hash of "".
    assert merkle.SM3.empty_root.hex() == (
        "1ab21d8355cfa17f8e61194831e81a8f22bec8c728fefb747ed035eb5082aa2b"
    )
    assert merkle.root_hash([], merkle.SM3) == mth([])


@pytest.mark.parametrize("n", range(1, len(ENTRIES) + 1))
def test_roots_and_proofs_equal_the_rfc_definitions(n: int) -> None:
    d = ENTRIES[:n]
    tree = merkle.MemoryTree(hasher=merkle.SM3)
    for entry in d:
        tree.append_data(entry)
    leaves = [merkle.leaf_hash(e, merkle.SM3) for e in d]
    assert tree.root() == merkle.root_hash(leaves, merkle.SM3) == mth(d)
    for m in range(n):
        assert tree.inclusion_proof(m) == path(m, d)
        merkle.verify_inclusion(leaves[m], m, n, path(m, d), mth(d), merkle.SM3)
    for m in range(1, n + 1):
        expected = proof(m, d) if m < n else []
        assert tree.consistency_proof(m) == expected
        merkle.verify_consistency(m, n, mth(d[:m]), mth(d), expected, merkle.SM3)


def test_an_sm3_proof_does_not_verify_as_sha256() -> None:
    d = ENTRIES[:7]
    with pytest.raises(ProofError):
        merkle.verify_inclusion(
            merkle.leaf_hash(d[3], merkle.SM3), 3, 7, path(3, d), mth(d), merkle.SHA256
        )
    with pytest.raises(ProofError):
        merkle.verify_consistency(3, 7, mth(d[:3]), mth(d), proof(3, d), merkle.SHA256)


def test_the_default_tree_hash_is_still_sha256() -> None:
    tree = merkle.MemoryTree()
    tree.append_data(b"x")
    assert tree.hasher is merkle.SHA256
    assert tree.root() != mth([b"x"])
