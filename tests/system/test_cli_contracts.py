"""`sandbox contracts verify`: a contract exported over HTTP, checked offline by the CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import World

from operators.keys import generate_private_key, private_key_to_pem, public_key_b64


def verify(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("sandbox")
    return subprocess.run(
        [str(script) if script.exists() else "sandbox", "contracts", "verify", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )


def test_an_exported_contract_verifies_offline_and_tampering_is_caught(
    local_world: World, tmp_path: Path
) -> None:
    w = local_world
    cid = w.active_contract()
    (tmp_path / "contract.json").write_text(
        w.client.get(f"/v1/contracts/{cid}", headers=w.h(w.regulator)).text, encoding="utf-8"
    )
    (tmp_path / "keys.json").write_text(w.client.get("/v1/keys").text, encoding="utf-8")
    operator_key = public_key_b64(w.operator_key)

    ok = verify(
        "contract.json", "--bureau-key", "keys.json", "--operator-key", operator_key, cwd=tmp_path
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "bureau signature verifies" in ok.stdout and "operator signature verifies" in ok.stdout

    export = json.loads((tmp_path / "contract.json").read_text(encoding="utf-8"))
    export["document"]["datasets"]["population"]["income"] = ["aggregate", "group_by"]
    (tmp_path / "tampered.json").write_text(
        json.dumps(export, ensure_ascii=False), encoding="utf-8"
    )
    bad = verify(
        "tampered.json", "--bureau-key", "keys.json", "--operator-key", operator_key, cwd=tmp_path
    )
    assert bad.returncode == 1 and "canonical bytes differ" in bad.stdout

    wrong = verify("contract.json", "--bureau-key", operator_key, cwd=tmp_path)
    assert wrong.returncode == 1 and "bureau signature" in wrong.stdout


def test_signing_refuses_bytes_that_are_not_base64_and_a_key_that_is_not_one(
    tmp_path: Path,
) -> None:
    script = Path(sys.executable).with_name("sandbox")
    key = tmp_path / "operator.pem"
    key.write_bytes(private_key_to_pem(generate_private_key()))
    run = [str(script), "contracts", "sign", "--key"]
    bad_bytes = subprocess.run([*run, str(key), "不是base64!"], capture_output=True, text=True)
    assert bad_bytes.returncode == 2 and "not base64" in bad_bytes.stdout + bad_bytes.stderr
    not_a_key = tmp_path / "not.pem"
    not_a_key.write_text("hello")
    bad_key = subprocess.run([*run, str(not_a_key), "AAAA"], capture_output=True, text=True)
    assert bad_key.returncode == 2 and "PEM" in bad_key.stdout + bad_key.stderr
    assert "Traceback" not in bad_key.stderr
