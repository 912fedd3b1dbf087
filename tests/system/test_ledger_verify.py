"""Verifying the log from outside: `sandbox ledger …` against a live `sandbox serve`, from an
empty directory with only the URL, a regulator's token and the bureau's public key; and the
regulator's witness co-signatures over HTTP."""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
import rfc8785
from conftest import World
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from live import ledger_cli, run_server

from operators.client import SandboxClient
from operators.keys import private_key_from_pem, private_key_to_pem, public_key_b64
from sandbox.ledger import merkle
from sandbox.ledger.errors import ProofError
from sandbox.ledger.note import Checkpoint, add_signature, open_note, sign_note
from sandbox.ledger.verify import BureauKey, LedgerSource, cosign

WITNESS = "regulator.example.gov.cn"


def raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


# --- the CLI against a live service ------------------------------------------------------------


def tamper(db: Path, index: int) -> None:
    """Rewrite one logged event straight in the service's SQLite file."""
    with sqlite3.connect(db) as con:
        (leaf,) = con.execute(
            'SELECT leaf FROM ledger_entries WHERE "index" = ?', (index,)
        ).fetchone()
        event = json.loads(leaf)
        event["data"]["name"] = "改过的名字"
        con.execute(
            'UPDATE ledger_entries SET leaf = ? WHERE "index" = ?', (rfc8785.dumps(event), index)
        )


def test_a_regulator_verifies_and_witnesses_a_live_log_and_catches_tampering(
    tmp_path: Path,
) -> None:
    with run_server(tmp_path, "local") as server:
        bureau = SandboxClient(server.url, token=server.bureau_token)
        regulator = bureau.create_principal("市场监管审计处", "regulator")["token"]
        for i in range(3):
            bureau.create_principal(f"运营公司{i}", "operator")
        # The bureau publishes its key; the regulator keeps a copy, independent of the service.
        bureau_key = private_key_from_pem((server.data_dir / "keys" / "bureau.pem").read_bytes())
        desk = tmp_path / "regulator"
        desk.mkdir()
        (desk / "bureau.pub").write_text(public_key_b64(bureau_key) + "\n", encoding="utf-8")
        common = ("--url", server.url, "--bureau-key", "bureau.pub")

        r = ledger_cli(
            "checkpoint", "--url", server.url, "--out", "saved.txt", cwd=desk, token=regulator
        )
        assert r.returncode == 0, r.stderr
        assert (desk / "saved.txt").read_text(encoding="utf-8").startswith("public-data-sandbox\n")
        for i in range(3, 6):
            bureau.create_principal(f"运营公司{i}", "operator")

        r = ledger_cli(
            "verify",
            *common,
            "--token",
            regulator,
            "--checkpoint",
            "saved.txt",
            "--save-checkpoint",
            "latest.txt",
            cwd=desk,
        )
        assert r.returncode == 0, r.stdout + r.stderr
        assert "Verified" in r.stdout and "consistent" in r.stdout
        assert (desk / "latest.txt").exists()

        (desk / "witness.pem").write_bytes(private_key_to_pem(Ed25519PrivateKey.generate()))
        r = ledger_cli(
            "cosign",
            *common,
            "--key",
            "witness.pem",
            "--name",
            WITNESS,
            "--previous",
            "saved.txt",
            cwd=desk,
            token=regulator,
        )
        assert r.returncode == 0, r.stdout + r.stderr
        kept = httpx.get(
            f"{server.url}/v1/ledger/witnessed", headers={"Authorization": f"Bearer {regulator}"}
        ).json()["witnessed"]
        assert [w["name"] for w in kept] == [WITNESS]

        r = ledger_cli("verify", "--url", server.url, "--token", regulator, cwd=desk)
        assert r.returncode == 2 and "--bureau-key" in r.stderr

        tamper(server.data_dir / "sandbox.db", 2)
        r = ledger_cli("verify", *common, "--checkpoint", "latest.txt", cwd=desk, token=regulator)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "NOT verified" in r.stderr and "first bad entry: index 2" in r.stderr
        bureau.close()


# --- witness co-signatures over HTTP -----------------------------------------------------------


def ledger_source(w: World, who: dict[str, Any] | str) -> LedgerSource:
    token = who if isinstance(who, str) else who["token"]
    return LedgerSource("http://testserver", token, client=w.client)


def bureau(w: World) -> BureauKey:
    return BureauKey(raw(w.ctx.bureau_key))


def post(
    w: World,
    note: str,
    key: Ed25519PrivateKey,
    who: dict[str, Any] | str | None = None,
    name: str = WITNESS,
) -> httpx.Response:
    body = {"checkpoint": note, "witness": {"name": name, "public_key": public_key_b64(key)}}
    return w.client.post("/v1/ledger/witness", json=body, headers=w.h(who or w.regulator))


def latest(w: World) -> str:
    return str(w.client.get("/v1/ledger/checkpoint", headers=w.h(w.bureau)).json()["checkpoint"])


def last_event(w: World) -> dict[str, Any]:
    size = w.client.get("/v1/ledger/checkpoint", headers=w.h(w.bureau)).json()["size"]
    r = w.client.get(f"/v1/ledger/entries?start={size - 1}", headers=w.h(w.bureau))
    return dict(r.json()["entries"][0]["event"])


def refused(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert (body["ok"], body["status"], body["code"]) == (False, status, code)
    assert body["error"]


def test_cosign_checks_consistency_and_the_service_keeps_the_cosigned_note(
    local_world: World,
) -> None:
    w = local_world
    key = Ed25519PrivateKey.generate()
    held = latest(w)
    w.client.post(
        "/v1/principals", json={"name": "新运营方", "role": "operator"}, headers=w.h(w.bureau)
    )
    done = cosign(ledger_source(w, w.regulator), bureau(w), key, WITNESS, held)
    assert done.previous_size is not None and done.size == done.previous_size + 1
    origin = w.ctx.settings.log_origin
    _, names = open_note(done.checkpoint, {origin: raw(w.ctx.bureau_key), WITNESS: raw(key)})
    assert names == [origin, WITNESS]

    event = last_event(w)
    assert event["type"] == "ledger.witnessed" and event["actor"] == w.regulator["id"]
    assert event["data"] == {
        "size": done.size,
        "root_hash": base64.b64encode(done.root_hash).decode(),
        "witness": WITNESS,
        "public_key": public_key_b64(key),
    }
    for who in (w.regulator, w.bureau):
        r = w.client.get(f"/v1/ledger/witnessed?size={done.size}", headers=w.h(who))
        assert r.status_code == 200, r.text
        (kept,) = r.json()["witnessed"]
        assert kept["checkpoint"] == done.checkpoint and kept["name"] == WITNESS
        assert kept["size"] == done.size
    assert (
        w.client.get(f"/v1/ledger/witnessed?size={done.size + 1}", headers=w.h(w.bureau)).json()[
            "witnessed"
        ]
        == []
    )

    # Co-signing the same checkpoint again keeps one record and logs nothing new.
    again = post(w, done.checkpoint, key)
    assert again.status_code == 200 and again.json()["checkpoint"] == done.checkpoint
    assert last_event(w) == event


def test_cosign_refuses_a_log_inconsistent_with_the_held_checkpoint(local_world: World) -> None:
    w = local_world
    origin = w.ctx.settings.log_origin
    size = w.client.get("/v1/ledger/checkpoint", headers=w.h(w.bureau)).json()["size"]
    fork = sign_note(
        Checkpoint(origin, size - 1, merkle.leaf_hash(b"fork")).body(), origin, w.ctx.bureau_key
    )
    with pytest.raises(ProofError):
        cosign(
            ledger_source(w, w.regulator), bureau(w), Ed25519PrivateKey.generate(), WITNESS, fork
        )
    assert w.client.get("/v1/ledger/witnessed", headers=w.h(w.bureau)).json()["witnessed"] == []


def test_a_wrong_witness_signature_is_refused(local_world: World) -> None:
    w = local_world
    signer, claimed = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    note = add_signature(latest(w), WITNESS, signer)
    refused(post(w, note, claimed), 400, "ledger_witness_refused")
    # Text changed after the bureau signed it (the witness then signs the changed text).
    origin = w.ctx.settings.log_origin
    lines = latest(w).partition("\n\n")[0].split("\n")
    lines[1] = str(int(lines[1]) - 1)
    forged = sign_note("\n".join(lines) + "\n", WITNESS, signer)
    refused(post(w, forged, signer), 400, "ledger_witness_refused")
    refused(
        post(w, add_signature(latest(w), origin, signer), signer, name=origin),
        400,
        "ledger_witness_refused",
    )
    assert w.client.get("/v1/ledger/witnessed", headers=w.h(w.bureau)).json()["witnessed"] == []


def test_a_checkpoint_that_is_not_the_logs_is_refused(local_world: World) -> None:
    w = local_world
    origin = w.ctx.settings.log_origin
    key = Ed25519PrivateKey.generate()
    size = w.client.get("/v1/ledger/checkpoint", headers=w.h(w.bureau)).json()["size"]
    for forged in (
        Checkpoint(origin, size - 1, merkle.leaf_hash(b"other history")),
        Checkpoint(origin, size + 5, merkle.leaf_hash(b"the future")),
    ):
        note = add_signature(sign_note(forged.body(), origin, w.ctx.bureau_key), WITNESS, key)
        refused(post(w, note, key), 409, "ledger_checkpoint_mismatch")


def test_only_a_regulator_cosigns_and_with_its_registered_key(local_world: World) -> None:
    w = local_world
    key = Ed25519PrivateKey.generate()
    note = add_signature(latest(w), WITNESS, key)
    refused(post(w, note, key, w.bureau), 403, "forbidden")
    refused(post(w, note, key, w.operator), 403, "forbidden")
    refused(w.client.get("/v1/ledger/witnessed", headers=w.h(w.operator)), 403, "forbidden")

    registered = Ed25519PrivateKey.generate()
    r = w.client.post(
        "/v1/principals",
        headers=w.h(w.bureau),
        json={
            "name": "审计署特派办",
            "role": "regulator",
            "public_key": public_key_b64(registered),
        },
    )
    assert r.status_code == 201, r.text
    auditor = r.json()
    refused(post(w, note, key, auditor), 403, "ledger_witness_key_mismatch")
    r = post(w, add_signature(latest(w), WITNESS, registered), registered, auditor)
    assert r.status_code == 201, r.text
