"""Backup and restore of a running instance, with real `sandbox serve` processes on SQLite and
PostgreSQL: a backup taken while jobs are submitted restores into a new instance whose ledger
verifies against a checkpoint saved before the backup, whose money adds up and which runs new
jobs; a damaged backup, an occupied target or an interrupted backup leave nothing behind."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from databases import BACKENDS, fresh_database
from live import Cast, active_contract, cast_of, run_server, serve_instance
from sqlalchemy import func, inspect, select
from waiting import wait_until

from operators.client import SandboxClient
from operators.keys import private_key_from_pem
from sandbox.settings import Settings
from sandbox.store import tablefile
from sandbox.store.db import make_engine
from sandbox.store.models import Contract, Job

BY_DISTRICT = (
    'emit("各区人口", table("population").group_by("district")'
    '.agg(n=count(), avg=mean("income")).collect())\n'
)
SANDBOX = [sys.executable, "-m", "sandbox.cli.main"]


def _cli(*args: str, database_url: str | None = None) -> subprocess.CompletedProcess[str]:
    # Wide enough that no message is wrapped.
    env = {k: v for k, v in os.environ.items() if k != "SANDBOX_DATABASE_URL"} | {"COLUMNS": "400"}
    if database_url is not None:
        env["SANDBOX_DATABASE_URL"] = database_url
    return subprocess.run([*SANDBOX, *args], env=env, capture_output=True, text=True, timeout=300)


def _bureau_key(data_dir: Path) -> str:
    key = private_key_from_pem((data_dir / "keys" / "bureau.pem").read_bytes())
    return base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def _database_of(data_dir: Path, url: str | None) -> str:
    return url or Settings(data_dir=data_dir).resolved_database_url


def _row_counts(url: str) -> dict[str, int]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return {
                t.name: conn.scalar(select(func.count()).select_from(t)) or 0
                for t in tablefile.tables_of(conn)
            }
    finally:
        engine.dispose()


def _money_adds_up(url: str) -> None:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            for cid, spent, reserved in conn.execute(
                select(Contract.id, Contract.spent_fen, Contract.reserved_fen)
            ):
                charged = conn.scalar(
                    select(func.coalesce(func.sum(Job.charge_fen), 0)).where(Job.contract_id == cid)
                )
                assert (spent, reserved) == (charged, 0), cid
    finally:
        engine.dispose()


def _tables_in(url: str) -> list[str]:
    engine = make_engine(url)
    try:
        return inspect(engine).get_table_names()
    finally:
        engine.dispose()


def _leftovers(parent: Path) -> list[str]:
    return sorted(
        p.name for p in parent.iterdir() if ".partial-" in p.name or ".restoring-" in p.name
    )


@dataclass
class Submitter:
    """Submits jobs one after another in a thread of its own until stopped."""

    url: str
    token: str
    cast: Cast
    contract_id: str
    submitted: list[str]
    stop: threading.Event

    def run(self) -> None:
        with SandboxClient(self.url, token=self.token, signing_key=self.cast.operator_key) as c:
            while not self.stop.is_set():
                n = len(self.submitted)
                job = c.submit(self.contract_id, BY_DISTRICT, idempotency_key=f"并发-{n}")
                self.submitted.append(job.id)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_backup_taken_while_jobs_run_restores_into_a_working_instance(
    tmp_path: Path, backend: str
) -> None:
    with fresh_database(backend) as source_url, fresh_database(backend) as target_url:
        live = tmp_path / "live"
        live.mkdir()
        dest = tmp_path / "backups" / "备份-1"
        saved = tmp_path / "checkpoint.txt"
        with (
            run_server(live, "local", database_url=source_url) as server,
            cast_of(server, tmp_path) as cast,
        ):
            cid = active_contract(cast, spend_cap="500.00")
            before = [
                cast.operator.submit(cid, BY_DISTRICT, idempotency_key=f"日报-{i}", wait=True)
                for i in range(3)
            ]
            assert [j.status for j in before] == ["succeeded"] * 3
            took = _cli(
                "ledger", "checkpoint", "--url", server.url, "--token", server.bureau_token,
                "--out", str(saved),
            )  # fmt: skip
            assert took.returncode == 0, took.stderr

            stop, submitted = threading.Event(), []
            submitter = Submitter(server.url, cast.operator_token, cast, cid, submitted, stop)
            thread = threading.Thread(target=submitter.run)
            thread.start()
            try:
                wait_until(lambda: len(submitted) >= 2, 60, message="no job was submitted")
                backed = _cli(
                    "backup", str(dest), "--data-dir", str(server.data_dir),
                    database_url=source_url,
                )  # fmt: skip
                wait_until(lambda: len(submitted) >= 4, 60, message="submissions stopped")
            finally:
                stop.set()
                thread.join(timeout=120)
            assert backed.returncode == 0, backed.stderr
            assert "0600" in backed.stdout
            for job_id in submitted:
                cast.operator.job(job_id).wait(timeout=120)
            bureau_key = _bureau_key(server.data_dir)

        manifest = json.loads((dest / "manifest.json").read_text(encoding="utf-8"))
        assert manifest["database"] == ("sqlite" if backend == "sqlite" else "postgresql")
        assert manifest["datasets"].keys() == {"population"}
        assert manifest["tables"]["jobs"] >= 3 and manifest["tables"]["ledger_entries"] > 0

        restored = tmp_path / "恢复的实例"
        done = _cli("restore", str(dest), "--data-dir", str(restored), database_url=target_url)
        assert done.returncode == 0, done.stderr
        restored_db = _database_of(restored, target_url)
        assert _row_counts(restored_db) == manifest["tables"]
        assert (restored / "keys" / "bureau.pem").stat().st_mode & 0o777 == 0o600
        # The residents keep their entity numbers (no ingest ran since the backup).
        registry = Path("datasets") / ".entities"
        numbered = {
            p.name: p.read_bytes()
            for p in (server.data_dir / registry).iterdir()
            if not p.name.startswith(("lock", "."))
        }
        assert numbered
        assert {n: (restored / registry / n).read_bytes() for n in numbered} == numbered

        with serve_instance(restored, server.bureau_token, "local", target_url) as again:
            # The ledger is the one signed before the backup, grown only.
            verified = _cli(
                "ledger", "verify", "--url", again.url, "--token", again.bureau_token,
                "--bureau-key", bureau_key, "--checkpoint", str(saved),
            )  # fmt: skip
            assert verified.returncode == 0, verified.stdout + verified.stderr
            assert "consistent" in verified.stdout
            with SandboxClient(
                again.url, token=cast.operator_token, signing_key=cast.operator_key
            ) as operator:
                # Jobs and their charges are there, and idempotency keys are still honoured.
                for job in before:
                    kept = operator.job(job.id)
                    assert (kept.status, kept.charge) == ("succeeded", job.charge)
                repeat = operator.submit(cid, BY_DISTRICT, idempotency_key="日报-0")
                assert repeat.id == before[0].id
                one_more = operator.submit(cid, BY_DISTRICT, idempotency_key="恢复后", wait=True)
                assert one_more.status == "succeeded" and one_more.charge, one_more.error
                assert one_more.output("各区人口", as_="json")
            _money_adds_up(restored_db)


# --- a backup of a small live instance, for the refusals ---------------------------------------


@dataclass(frozen=True)
class Backed:
    data_dir: Path  # the instance, stopped
    backup: Path


@pytest.fixture(scope="module")
def backed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backed]:
    root = tmp_path_factory.mktemp("backed")
    with run_server(root, "local") as server, cast_of(server, root) as cast:
        cid = active_contract(cast)
        assert cast.operator.submit(cid, BY_DISTRICT, wait=True).status == "succeeded"
        done = _cli("backup", str(root / "backup"), "--data-dir", str(server.data_dir))
        assert done.returncode == 0, done.stderr
    yield Backed(server.data_dir, root / "backup")


def _copy_of(backed: Backed, tmp: Path) -> Path:
    copy = tmp / "backup"
    shutil.copytree(backed.backup, copy)
    return copy


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


DAMAGE = {
    "a byte flipped in a table": (
        lambda b: _flip_a_byte(b / "tables" / "ledger_entries.jsonl"),
        "tables/ledger_entries.jsonl does not match its sha256",
    ),
    "a truncated Parquet file": (
        lambda b: (b / "datasets" / "population" / "part-00000.parquet").write_bytes(b"PAR1"),
        "datasets/population/part-00000.parquet is truncated",
    ),
    "a missing table file": (
        lambda b: (b / "tables" / "jobs.jsonl").unlink(),
        "tables/jobs.jsonl is missing",
    ),
    "no manifest": (lambda b: (b / "manifest.json").unlink(), "has no manifest.json"),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_backup_is_refused_and_nothing_is_created(
    backed: Backed, tmp_path: Path, damage: str, backend: str
) -> None:
    spoil, says = DAMAGE[damage]
    copy = _copy_of(backed, tmp_path)
    spoil(copy)
    with fresh_database(backend) as url:
        target = tmp_path / "new"
        done = _cli("restore", str(copy), "--data-dir", str(target), database_url=url)
        assert done.returncode == 1
        assert says in done.stderr and "error:" in done.stderr, done.stderr
        assert not target.exists() and _leftovers(tmp_path) == []
        if url is not None:
            assert _tables_in(url) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_restore_failing_half_way_removes_what_it_made(
    backed: Backed, tmp_path: Path, backend: str
) -> None:
    # Row counts are checked as the rows go in: the schema and some tables exist by then.
    copy = _copy_of(backed, tmp_path)
    manifest = json.loads((copy / "manifest.json").read_text(encoding="utf-8"))
    manifest["tables"]["jobs"] += 1
    (copy / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with fresh_database(backend) as url:
        target = tmp_path / "new"
        done = _cli("restore", str(copy), "--data-dir", str(target), database_url=url)
        assert done.returncode == 1
        assert "table jobs holds" in done.stderr and "manifest says" in done.stderr, done.stderr
        assert not target.exists() and _leftovers(tmp_path) == []
        if url is not None:
            assert _tables_in(url) == []


def test_a_restore_over_an_existing_instance_is_refused(backed: Backed) -> None:
    key = (backed.data_dir / "keys" / "bureau.pem").read_bytes()
    counts = _row_counts(_database_of(backed.data_dir, None))
    done = _cli("restore", str(backed.backup), "--data-dir", str(backed.data_dir))
    assert done.returncode == 1
    assert "an instance already exists in" in done.stderr, done.stderr
    assert (backed.data_dir / "keys" / "bureau.pem").read_bytes() == key
    assert _row_counts(_database_of(backed.data_dir, None)) == counts


def test_a_restore_into_a_database_in_use_is_refused(backed: Backed, tmp_path: Path) -> None:
    with fresh_database("postgresql") as url:
        assert url is not None
        first = _cli(
            "restore", str(backed.backup), "--data-dir", str(tmp_path / "a"), database_url=url
        )
        assert first.returncode == 0, first.stderr
        counts = _row_counts(url)
        second = _cli(
            "restore", str(backed.backup), "--data-dir", str(tmp_path / "b"), database_url=url
        )
        assert second.returncode == 1
        assert "already has" in second.stderr and "empty database" in second.stderr
        assert not (tmp_path / "b").exists() and _row_counts(url) == counts


def test_the_backup_holds_the_key_readable_by_its_owner_only(backed: Backed) -> None:
    key = backed.backup / "keys" / "bureau.pem"
    assert key.stat().st_mode & 0o777 == 0o600
    assert key.read_bytes() == (backed.data_dir / "keys" / "bureau.pem").read_bytes()
    assert backed.backup.stat().st_mode & 0o077 == 0


def test_a_backup_into_an_existing_directory_is_refused(backed: Backed, tmp_path: Path) -> None:
    (tmp_path / "there").mkdir()
    done = _cli("backup", str(tmp_path / "there"), "--data-dir", str(backed.data_dir))
    assert done.returncode == 1 and "already exists" in done.stderr
    assert list((tmp_path / "there").iterdir()) == []


def _instance_copy(backed: Backed, tmp: Path) -> Path:
    copy = tmp / "instance"
    shutil.copytree(backed.data_dir, copy)
    return copy


def test_a_backup_failing_half_way_leaves_no_destination(backed: Backed, tmp_path: Path) -> None:
    # The tables are written by the time the dataset's files are copied.
    instance = _instance_copy(backed, tmp_path)
    (instance / "datasets" / "population" / "part-00000.parquet").unlink()
    dest = tmp_path / "out" / "backup"
    done = _cli("backup", str(dest), "--data-dir", str(instance))
    assert done.returncode == 1
    assert "missing file part-00000.parquet of dataset 'population'" in done.stderr
    assert not dest.exists() and _leftovers(dest.parent) == []


def test_a_killed_backup_leaves_no_destination(backed: Backed, tmp_path: Path) -> None:
    instance = _instance_copy(backed, tmp_path)
    dest = tmp_path / "out" / "backup"
    dest.parent.mkdir()
    # A writer holding the database exclusively keeps the backup waiting in its first read.
    holder = sqlite3.connect(instance / "sandbox.db", isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("UPDATE principals SET name = name")
    proc = subprocess.Popen(
        [*SANDBOX, "backup", str(dest), "--data-dir", str(instance)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _leftovers(dest.parent) != [], 60, message="the backup did not start")
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert not dest.exists()
    (partial,) = _leftovers(dest.parent)
    assert not (dest.parent / partial / "manifest.json").exists()
    # The next backup to the same place clears what the killed one left, and succeeds.
    again = _cli("backup", str(dest), "--data-dir", str(instance))
    assert again.returncode == 0, again.stderr
    assert dest.exists() and _leftovers(dest.parent) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_restored_instance_backs_up_to_the_same_rows_byte_for_byte(
    backed: Backed, tmp_path: Path, backend: str
) -> None:
    # From SQLite into either database and back out: bytes, times, JSON documents (and SQL
    # NULL beside JSON null) and Chinese text come back exactly as they were.
    with fresh_database(backend) as url:
        target = tmp_path / "实例"
        done = _cli("restore", str(backed.backup), "--data-dir", str(target), database_url=url)
        assert done.returncode == 0, done.stderr
        again = tmp_path / "again"
        done = _cli("backup", str(again), "--data-dir", str(target), database_url=url)
        assert done.returncode == 0, done.stderr
    first = json.loads((backed.backup / "manifest.json").read_text(encoding="utf-8"))
    second = json.loads((again / "manifest.json").read_text(encoding="utf-8"))
    assert second["tables"] == first["tables"] and first["tables"]["jobs"] == 1
    assert second["files"] == first["files"]
    assert "各区人口" in (again / "tables" / "job_outputs.jsonl").read_text(encoding="utf-8")


def test_a_backup_of_no_instance_says_how_to_create_one(tmp_path: Path) -> None:
    done = _cli("backup", str(tmp_path / "out"), "--data-dir", str(tmp_path / "nowhere"))
    assert done.returncode == 1
    assert f"sandbox init --data-dir {tmp_path / 'nowhere'}" in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()
