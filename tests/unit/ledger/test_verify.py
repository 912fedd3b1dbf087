"""The outside verifier against a real in-process service: clean logs verify, and edits,
deletions, foreign keys and forged checkpoints are caught at the right index."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from conftest import World
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import delete, select, update

from sandbox.ledger import log, merkle
from sandbox.ledger.errors import NoteError
from sandbox.ledger.note import Checkpoint, sign_note, vkey
from sandbox.ledger.verify import (
    BureauKey,
    LedgerSource,
    VerifyReport,
    load_bureau_key,
    parse_bureau_key,
    verify_log,
)
from sandbox.store.models import LedgerEntry, LedgerNode


def raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def source(w: World) -> LedgerSource:
    """The verifier's view of the service: HTTP with a regulator's token, nothing else."""
    return LedgerSource("http://testserver", w.regulator["token"], client=w.client)


def bureau(w: World) -> BureauKey:
    """The bureau's public key as a regulator would get it from the bureau, out of band."""
    return BureauKey(raw(w.ctx.bureau_key))


def grow(w: World, count: int) -> None:
    with w.ctx.transaction() as s:
        for i in range(count):
            log.append(s, "contract.applied", "o-1", f"c-{i}", {"序号": i, "amount": "2.34"})


def saved_checkpoint(w: World) -> str:
    r = w.client.get("/v1/ledger/checkpoint", headers=w.h(w.regulator))
    assert r.status_code == 200, r.text
    return str(r.json()["checkpoint"])


def verify(w: World, saved: str | None = None, key: BureauKey | None = None) -> VerifyReport:
    return verify_log(source(w), key or bureau(w), saved)


def edit_leaf(w: World, index: int) -> None:
    """Rewrite one stored event in the database, as someone with access to it could."""
    with w.ctx.transaction() as s:
        event = json.loads(s.scalar(select(LedgerEntry.leaf).where(LedgerEntry.index == index)))
        event["data"] = {**event["data"], "amount": "0.01"}
        s.execute(
            update(LedgerEntry).where(LedgerEntry.index == index).values(leaf=rfc8785.dumps(event))
        )


def codes(report: VerifyReport) -> set[str]:
    return {p.code for p in report.problems}


def test_a_clean_log_verifies(local_world: World) -> None:
    w = local_world
    report = verify(w)
    served = w.client.get("/v1/ledger/checkpoint", headers=w.h(w.bureau)).json()
    assert report.ok and report.problems == () and report.first_bad_index is None
    assert report.size == served["size"] == report.entries_checked > 0
    assert report.root_hash == base64.b64decode(served["root_hash"])
    origin = w.ctx.settings.log_origin
    assert (report.origin, report.signers, report.key_source) == (origin, (origin,), "given")
    assert report.saved_size is None and report.consistent_with_saved is None
    assert report.checkpoint is not None and report.checkpoint.startswith(f"{origin}\n")


def test_a_rolled_back_savepoint_leaves_a_log_that_verifies(local_world: World) -> None:
    w = local_world
    before = verify(w).size
    assert before is not None
    with w.ctx.transaction() as s:
        log.append(s, "contract.applied", "o-1", "c-kept", {})
        with pytest.raises(RuntimeError):
            with s.begin_nested():
                log.append(s, "contract.applied", "o-1", "c-undone", {})
                raise RuntimeError("the nested change failed")
        assert log.append(s, "contract.applied", "o-1", "c-after", {}) == before + 1
    report = verify(w)
    assert report.ok, report.problems
    assert report.size == before + 2


def test_entries_are_read_across_pages(local_world: World) -> None:
    w = local_world
    grow(w, log.MAX_ENTRIES_PER_PAGE + 50)
    report = verify(w)
    assert report.ok, report.problems
    assert report.entries_checked == report.size > log.MAX_ENTRIES_PER_PAGE


def test_a_saved_checkpoint_is_proven_consistent_with_the_grown_log(local_world: World) -> None:
    w = local_world
    saved = saved_checkpoint(w)
    saved_size = verify(w).size
    grow(w, 13)
    report = verify(w, saved)
    assert report.ok, report.problems
    assert report.saved_size == saved_size and report.size == saved_size + 13
    assert report.consistent_with_saved is True
    # The same size: nothing to prove beyond equal roots.
    assert verify(w, report.checkpoint).consistent_with_saved is True


def test_the_served_key_is_used_only_when_asked_and_is_marked(local_world: World) -> None:
    w = local_world
    served = source(w).served_key()
    assert served.public_key == raw(w.ctx.bureau_key) and served.source == "served"
    report = verify(w, key=served)
    assert report.ok and report.key_source == "served"


@pytest.mark.parametrize("where", ["first", "middle", "last saved"])
def test_an_edited_leaf_is_named_as_the_first_bad_entry(local_world: World, where: str) -> None:
    w = local_world
    grow(w, 20)
    saved = saved_checkpoint(w)
    size = verify(w).size
    assert size is not None
    grow(w, 9)
    victim = {"first": 0, "middle": size // 2 + 1, "last saved": size - 1}[where]
    edit_leaf(w, victim)

    report = verify(w, saved)
    assert not report.ok
    assert report.first_bad_index == victim
    assert {"saved_root_mismatch", "root_mismatch"} <= codes(report)
    by_code = {p.code: p for p in report.problems}
    assert by_code["saved_root_mismatch"].index == victim
    assert (
        f"entry {victim} is the first the log cannot prove"
        in by_code["saved_root_mismatch"].message
    )
    # The stored subtree hashes were left alone, so the log still proves the saved history:
    # the index is exact, not a lower bound.
    assert report.consistent_with_saved is True
    assert "or later" not in by_code["saved_root_mismatch"].message


def test_an_edit_after_the_saved_size_is_found_against_the_latest_checkpoint(
    local_world: World,
) -> None:
    w = local_world
    saved = saved_checkpoint(w)
    grow(w, 12)
    victim = verify(w).size - 3  # type: ignore[operator]
    edit_leaf(w, victim)
    report = verify(w, saved)
    assert not report.ok and report.first_bad_index == victim
    assert codes(report) == {"root_mismatch"}


def test_a_log_rewritten_with_its_subtree_hashes_breaks_consistency(local_world: World) -> None:
    w = local_world
    grow(w, 10)
    saved = saved_checkpoint(w)
    grow(w, 10)
    victim = 7
    edit_leaf(w, victim)
    # A thorough forger recomputes every stored node, so the served checkpoint (signed with
    # the service's own key) matches the forged entries.
    with w.ctx.transaction() as s:
        leaves = list(s.scalars(select(LedgerEntry.leaf).order_by(LedgerEntry.index)))
        s.execute(delete(LedgerNode))
        tree = merkle.MemoryTree()
        for leaf in leaves:
            index = tree.append_data(leaf)
            s.add_all(
                LedgerNode(level=level, index=i, hash=h)
                for level, i, h in merkle.completed_subtrees(
                    index, merkle.leaf_hash(leaf), tree.node
                )
            )

    report = verify(w, saved)
    assert not report.ok
    assert report.consistent_with_saved is False
    assert "inconsistent" in codes(report)
    assert "root_mismatch" not in codes(report)  # the forged tree is self-consistent
    first = report.first_bad_index
    assert first is not None and first <= victim
    (located,) = [p for p in report.problems if p.code == "saved_root_mismatch"]
    assert "or later" in located.message


def test_deleting_the_last_entry_is_caught_with_a_saved_checkpoint(local_world: World) -> None:
    w = local_world
    saved = saved_checkpoint(w)
    size = verify(w).size
    assert size is not None
    with w.ctx.transaction() as s:
        s.execute(delete(LedgerEntry).where(LedgerEntry.index == size - 1))
    report = verify(w, saved)
    assert not report.ok and report.size == size - 1
    assert codes(report) == {"log_truncated"}
    assert report.first_bad_index == size - 1


def test_deleting_an_entry_in_the_middle_is_caught(local_world: World) -> None:
    w = local_world
    grow(w, 5)
    with w.ctx.transaction() as s:
        s.execute(delete(LedgerEntry).where(LedgerEntry.index == 3))
    report = verify(w)
    assert not report.ok and report.first_bad_index == 3
    assert "entry_index" in codes(report)


def test_a_checkpoint_signed_by_another_key_is_refused(local_world: World) -> None:
    w = local_world
    report = verify(w, key=BureauKey(raw(Ed25519PrivateKey.generate())))
    assert not report.ok and codes(report) == {"checkpoint_signature"}
    assert report.size is None and report.signers == () and report.checkpoint is None

    # A saved checkpoint forged with the forger's own key under the log's name.
    origin = w.ctx.settings.log_origin
    forged = sign_note(
        Checkpoint(origin, 3, bytes(32)).body(), origin, Ed25519PrivateKey.generate()
    )
    report = verify(w, forged)
    assert not report.ok and codes(report) == {"saved_checkpoint_signature"}


def test_a_forged_checkpoint_whose_root_does_not_match_is_refused(local_world: World) -> None:
    w = local_world
    grow(w, 6)
    size = verify(w).size
    assert size is not None
    origin = w.ctx.settings.log_origin
    # Altered after signing: the signature no longer verifies.
    edited = saved_checkpoint(w).replace(f"\n{size}\n", f"\n{size - 1}\n")
    assert codes(verify(w, edited)) == {"saved_checkpoint_signature"}
    # Validly signed by the bureau, but for a tree this log never had (a fork).
    fork = sign_note(
        Checkpoint(origin, size - 2, merkle.leaf_hash(b"fork")).body(), origin, w.ctx.bureau_key
    )
    report = verify(w, fork)
    assert not report.ok and report.consistent_with_saved is False
    assert {"inconsistent", "saved_root_mismatch"} <= codes(report)


class Lying(LedgerSource):
    """A service that serves its real data with one thing changed."""

    def __init__(
        self, w: World, checkpoint: dict[str, Any] | None = None, event_at: int | None = None
    ) -> None:
        super().__init__("http://testserver", w.regulator["token"], client=w.client)
        self._checkpoint, self._event_at = checkpoint, event_at

    def checkpoint(self) -> dict[str, Any]:
        return self._checkpoint or super().checkpoint()

    def entries(self, start: int, end: int) -> list[dict[str, Any]]:
        page = super().entries(start, end)
        for entry in page:
            if entry["index"] == self._event_at:
                entry["event"] = {**entry["event"], "subject": "someone else"}
        return page


def test_a_served_checkpoint_that_does_not_match_the_entries_is_refused(
    local_world: World,
) -> None:
    w = local_world
    size = verify(w).size
    assert size is not None
    origin = w.ctx.settings.log_origin
    note = sign_note(
        Checkpoint(origin, size, merkle.leaf_hash(b"other")).body(), origin, w.ctx.bureau_key
    )
    served = {
        "size": size,
        "root_hash": base64.b64encode(merkle.leaf_hash(b"other")).decode(),
        "checkpoint": note,
    }
    report = verify_log(Lying(w, checkpoint=served), bureau(w))
    assert not report.ok and codes(report) == {"root_mismatch"}
    assert report.first_bad_index == 0


def test_an_event_shown_differently_from_its_leaf_is_caught(local_world: World) -> None:
    w = local_world
    report = verify_log(Lying(w, event_at=1), bureau(w))
    assert not report.ok and codes(report) == {"entry_event"}
    assert report.first_bad_index == 1


def test_bureau_keys_are_read_in_every_published_form(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    public = raw(key)
    b64 = base64.b64encode(public).decode()
    assert parse_bureau_key(b64) == BureauKey(public)
    assert parse_bureau_key(vkey("sandbox.example.gov.cn", public)) == BureauKey(
        public, "sandbox.example.gov.cn"
    )
    pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    assert parse_bureau_key(pem.decode()).public_key == public
    path = tmp_path / "bureau.pub"
    path.write_text(b64 + "\n", encoding="utf-8")
    assert load_bureau_key(str(path)) == BureauKey(public)
    for junk in (
        "",
        "not a key",
        base64.b64encode(public[:31]).decode(),
        vkey("x", public).replace("+", "+0", 1),
    ):
        with pytest.raises(NoteError):
            parse_bureau_key(junk)
