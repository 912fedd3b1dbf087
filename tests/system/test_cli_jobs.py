"""`sandbox keys generate` and `sandbox jobs submit/show` against a live `sandbox serve`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from live import Cast, active_contract, cast_of, run_server

from operators.keys import private_key_from_pem, private_key_to_pem, public_key_b64


def cli(*args: str, cwd: Path, token: str | None = None) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("sandbox")
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "COLUMNS": "200"}
    if token:
        env["SANDBOX_TOKEN"] = token
    return subprocess.run(
        [str(script) if script.exists() else "sandbox", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def cast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cast]:
    root = tmp_path_factory.mktemp("cli-jobs")
    with run_server(root, executor="local") as server, cast_of(server, root) as cast:
        yield cast


def test_keys_generate_writes_a_private_key_only_its_owner_reads(tmp_path: Path) -> None:
    r = cli("keys", "generate", "--out", "op.pem", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    pem = tmp_path / "op.pem"
    assert pem.stat().st_mode & 0o777 == 0o600
    assert r.stdout.strip().splitlines()[-1] == public_key_b64(
        private_key_from_pem(pem.read_bytes())
    )
    again = cli("keys", "generate", "--out", "op.pem", cwd=tmp_path)
    assert again.returncode == 1 and "never overwritten" in again.stderr


def test_jobs_submit_signs_runs_and_shows_the_release(cast: Cast, tmp_path: Path) -> None:
    cid = active_contract(cast, spend_cap="100.00")
    (tmp_path / "op.pem").write_bytes(private_key_to_pem(cast.operator_key))
    (tmp_path / "job.py").write_text(
        'emit("按区", table("population").group_by("district").agg(n=count()).collect())\n'
        'emit("年份", params["year"])\n',
        encoding="utf-8",
    )
    r = cli(
        "jobs",
        "submit",
        "--url",
        cast.server.url,
        "--contract",
        cid,
        "--code",
        "job.py",
        "--params",
        '{"year": 2024}',
        "--key",
        "op.pem",
        cwd=tmp_path,
        token=cast.operator_token,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "succeeded" in r.stdout and "按区" in r.stdout and "城关区" in r.stdout
    assert "年份 = 2024" in r.stdout and "charged" in r.stdout
    job_id = r.stdout.split("job ", 1)[1].split(":", 1)[0]
    entries = cast.bureau.ledger_entries()
    submitted = [
        e["event"]
        for e in entries
        if e["event"]["type"] == "job.submitted" and e["event"]["subject"] == job_id
    ]
    assert submitted and submitted[0]["data"]["signature"], "the CLI signed the submission"
    shown = cli(
        "jobs", "show", job_id, "--url", cast.server.url, cwd=tmp_path, token=cast.operator_token
    )
    assert shown.returncode == 0 and "succeeded" in shown.stdout


def test_jobs_submit_reports_a_rejection_with_its_line(cast: Cast, tmp_path: Path) -> None:
    cid = active_contract(cast, spend_cap="100.00")
    (tmp_path / "bad.py").write_text("x = 1\nimport os\n", encoding="utf-8")
    r = cli(
        "jobs",
        "submit",
        "--url",
        cast.server.url,
        "--contract",
        cid,
        "--code",
        "bad.py",
        cwd=tmp_path,
        token=cast.operator_token,
    )
    assert r.returncode == 1 and "code_rejected" in r.stderr and "line 2" in r.stderr
    unreachable = cli("jobs", "show", "j-1", "--url", "http://127.0.0.1:9", cwd=tmp_path, token="t")
    assert unreachable.returncode == 2 and "could not reach" in unreachable.stderr


def test_jobs_check_finds_what_would_fail_before_paying(cast: Cast, tmp_path: Path) -> None:
    cid = active_contract(cast, spend_cap="100.00")
    (tmp_path / "typo.py").write_text(
        'res = table("population").group_by("district").agg(n=count())\n'
        'emit("top", res.collect().order_by("n"))\n',
        encoding="utf-8",
    )
    (tmp_path / "good.py").write_text(
        'emit("n", table("population").group_by("district").agg(n=count()).collect())\n',
        encoding="utf-8",
    )
    before = len(cast.operator._listing("/jobs", "jobs"))
    args = ("jobs", "check", "--url", cast.server.url, "--contract", cid, "--code")
    r = cli(*args, "typo.py", cwd=tmp_path, token=cast.operator_token)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "error line 2: a released table has no 'order_by'" in r.stdout
    r = cli(*args, "good.py", cwd=tmp_path, token=cast.operator_token)
    assert r.returncode == 0 and "ok: quoted at most" in r.stdout, r.stdout + r.stderr
    # Checking ran nothing and recorded nothing.
    assert len(cast.operator._listing("/jobs", "jobs")) == before
    checked = cast.operator.check(cid, (tmp_path / "typo.py").read_text(encoding="utf-8"))
    assert checked["ok"] is False and checked["problems"][0]["line"] == 2


def test_jobs_quote_list_and_output_as_csv(cast: Cast, tmp_path: Path) -> None:
    cid = active_contract(cast, spend_cap="100.00")
    (tmp_path / "job.py").write_text(
        'emit("按区", table("population").group_by("district").agg(n=count()).collect())\n',
        encoding="utf-8",
    )
    common = ("--url", cast.server.url)
    r = cli(
        "jobs",
        "quote",
        *common,
        "--contract",
        cid,
        "--code",
        "job.py",
        cwd=tmp_path,
        token=cast.operator_token,
    )
    assert r.returncode == 0 and "at most" in r.stdout and "call" in r.stdout, r.stderr
    job = cast.operator.submit(cid, (tmp_path / "job.py").read_text(encoding="utf-8"), wait=True)
    r = cli("jobs", "list", *common, "--contract", cid, cwd=tmp_path, token=cast.operator_token)
    assert r.returncode == 0 and job.id in r.stdout and "succeeded" in r.stdout, r.stderr
    r = cli(
        "jobs",
        "output",
        job.id,
        "按区",
        *common,
        "--csv",
        "out.csv",
        cwd=tmp_path,
        token=cast.operator_token,
    )
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "out.csv").read_text(encoding="utf-8-sig")
    assert text.splitlines()[0].split(",") == ["district", "n"]
    r = cli("jobs", "output", job.id, "无此输出", *common, cwd=tmp_path, token=cast.operator_token)
    assert r.returncode == 1
