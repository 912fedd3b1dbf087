"""The tamper-evident log over HTTP: every state change appends an event; checkpoints,
inclusion and consistency proofs verify offline with the published bureau key."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pyarrow as pa
import pytest
from conftest import SCHEDULE, World
from sqlalchemy import create_engine, text

from operators.keys import generate_private_key, public_key_b64
from sandbox.ledger.errors import LedgerError
from sandbox.ledger.merkle import (
    leaf_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)
from sandbox.ledger.note import open_checkpoint, parse_vkey

COUNT_CODE = 'emit("n", table("population").agg(n=count()).collect())'


def entries(w: World, start: int = 0) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        r = w.client.get(f"/v1/ledger/entries?start={start + len(out)}", headers=w.h(w.regulator))
        assert r.status_code == 200, r.text
        page = r.json()["entries"]
        if not page:
            return out
        out += page


class Watch:
    """The events appended to the log since the last look."""

    def __init__(self, w: World) -> None:
        self.w, self.seen = w, len(entries(w))

    def new(self) -> list[dict[str, Any]]:
        fresh = entries(self.w, self.seen)
        self.seen += len(fresh)
        return [e["event"] for e in fresh]

    def types(self) -> list[str]:
        return [e["type"] for e in self.new()]


def bureau_verifier(w: World) -> tuple[str, dict[str, bytes]]:
    keys = w.client.get("/v1/keys").json()
    origin = w.ctx.settings.log_origin
    name, raw = parse_vkey(keys["ledger_vkey"])
    assert name == origin and raw == base64.b64decode(keys["bureau"])
    return origin, {origin: base64.b64decode(keys["bureau"])}


def checkpoint(w: World) -> tuple[int, bytes]:
    """The latest checkpoint, verified against the bureau's published key."""
    body = w.client.get("/v1/ledger/checkpoint", headers=w.h(w.bureau)).json()
    origin, verifiers = bureau_verifier(w)
    cp, names = open_checkpoint(body["checkpoint"], verifiers, origin=origin)
    assert names == [origin]
    assert cp.size == body["size"] and cp.root_hash == base64.b64decode(body["root_hash"])
    return cp.size, cp.root_hash


def test_every_state_change_appends_its_event(local_world: World) -> None:
    w = local_world
    watch = Watch(w)
    key = generate_private_key()
    r = w.client.post(
        "/v1/principals",
        headers=w.h(w.bureau),
        json={"name": "第三家公司", "role": "operator", "public_key": public_key_b64(key)},
    )
    (event,) = watch.new()
    assert event["type"] == "principal.created" and event["subject"] == r.json()["id"]
    assert event["actor"] == w.client.get("/v1/me", headers=w.h(w.bureau)).json()["id"]
    assert event["data"]["public_key"] == public_key_b64(key)
    assert "token" not in json.dumps(event)

    assert (
        w.ingest(
            "小表", pa.table({"区": ["城关区"] * 3}), "L1", {"区": {"role": "attribute"}}
        ).status_code
        == 201
    )
    (event,) = watch.new()
    assert event["type"] == "dataset.registered" and event["subject"] == "小表"
    assert "城关区" not in json.dumps(event, ensure_ascii=False)

    assert (
        w.client.post("/v1/price-schedules", json=SCHEDULE, headers=w.h(w.bureau)).status_code
        == 201
    )
    assert watch.types() == ["price_schedule.published"]

    cid = w.active_contract()
    events = watch.new()
    assert [e["type"] for e in events] == [
        "contract.applied",
        "contract.approved",
        "contract.signed",
        "contract.signed",
        "contract.activated",
    ]
    assert {e["subject"] for e in events} == {cid}
    assert [e["data"].get("by") for e in events[2:4]] == ["bureau", "operator"]

    job = w.run(cid, COUNT_CODE).json()
    events = watch.new()
    assert [e["type"] for e in events] == [
        "job.submitted",
        "job.started",
        "job.succeeded",
        "charge.settled",
    ]
    assert {e["subject"] for e in events} == {job["id"]}
    assert events[0]["data"]["quote"] == job["quote"]
    assert events[3]["data"]["charge"] == job["charge"]

    r = w.client.post(
        "/v1/jobs", json={"contract_id": cid, "code": "import os"}, headers=w.h(w.operator)
    )
    # Rejected; and, the code reaching for the host, flagged for the regulator (detection).
    event, flagged = watch.new()
    assert event["type"] == "job.rejected" and event["subject"] == r.json()["job_id"]
    assert flagged["type"] == "flag.raised" and flagged["subject"] == r.json()["job_id"]
    assert [f["pattern"] for f in flagged["data"]["flags"]] == ["escape"]

    w.client.post(f"/v1/contracts/{cid}/suspend", json={"reason": "抽查"}, headers=w.h(w.regulator))
    assert watch.types() == ["contract.suspended"]


def test_refused_requests_append_nothing(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()
    watch = Watch(w)
    refused = [
        w.client.post(
            "/v1/principals", json={"name": "x", "role": "operator"}, headers=w.h(w.operator)
        ),
        w.client.post("/v1/price-schedules", json={**SCHEDULE, "items": []}, headers=w.h(w.bureau)),
        w.client.post("/v1/contracts", json={"purpose": "x"}, headers=w.h(w.operator)),
        w.client.post(f"/v1/contracts/{cid}/approve", headers=w.h(w.provider)),
        w.client.post(
            "/v1/jobs",
            json={"contract_id": cid, "code": COUNT_CODE, "signature": "AAAA"},
            headers=w.h(w.operator),
        ),
        w.client.get("/v1/ledger/entries", headers=w.h(w.operator)),
    ]
    assert all(r.status_code >= 400 for r in refused)
    assert watch.new() == []


def test_checkpoint_verifies_with_the_published_key(local_world: World) -> None:
    w = local_world
    size, root = checkpoint(w)
    assert size == len(entries(w))
    note = w.client.get("/v1/ledger/checkpoint", headers=w.h(w.regulator)).json()["checkpoint"]
    origin, verifiers = bureau_verifier(w)
    forged = note.replace(f"\n{size}\n", f"\n{size + 1}\n")
    with pytest.raises(LedgerError):
        open_checkpoint(forged, verifiers, origin=origin)
    other = {origin: base64.b64decode(public_key_b64(generate_private_key()))}
    with pytest.raises(LedgerError):
        open_checkpoint(note, other, origin=origin)


def test_inclusion_proofs_verify_for_every_entry(local_world: World) -> None:
    w = local_world
    w.run(w.active_contract(), COUNT_CODE)
    size, root = checkpoint(w)
    logged = entries(w)
    assert [e["index"] for e in logged] == list(range(size))
    for entry in logged:
        leaf = base64.b64decode(entry["leaf"])
        assert json.loads(leaf) == entry["event"]
        r = w.client.get(
            f"/v1/ledger/proofs/inclusion?index={entry['index']}&size={size}",
            headers=w.h(w.regulator),
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["index"], body["size"]) == (entry["index"], size)
        proof = [base64.b64decode(p) for p in body["proof"]]
        verify_inclusion(leaf_hash(leaf), entry["index"], size, proof, root)
    # A rewritten event does not verify.
    first = base64.b64decode(logged[0]["leaf"])
    altered = first.replace(b'"role":"bureau"', b'"role":"regulator"')
    assert altered != first
    proof = [
        base64.b64decode(p)
        for p in w.client.get(
            f"/v1/ledger/proofs/inclusion?index=0&size={size}", headers=w.h(w.bureau)
        ).json()["proof"]
    ]
    with pytest.raises(LedgerError):
        verify_inclusion(leaf_hash(altered), 0, size, proof, root)


def test_consistency_between_two_checkpoints(local_world: World) -> None:
    w = local_world
    first, first_root = checkpoint(w)
    cid = w.active_contract()
    w.run(cid, COUNT_CODE)
    second, second_root = checkpoint(w)
    assert second > first
    for old, old_root in ((first, first_root), (1, _root_of_prefix(w, 1)), (second, second_root)):
        r = w.client.get(
            f"/v1/ledger/proofs/consistency?first={old}&second={second}", headers=w.h(w.regulator)
        )
        assert r.status_code == 200, r.text
        assert (r.json()["first"], r.json()["second"]) == (old, second)
        proof = [base64.b64decode(p) for p in r.json()["proof"]]
        verify_consistency(old, second, old_root, second_root, proof)
    r = w.client.get(
        f"/v1/ledger/proofs/consistency?first={first}&second={second}", headers=w.h(w.bureau)
    )
    proof = [base64.b64decode(p) for p in r.json()["proof"]]
    with pytest.raises(LedgerError):
        verify_consistency(first, second, bytes(32), second_root, proof)
    r = w.client.get(
        f"/v1/ledger/proofs/consistency?first={first}&second={second + 1}", headers=w.h(w.bureau)
    )
    assert r.status_code == 400


def _root_of_prefix(w: World, size: int) -> bytes:
    """Root of the first `size` leaves, rebuilt from the entries alone."""
    return root_hash([leaf_hash(base64.b64decode(e["leaf"])) for e in entries(w)[:size]])


def test_entries_are_paged_by_range(local_world: World) -> None:
    w = local_world
    everything = entries(w)
    r = w.client.get("/v1/ledger/entries?start=2&end=5", headers=w.h(w.bureau))
    assert r.json()["entries"] == everything[2:5]
    r = w.client.get(f"/v1/ledger/entries?start={len(everything)}", headers=w.h(w.bureau))
    assert r.json()["entries"] == []


def test_ray_job_is_logged_and_provable(world: World) -> None:
    """A job run on Ray, submitted without waiting: its events are logged in order and the
    settled charge is provably in the signed log."""
    w = world
    cid = w.active_contract()
    watch = Watch(w)
    r = w.client.post(
        "/v1/jobs", json={"contract_id": cid, "code": COUNT_CODE}, headers=w.h(w.operator)
    )
    assert r.status_code == 201, r.text
    job = w.wait_for_job(r.json()["id"])
    assert job["status"] == "succeeded", job
    assert job["outputs"]["n"]["rows"] == [[20_000]]
    events = watch.new()
    assert [e["type"] for e in events] == [
        "job.submitted",
        "job.started",
        "job.succeeded",
        "charge.settled",
    ]
    assert events[-1]["data"]["charge"] == job["charge"]
    size, root = checkpoint(w)
    index = size - 1
    (entry,) = entries(w, index)
    assert entry["event"]["type"] == "charge.settled"
    proof = w.client.get(
        f"/v1/ledger/proofs/inclusion?index={index}&size={size}", headers=w.h(w.regulator)
    ).json()["proof"]
    verify_inclusion(
        leaf_hash(base64.b64decode(entry["leaf"])),
        index,
        size,
        [base64.b64decode(p) for p in proof],
        root,
    )


def test_a_deleted_log_row_stops_changes_with_a_clear_error(local_world: World) -> None:
    """Deleting the newest entry by hand leaves its tree hashes behind: the service refuses
    further changes (503, explained) instead of logging around the gap."""
    w = local_world
    # By hand, outside the service: a connection of its own to the instance's database.
    outside = create_engine(w.ctx.settings.resolved_database_url)
    size = w.client.get("/v1/ledger/checkpoint", headers=w.h(w.regulator)).json()["size"]
    with outside.begin() as conn:
        conn.execute(text('DELETE FROM ledger_entries WHERE "index" = :i'), {"i": size - 1})
    r = w.client.post(
        "/v1/principals", json={"name": "新运营方", "role": "operator"}, headers=w.h(w.bureau)
    )
    assert r.status_code == 503 and r.json()["code"] == "ledger_inconsistent"
    assert "sandbox ledger verify" in r.json()["error"]
    with outside.connect() as conn:  # the refused change left nothing behind
        assert (
            conn.execute(
                text("SELECT count(*) FROM principals WHERE name = :n"), {"n": "新运营方"}
            ).scalar()
            == 0
        )
    outside.dispose()


def test_the_log_alone_lets_a_regulator_recheck_a_submission_signature(local_world: World) -> None:
    """From the job.submitted event and the operator's key, the signed bytes are rebuilt."""
    from operators.keys import verify
    from operators.submission import sign_submission, submission_bytes

    w = local_world
    cid = w.active_contract()
    code = 'emit("n", table("population").agg(n=count()).collect())'
    params = {"年份": 2024}
    signed = sign_submission(w.operator_key, cid, code, params, "日报-1")
    job = w.client.post(
        "/v1/jobs?wait=true",
        headers=w.h(w.operator),
        json={
            "contract_id": cid,
            "code": code,
            "params": params,
            "idempotency_key": "日报-1",
            **signed,
        },
    ).json()
    entries = w.client.get("/v1/ledger/entries", headers=w.h(w.regulator)).json()["entries"]
    (event,) = [
        e["event"]
        for e in entries
        if e["event"]["type"] == "job.submitted" and e["event"]["subject"] == job["id"]
    ]
    data = event["data"]
    assert data["code_sha256"] == hashlib.sha256(code.encode()).hexdigest()
    keys = w.client.get(f"/v1/principals/{w.operator['id']}/keys", headers=w.h(w.regulator)).json()[
        "keys"
    ]
    (key,) = [k for k in keys if k["id"] == data["signing_key_id"]]
    rebuilt = submission_bytes(
        data["contract_id"], code, data["params"], data["idempotency_key"], data["signed_at"]
    )
    verify(key["public_key"], rebuilt, data["signature"])
    assert event["actor"] == w.operator["id"] and data["contract_version"] == 1
