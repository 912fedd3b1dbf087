"""The `sandbox` command line, run as a real subprocess."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import openpyxl
import pytest

from sandbox.cli.demo import PRICES

POLICY = {
    "居民编号": {"role": "identifier"},
    "街道": {"role": "attribute"},
    "月收入": {"role": "sensitive", "lower": 0, "upper": 100000},
}


def sandbox(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("sandbox")
    env = {**os.environ, "SANDBOX_EXECUTOR": "local", "PYTHONIOENCODING": "utf-8"}
    return subprocess.run(
        [str(script) if script.exists() else "sandbox", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def instance(tmp_path: Path) -> Path:
    r = sandbox("init", "--data-dir", "inst", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["token"].startswith("sbx_") and Path(out["data_dir"]) == tmp_path / "inst"
    return tmp_path


def _provider_id(root: Path) -> str:
    from sandbox.context import open_instance
    from sandbox.records.principals import create_principal
    from sandbox.settings import Settings

    ctx = open_instance(Settings(data_dir=root / "inst", executor="local"))
    try:
        return create_principal(ctx, None, "市公安局", "provider")[0].id
    finally:
        ctx.close()


def test_init_refuses_to_overwrite_an_instance(instance: Path) -> None:
    r = sandbox("init", "--data-dir", "inst", cwd=instance)
    assert r.returncode == 1 and "already exists" in r.stderr


def test_commands_on_a_missing_instance_say_how_to_create_one(tmp_path: Path) -> None:
    r = sandbox("datasets", "list", "--data-dir", "nowhere", cwd=tmp_path)
    # The path is made absolute (as the service uses it); Rich may wrap the line.
    message = " ".join(r.stderr.split())
    assert r.returncode == 1
    assert f"sandbox init --data-dir {tmp_path / 'nowhere'}" in message


def test_ingest_a_chinese_csv_and_list_it(instance: Path) -> None:
    rows = "居民编号,街道,月收入\n" + "".join(
        f"R{i:04d},{'东关街道' if i % 2 else '西湖街道'},{3000 + i}\n" for i in range(50)
    )
    (instance / "居民.csv").write_text(rows, encoding="utf-8")
    meta = {
        "name": "居民",
        "title": "居民收入",
        "provider_id": _provider_id(instance),
        "level": "L2",
        "columns": POLICY,
    }
    (instance / "meta.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    r = sandbox(
        "datasets", "ingest", "居民.csv", "--meta", "meta.json", "--data-dir", "inst", cwd=instance
    )
    assert r.returncode == 0, r.stderr
    assert "居民" in r.stdout and "50 rows" in r.stdout and "月收入" in r.stdout
    listed = sandbox("datasets", "list", "--data-dir", "inst", cwd=instance)
    assert "居民收入" in listed.stdout
    again = sandbox(
        "datasets", "ingest", "居民.csv", "--meta", "meta.json", "--data-dir", "inst", cwd=instance
    )
    assert again.returncode == 1 and "already exists" in again.stderr


def test_publish_versions_and_rules_of_a_chinese_dataset(instance: Path) -> None:
    test_ingest_a_chinese_csv_and_list_it(instance)
    more = "居民编号,街道,月收入,学历\n" + "".join(
        f"R{i:04d},东关街道,{4000 + i},本科\n" for i in range(60)
    )
    (instance / "居民2.csv").write_text(more, encoding="utf-8")
    r = sandbox("datasets", "publish", "居民", "居民2.csv", "--data-dir", "inst", cwd=instance)
    assert r.returncode == 1 and "'学历' is new in this version" in " ".join(r.stderr.split())
    (instance / "cols.json").write_text('{"学历": {"role": "attribute"}}', encoding="utf-8")
    r = sandbox(
        "datasets", "publish", "居民", "居民2.csv", "--columns", "cols.json",
        "--data-dir", "inst", cwd=instance,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "version 2" in r.stdout and "60 rows" in r.stdout and "学历" in r.stdout
    (instance / "rules.json").write_text(
        '{"not_null": ["学历"], "on_failure": "refuse"}', encoding="utf-8"
    )
    r = sandbox("datasets", "rules", "居民", "rules.json", "--data-dir", "inst", cwd=instance)
    assert r.returncode == 0, r.stderr
    (instance / "居民3.csv").write_text(
        "居民编号,街道,月收入,学历\nR0001,东关街道,100,\n", encoding="utf-8"
    )
    r = sandbox("datasets", "publish", "居民", "居民3.csv", "--data-dir", "inst", cwd=instance)
    assert r.returncode == 1 and "refused by the dataset's quality rules" in r.stderr
    r = sandbox("datasets", "versions", "居民", "--data-dir", "inst", cwd=instance)
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stdout.splitlines() if "upload" in line]
    assert len(lines) == 2 and "replace" in lines[0] and "initial" in lines[1]


def test_ingest_with_a_bad_policy_fails_and_leaves_nothing(instance: Path) -> None:
    (instance / "d.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    meta = {
        "name": "d",
        "title": "d",
        "provider_id": _provider_id(instance),
        "level": "L1",
        "columns": {"a": {"role": "attribute"}, "c": {"role": "attribute"}},
    }
    (instance / "m.json").write_text(json.dumps(meta), encoding="utf-8")
    r = sandbox(
        "datasets", "ingest", "d.csv", "--meta", "m.json", "--data-dir", "inst", cwd=instance
    )
    assert r.returncode == 1 and "'c'" in r.stderr
    assert list((instance / "inst" / "datasets").iterdir()) == []


def test_prices_publish_show_and_refuse_a_bad_schedule(instance: Path) -> None:
    r = sandbox("prices", "show", "--data-dir", "inst", cwd=instance)
    assert r.returncode == 1 and "no price schedule is in force" in r.stderr
    (instance / "p.json").write_text(json.dumps(PRICES, ensure_ascii=False), encoding="utf-8")
    r = sandbox("prices", "publish", "p.json", "--data-dir", "inst", cwd=instance)
    assert r.returncode == 0 and "公共数据产品收费标准" in r.stdout, r.stderr
    shown = sandbox("prices", "show", "--data-dir", "inst", cwd=instance)
    assert "compute_seconds" in shown.stdout and "0.10" in shown.stdout
    bad = {**PRICES, "items": [{"unit": "rows", "price": "0.001"}]}
    (instance / "bad.json").write_text(json.dumps(bad), encoding="utf-8")
    r = sandbox("prices", "publish", "bad.json", "--data-dir", "inst", cwd=instance)
    assert r.returncode == 1 and "items[0].price" in r.stderr


def test_bills_writes_a_csv_statement(instance: Path) -> None:
    r = sandbox(
        "bills", "2026-11", "--csv", "s.csv", "--xlsx", "s.xlsx", "--data-dir", "inst", cwd=instance
    )
    assert r.returncode == 0, r.stderr
    rows = list(csv.reader(io.StringIO((instance / "s.csv").read_text(encoding="utf-8-sig"))))
    assert rows[0][:3] == ["job_id", "contract_id", "operator_id"] and rows[-1][0] == "total"
    sheet = openpyxl.load_workbook(instance / "s.xlsx").active
    assert sheet["A1"].value == "作业编号" and sheet.freeze_panes == "A2"
    assert sheet.cell(row=sheet.max_row, column=1).value == "total"
    bad = sandbox("bills", "2026-13", "--data-dir", "inst", cwd=instance)
    assert bad.returncode == 1 and "YYYY-MM" in bad.stderr


@pytest.mark.ray  # starts a Ray of its own, in the demo's process
def test_the_demo_tells_the_whole_story_on_ray(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("sandbox")
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "RAY_AUTH_MODE": "disabled"}
    env.pop("SANDBOX_EXECUTOR", None)
    r = subprocess.run(
        [str(script) if script.exists() else "sandbox", "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout
    assert "local Ray cluster" in out
    assert "▒ suppressed" in out and "(secondary)" in out
    assert "HTTP 403 contract_scope" in out and "'hukou_type'" in out
    assert "HTTP 400 code_rejected" in out and "line 1" in out
    assert "root hash verified against the bureau's public key" in out
    assert "version 2 of population" in out and "1 person revised" in out
    assert "withheld (difference)" in out
    # Detection flags the escape attempt, and nothing of the ordinary job.
    assert "flag.raised ×1" in " ".join(out.split()), out[-1500:]
    assert "charged" in out and "quoted" in out
    # A data product: its template approved, a price above the cap refused, a call answered.
    flat = " ".join(out.split())  # the console wraps long lines
    assert "→ approved" in flat and "HTTP 400 price_above_cap" in flat
    assert "customer calls min_age=80 → succeeded, price 3.00" in flat
    assert "HTTP 400 params_invalid" in flat
    assert "1 call(s), revenue 3.00 of at most 3.00 yuan" in flat


def test_the_city_is_written_as_files_and_registers_as_it_says(instance: Path) -> None:
    made = sandbox(
        "principals",
        "create",
        "市公安局",
        "--role",
        "provider",
        "--json",
        "--data-dir",
        "inst",
        cwd=instance,
    )
    assert made.returncode == 0, made.stderr
    police = json.loads(made.stdout)
    assert police["role"] == "provider" and police["token"].startswith("sbx_")
    bad = sandbox(
        "principals", "create", "某局", "--role", "mayor", "--data-dir", "inst", cwd=instance
    )
    assert bad.returncode == 1 and "role must be one of" in bad.stderr

    r = sandbox(
        "city", "--out", "city", "--residents", "2000", "--provider", police["id"], cwd=instance
    )
    assert r.returncode == 0, r.stderr
    files = sorted(p.name for p in (instance / "city").iterdir())
    assert "population.parquet" in files and "population.meta.json" in files
    again = sandbox("city", "--out", "city", cwd=instance)
    assert again.returncode == 1 and "not empty" in again.stderr
    r = sandbox(
        "datasets",
        "ingest",
        "city/population.parquet",
        "--meta",
        "city/population.meta.json",
        "--data-dir",
        "inst",
        cwd=instance,
    )
    assert r.returncode == 0, r.stderr
    assert "2000 rows" in r.stdout
