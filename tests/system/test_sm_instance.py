"""An instance of the sm crypto suite end to end, with real processes: `sandbox init
--crypto-suite sm`, `sandbox serve`, a contract signed with SM2 by the bureau and the operator,
a signed job, then the log and the contract checked from outside by `sandbox ledger verify` and
`sandbox contracts verify` with nothing but public keys."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from live import active_contract, cast_of, ledger_cli, run_server

from operators.client import SandboxAPIError
from operators.keys import (
    generate_key,
    generate_private_key,
    private_key_from_pem,
    private_key_to_pem,
    public_key_b64,
)
from operators.suite import Suite
from sandbox.ledger.note import SM2_TYPE, parse_vkey
from sandbox.settings import Settings

JOB = """
res = table("population").group_by("district").agg(n=count()).collect()
emit("by_district", res)
"""


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("sandbox")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}
    return subprocess.run(
        [str(script) if script.exists() else "sandbox", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "PYTHONIOENCODING": "utf-8", "COLUMNS": "200"},
    )


def test_an_sm_instance_signs_with_sm2_hashes_with_sm3_and_verifies_from_outside(
    tmp_path: Path,
) -> None:
    desk = tmp_path / "desk"
    desk.mkdir()
    made = cli("keys", "generate", "--suite", "sm", "--out", "operator.pem", cwd=desk)
    assert made.returncode == 0, made.stderr
    op_key = private_key_from_pem((desk / "operator.pem").read_bytes())
    assert made.stdout.strip().endswith(public_key_b64(op_key))

    with (
        run_server(tmp_path, "local", init_args=("--crypto-suite", "sm")) as server,
        cast_of(server, tmp_path, op_key) as cast,
    ):
        keys = cast.bureau.keys()
        assert keys["crypto_suite"] == "sm"
        assert len(base64.b64decode(keys["bureau"])) == 65
        assert len(parse_vkey(keys["ledger_vkey"])[1]) == 65
        assert base64.b64decode(keys["ledger_vkey"].split("+", 2)[2]).startswith(SM2_TYPE)

        # A key of the other suite is refused at registration, saying what to do.
        with pytest.raises(SandboxAPIError) as refused:
            cast.bureau.create_principal(
                "另一家公司",
                "operator",
                public_key=public_key_b64(Ed25519PrivateKey.generate()),
            )
        assert refused.value.status == 400 and refused.value.code == "invalid_public_key"
        assert "keys generate --suite sm" in str(refused.value)

        cid = active_contract(cast)
        job = cast.operator.submit(cid, JOB, wait=True)
        assert job.status == "succeeded", job.error
        # Browsers cannot sign with SM2: the console's editor says so and offers no key file.
        with httpx.Client(base_url=server.url) as browser:
            signin = {"token": cast.operator_token, "next": "/catalog"}
            assert browser.post("/signin", data=signin).status_code == 303
            editor = browser.get(f"/jobs/new?contract={cid}").text
        assert 'id="key-file"' not in editor and "SM2" in editor

        export = cast.bureau.contract(cid)
        assert export["document"]["crypto_suite"] == "sm"
        witness_key = generate_key(Suite.sm)
        (desk / "regulator.pem").write_bytes(private_key_to_pem(witness_key))
        regulator = cast.bureau.create_principal(
            "市场监管审计处", "regulator", public_key=public_key_b64(witness_key)
        )
        (desk / "contract.json").write_text(json.dumps(export), encoding="utf-8")
        (desk / "keys.json").write_text(json.dumps(keys), encoding="utf-8")
        (desk / "bureau.pub").write_text(keys["bureau"] + "\n", encoding="utf-8")

        checked = cli(
            "contracts",
            "verify",
            "contract.json",
            "--bureau-key",
            "keys.json",
            "--operator-key",
            public_key_b64(op_key),
            cwd=desk,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "operator signature verifies" in checked.stdout

        verified = ledger_cli(
            "verify",
            "--url",
            server.url,
            "--bureau-key",
            "bureau.pub",
            cwd=desk,
            token=regulator["token"],
        )
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "Verified" in verified.stdout

        # The regulator co-signs the SM2 checkpoint with its own SM2 key, as a witness.
        cosigned = ledger_cli(
            "cosign",
            "--url",
            server.url,
            "--bureau-key",
            "bureau.pub",
            "--key",
            "regulator.pem",
            "--name",
            "regulator.example.gov.cn",
            cwd=desk,
            token=regulator["token"],
        )
        assert cosigned.returncode == 0, cosigned.stdout + cosigned.stderr

        # The same verifier, told an Ed25519 key, refuses the SM2-signed checkpoint.
        (desk / "wrong.pub").write_text(
            public_key_b64(Ed25519PrivateKey.generate()) + "\n", encoding="utf-8"
        )
        wrong = ledger_cli(
            "verify",
            "--url",
            server.url,
            "--bureau-key",
            "wrong.pub",
            cwd=desk,
            token=regulator["token"],
        )
        assert wrong.returncode == 1, wrong.stdout + wrong.stderr

    # With the service stopped, the bureau rotates the master key of the encrypted (L3) data:
    # the partitions' wrapped keys move to a new SM4 master key, the data files stay.
    settings = Settings(data_dir=server.data_dir)
    files = sorted(settings.datasets_dir.rglob("*.parquet"))
    before = {f: f.read_bytes() for f in files}
    rotated = cli("keys", "rotate-data-key", "--data-dir", str(server.data_dir), cwd=desk)
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    told = " ".join(rotated.stdout.split())
    assert "Master key v2 in force" in told and "retired: v1" in told
    assert {f: f.read_bytes() for f in files} == before
    master = (settings.data_dir / "keys" / "data.key").read_text()
    assert master.startswith("v2 sm4-gcm:") and master.count("\n") == 1

    # Opened again with an Ed25519 bureau key in place of the SM2 one, the instance refuses:
    # its log is hashed with SM3.
    key_path = settings.key_path
    key_path.write_bytes(private_key_to_pem(generate_private_key()))
    reopened = cli(
        "principals",
        "create",
        "某区局",
        "--role",
        "provider",
        "--data-dir",
        str(server.data_dir),
        cwd=desk,
    )
    assert reopened.returncode != 0
    assert "keeps the suite it was created with" in " ".join(reopened.stderr.split())


def test_the_demo_tells_the_story_with_sm2_and_an_sm3_log(tmp_path: Path) -> None:
    told = cli(
        "demo", "--crypto-suite", "sm", "--executor", "local", "--residents", "5000", cwd=tmp_path
    )
    assert told.returncode == 0, told.stdout + told.stderr
    text = " ".join(told.stdout.split())
    assert "operator signs the canonical bytes with its SM2 key → active" in text
    assert "rebuilt the SM3 Merkle tree" in text and "SM2-signed checkpoint: verified" in text
