"""The database-backed transparency log: roots, proofs, checkpoints and tamper evidence."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from sandbox.errors import BadRequest
from sandbox.ledger import log, merkle
from sandbox.ledger.errors import NoteError, ProofError
from sandbox.ledger.note import open_checkpoint
from sandbox.store import schema
from sandbox.store.db import make_engine, make_sessionmaker
from sandbox.store.models import LedgerEntry, LedgerNode

N = 21
ORIGIN = "sandbox.example.gov.cn/ledger"


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    schema.upgrade(engine)
    yield make_sessionmaker(engine)
    engine.dispose()


def append_events(sessions: sessionmaker[Session], count: int, start: int = 0) -> None:
    # Some transactions append one event, some several, as the service does.
    i = start
    while i < start + count:
        with sessions.begin() as s:
            for _ in range(min(1 + i % 3, start + count - i)):
                log.append(
                    s,
                    "job.submitted",
                    "op-1",
                    f"j-{i}",
                    {"序号": i, "amount": "2.34", "ratio": 0.5},
                )
                i += 1


def leaves(s: Session) -> list[bytes]:
    return [r.leaf for r in s.scalars(select(LedgerEntry).order_by(LedgerEntry.index))]


def unb64(items: list[str]) -> list[bytes]:
    return [base64.b64decode(x) for x in items]


def public_raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def test_append_returns_consecutive_indexes(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        assert log.size(s) == 0
        assert [log.append(s, "t", None, None) for _ in range(3)] == [0, 1, 2]
        assert log.size(s) == 3


def test_the_root_of_every_prefix_equals_the_rfc6962_root_of_its_leaves(
    sessions: sessionmaker[Session],
) -> None:
    append_events(sessions, N)
    with sessions() as s:
        hashes = [merkle.leaf_hash(leaf) for leaf in leaves(s)]
        assert len(hashes) == N == log.size(s)
        assert log.root(s, 0) == merkle.EMPTY_ROOT
        for size in range(1, N + 1):
            assert log.root(s, size) == merkle.root_hash(hashes[:size]), size


def test_inclusion_and_consistency_proofs_from_the_store_verify(
    sessions: sessionmaker[Session],
) -> None:
    append_events(sessions, N)
    with sessions() as s:
        hashes = [merkle.leaf_hash(leaf) for leaf in leaves(s)]
        roots = {size: log.root(s, size) for size in range(1, N + 1)}
        for size in range(1, N + 1):
            for index in range(size):
                proof = unb64(log.inclusion_proof(s, index, size))
                merkle.verify_inclusion(hashes[index], index, size, proof, roots[size])
            for first in range(1, size + 1):
                proof = unb64(log.consistency_proof(s, first, size))
                merkle.verify_consistency(first, size, roots[first], roots[size], proof)


def test_a_proof_does_not_verify_for_another_leaf(sessions: sessionmaker[Session]) -> None:
    append_events(sessions, 8)
    with sessions() as s:
        hashes = [merkle.leaf_hash(leaf) for leaf in leaves(s)]
        proof = unb64(log.inclusion_proof(s, 3, 8))
        with pytest.raises(ProofError):
            merkle.verify_inclusion(hashes[4], 3, 8, proof, log.root(s, 8))


def test_later_appends_stay_consistent_with_an_earlier_checkpoint(
    sessions: sessionmaker[Session],
) -> None:
    key = Ed25519PrivateKey.generate()
    append_events(sessions, 5)
    with sessions() as s:
        early = log.checkpoint(s, ORIGIN, key)
    append_events(sessions, 9, start=5)
    with sessions() as s:
        late = log.checkpoint(s, ORIGIN, key)
        proof = unb64(log.consistency_proof(s, early["size"], late["size"]))
    merkle.verify_consistency(
        5, 14, base64.b64decode(early["root_hash"]), base64.b64decode(late["root_hash"]), proof
    )


def test_editing_a_stored_leaf_fails_verification_against_an_earlier_checkpoint(
    sessions: sessionmaker[Session],
) -> None:
    key = Ed25519PrivateKey.generate()
    append_events(sessions, N)
    with sessions() as s:
        cp = log.checkpoint(s, ORIGIN, key)
    checkpoint, _ = open_checkpoint(cp["checkpoint"], {ORIGIN: public_raw(key)}, ORIGIN)

    victim = 6
    with sessions.begin() as s:
        event = json.loads(s.get(LedgerEntry, victim).leaf)
        event["data"]["amount"] = "0.00"
        s.execute(
            update(LedgerEntry).where(LedgerEntry.index == victim).values(leaf=rfc8785.dumps(event))
        )

    # An auditor re-reads the entry and asks the log to prove it against the checkpoint.
    with sessions() as s:
        entry = log.entries(s, victim, victim + 1)[0]
        assert entry["event"]["data"]["amount"] == "0.00"
        leaf = merkle.leaf_hash(base64.b64decode(entry["leaf"]))
        proof = unb64(log.inclusion_proof(s, victim, checkpoint.size))
    with pytest.raises(ProofError):
        merkle.verify_inclusion(leaf, victim, checkpoint.size, proof, checkpoint.root_hash)


def test_rewriting_the_whole_tree_after_an_edit_breaks_consistency(
    sessions: sessionmaker[Session],
) -> None:
    key = Ed25519PrivateKey.generate()
    append_events(sessions, 10)
    with sessions() as s:
        early = log.checkpoint(s, ORIGIN, key)
    append_events(sessions, N - 10, start=10)

    # A thorough forger edits leaf 2 and recomputes every stored node.
    with sessions.begin() as s:
        s.execute(update(LedgerEntry).where(LedgerEntry.index == 2).values(leaf=b'{"forged":1}'))
        s.execute(delete(LedgerNode))
        forged = leaves(s)

        def node_at(level: int, index: int) -> bytes:
            return s.get(LedgerNode, (level, index)).hash  # type: ignore[union-attr]

        for i, leaf in enumerate(forged):
            for level, index, h in merkle.completed_subtrees(i, merkle.leaf_hash(leaf), node_at):
                s.add(LedgerNode(level=level, index=index, hash=h))
                s.flush()

    with sessions() as s:
        assert log.root(s, N) == merkle.root_hash([merkle.leaf_hash(x) for x in forged])
        new_root = log.root(s, N)
        proof = unb64(log.consistency_proof(s, early["size"], N))
    with pytest.raises(ProofError):
        merkle.verify_consistency(
            early["size"], N, base64.b64decode(early["root_hash"]), new_root, proof
        )


def test_the_checkpoint_note_verifies_with_the_bureau_public_key(
    sessions: sessionmaker[Session],
) -> None:
    bureau = Ed25519PrivateKey.generate()
    append_events(sessions, 7)
    with sessions() as s:
        cp = log.checkpoint(s, ORIGIN, bureau)
        root = log.root(s, 7)
    assert cp["size"] == 7
    assert base64.b64decode(cp["root_hash"]) == root
    checkpoint, signers = open_checkpoint(cp["checkpoint"], {ORIGIN: public_raw(bureau)}, ORIGIN)
    assert (checkpoint.origin, checkpoint.size, checkpoint.root_hash) == (ORIGIN, 7, root)
    assert signers == [ORIGIN]
    with pytest.raises(NoteError):
        open_checkpoint(cp["checkpoint"], {ORIGIN: public_raw(Ed25519PrivateKey.generate())})
    with pytest.raises(NoteError):
        open_checkpoint(cp["checkpoint"].replace("\n7\n", "\n8\n"), {ORIGIN: public_raw(bureau)})


def test_an_empty_log_has_an_empty_checkpoint(sessions: sessionmaker[Session]) -> None:
    key = Ed25519PrivateKey.generate()
    with sessions() as s:
        cp = log.checkpoint(s, ORIGIN, key)
    checkpoint, _ = open_checkpoint(cp["checkpoint"], {ORIGIN: public_raw(key)})
    assert (checkpoint.size, checkpoint.root_hash) == (0, merkle.EMPTY_ROOT)


def test_events_are_canonical_json(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        log.append(
            s,
            "dataset.registered",
            "bureau",
            "人口",
            {"z": 1.0, "a": "城关区", "nested": {"b": [1, 2], "a": None}},
        )
    with sessions() as s:
        (leaf,) = leaves(s)
        (entry,) = log.entries(s, 0, None)
    event = json.loads(leaf)
    assert leaf == rfc8785.dumps(event)
    assert leaf.startswith(b'{"actor":"bureau","at":"')
    assert (
        b'"data":{"a":"\xe5\x9f\x8e\xe5\x85\xb3\xe5\x8c\xba","nested":{"a":null,"b":[1,2]},"z":1}'
        in leaf
    )
    assert b" " not in leaf
    assert event["type"] == "dataset.registered" and event["subject"] == "人口"
    assert event["at"].endswith("Z")
    assert entry == {"index": 0, "leaf": base64.b64encode(leaf).decode(), "event": event}


def test_an_event_is_logged_only_if_its_transaction_commits(
    sessions: sessionmaker[Session],
) -> None:
    append_events(sessions, 2)
    with pytest.raises(RuntimeError):
        with sessions.begin() as s:
            log.append(s, "contract.signed", "bureau", "c-1")
            raise RuntimeError("the state change failed")
    with sessions() as s:
        assert log.size(s) == 2
        assert (
            s.scalar(select(LedgerNode).where(LedgerNode.level == 0, LedgerNode.index == 2)) is None
        )


def test_entries_are_paged_and_ranges_are_checked(sessions: sessionmaker[Session]) -> None:
    append_events(sessions, 5)
    with sessions() as s:
        assert [e["index"] for e in log.entries(s, 1, 3)] == [1, 2]
        assert [e["index"] for e in log.entries(s, 3, 100)] == [3, 4]
        with pytest.raises(BadRequest):
            log.entries(s, 3, 2)
        with pytest.raises(BadRequest):
            log.entries(s, -1, None)
        with pytest.raises(BadRequest):
            log.inclusion_proof(s, 5, 5)
        with pytest.raises(BadRequest):
            log.inclusion_proof(s, 0, 6)
        with pytest.raises(BadRequest):
            log.consistency_proof(s, 0, 3)
        with pytest.raises(BadRequest):
            log.consistency_proof(s, 4, 3)
