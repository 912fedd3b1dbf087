"""Data on disk going wrong: a registered dataset's partition file missing, damaged or cut short
(the job fails as the service's fault, costs nothing, shows no data, and the bureau's log says
which file), and a disk that fills up during ingest (nothing half-written is kept)."""

from __future__ import annotations

import json
import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import World

from sandbox.catalog import encryption

PRIVATE = {"population": {"epsilon": "0.5", "per_job_epsilon": "0.2"}}
BY_DISTRICT = (
    "emit('t', table('population').group_by('district').agg(n=count(), i=mean('income')).collect())"
)
DAMAGED = "part-00001.parquet"


def _partition(w: World) -> Path:
    return w.ctx.settings.datasets_dir / "population" / DAMAGED


def _delete(path: Path) -> None:
    path.unlink()


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _overwrite(path: Path) -> None:
    """Some bytes in the middle of the pages the job reads (its district column) replaced."""
    meta = pq.ParquetFile(path, decryption_properties=encryption.decryption_for(path)).metadata
    names = [meta.schema.column(i).path for i in range(meta.num_columns)]
    chunk = meta.row_group(0).column(names.index("district"))
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    middle = start + chunk.total_compressed_size // 2
    with open(path, "r+b") as f:
        f.seek(middle)
        f.write(bytes(b ^ 0x5A for b in f.read(16)))
        f.seek(middle)


DAMAGE: dict[str, Callable[[Path], None]] = {
    "missing": _delete,
    "truncated": _truncate,
    "overwritten": _overwrite,
}


def _check_failed_as_the_service_fault(
    w: World, city: Any, cid: str, job: dict[str, Any], log: pytest.LogCaptureFixture
) -> None:
    assert job["status"] == "failed", job
    error = job["error"]
    assert error["code"] == "data_unavailable" and error["fault"] == "service"
    message = error["message"]
    assert "'population'" in message and "bureau" in message and "not charged" in message
    # Nothing of the data or of where it lies: no district, no file.
    districts = set(city["population"].table.column("district").to_pylist())
    assert not any(d in message for d in districts)
    assert "part-" not in message and str(w.ctx.settings.data_dir) not in message
    assert job["outputs"] == {}
    spend = w.client.get(f"/v1/contracts/{cid}", headers=w.h(w.operator)).json()["spend"]
    assert spend["spent_fen"] == 0 and spend["reserved_fen"] == 0
    budget = w.client.get(f"/v1/contracts/{cid}/budget", headers=w.h(w.operator)).json()
    assert budget["privacy"]["population"]["spent"] == "0"
    assert budget["privacy"]["population"]["reserved"] == "0"
    # The bureau's log names the dataset and the file.
    told = [
        r.getMessage()
        for r in log.records
        if r.levelno >= logging.ERROR and DAMAGED in r.getMessage()
    ]
    assert told and "population" in told[0], [r.getMessage() for r in log.records]


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_partition_fails_the_job_as_the_service_fault_locally(
    local_world: World, city: Any, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    w = local_world
    cid = w.active_contract(privacy=PRIVATE)
    DAMAGE[damage](_partition(w))
    with caplog.at_level(logging.ERROR):
        job = w.run(cid, BY_DISTRICT).json()
    _check_failed_as_the_service_fault(w, city, cid, job, caplog)


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_partition_fails_the_job_as_the_service_fault_on_ray(
    world: World, city: Any, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    w = world
    cid = w.active_contract(privacy=PRIVATE)
    # Read once first: the scan cache then holds the partition, and must not answer for a
    # file that has since changed or gone.
    assert w.run(cid, BY_DISTRICT).json()["status"] == "succeeded"
    spent = w.client.get(f"/v1/contracts/{cid}", headers=w.h(w.operator)).json()["spend"]
    DAMAGE[damage](_partition(w))
    with caplog.at_level(logging.ERROR):
        job = w.run(cid, BY_DISTRICT).json()
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "data_unavailable" and job["error"]["fault"] == "service"
    after = w.client.get(f"/v1/contracts/{cid}", headers=w.h(w.operator)).json()["spend"]
    assert after == spent
    budget = w.client.get(f"/v1/contracts/{cid}/budget", headers=w.h(w.operator)).json()
    assert budget["privacy"]["population"]["spent"] == "0.2"  # the first job's alone
    assert budget["privacy"]["population"]["reserved"] == "0"
    assert any(DAMAGED in r.getMessage() and "population" in r.getMessage() for r in caplog.records)


def test_a_job_on_another_dataset_still_runs(local_world: World, city: Any) -> None:
    """One damaged dataset takes nothing else down."""
    w = local_world
    firms = city["enterprises"]
    assert w.ingest("enterprises", firms.table, firms.level, firms.columns).status_code == 201
    grants = {"enterprises": {"industry": ["group_by"], "district": ["group_by"]}}
    cid = w.active_contract(grants)
    _delete(_partition(w))
    job = w.run(
        cid, "emit('n', table('enterprises').group_by('district').agg(n=count()).collect())"
    )
    assert job.json()["status"] == "succeeded", job.json()


# --- a full disk during ingest ------------------------------------------------------------


def _leftovers(datasets: Path) -> list[str]:
    """Anything an ingest leaves behind in the datasets directory besides finished datasets
    and the entity registry's own files."""
    kept = {"registry.npz", "lock", "key"}
    return sorted(
        str(p.relative_to(datasets))
        for p in datasets.rglob("*")
        if p.name.startswith(".tmp") or (p.parent.name == ".entities" and p.name not in kept)
    )


@pytest.fixture
def full_disk(local_world: World, tmp_path: Path) -> Iterator[tuple[World, Path]]:
    """The world's datasets directory on a small tmpfs of its own (its datasets copied in),
    nearly filled by a ballast file that the test may remove."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root; the file-size-limit test covers this")
    datasets = local_world.ctx.settings.datasets_dir
    aside = tmp_path / "datasets-aside"
    shutil.move(datasets, aside)
    datasets.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(datasets)], capture_output=True
    )
    if mounted.returncode != 0:
        datasets.rmdir()
        shutil.move(aside, datasets)
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        shutil.copytree(aside, datasets, dirs_exist_ok=True)
        free = os.statvfs(datasets).f_bavail * os.statvfs(datasets).f_frsize
        ballast = datasets / "ballast"
        ballast.write_bytes(b"\0" * max(0, free - 200 * 1024))
        yield local_world, ballast
    finally:
        subprocess.run(["umount", "-l", str(datasets)], check=False)


def test_an_ingest_that_fills_the_disk_keeps_nothing_and_works_once_space_is_freed(
    full_disk: tuple[World, Path], city: Any
) -> None:
    w, ballast = full_disk
    datasets = w.ctx.settings.datasets_dir
    registry_before = (datasets / ".entities" / "registry.npz").read_bytes()
    pop = city["population"]
    r = w.ingest("人口", pop.table, pop.level, pop.columns, "人口（副本）")
    assert r.status_code == 507, r.text
    body = r.json()
    assert body["code"] == "storage_full"
    assert "full" in body["error"] and "nothing of it was kept" in body["error"]
    assert not (datasets / "人口").exists()
    assert _leftovers(datasets) == []
    # No identifier of the failed ingest kept in the entity registry.
    assert (datasets / ".entities" / "registry.npz").read_bytes() == registry_before
    assert w.client.get("/v1/datasets/人口", headers=w.h(w.bureau)).status_code == 404
    entries = w.client.get("/v1/ledger/entries", headers=w.h(w.regulator)).json()["entries"]
    assert [e for e in entries if e["event"]["subject"] == "人口"] == []

    ballast.unlink()
    r = w.ingest("人口", pop.table, pop.level, pop.columns, "人口（副本）")
    assert r.status_code == 201, r.text
    assert r.json()["row_count"] == pop.table.num_rows
    assert _leftovers(datasets) == []


def _cli(
    *args: str, cwd: Path, max_file_bytes: int | None = None
) -> subprocess.CompletedProcess[str]:
    """`sandbox …` as a subprocess; `max_file_bytes`: no file it writes may grow past that
    (RLIMIT_FSIZE; writes beyond fail with EFBIG, as on a full disk, once SIGXFSZ is ignored)."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        assert max_file_bytes is not None
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

    script = Path(sys.executable).with_name("sandbox")
    return subprocess.run(
        [str(script), *args],
        cwd=cwd,
        env={**os.environ, "SANDBOX_EXECUTOR": "local", "PYTHONIOENCODING": "utf-8"},
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit if max_file_bytes is not None else None,
    )


def test_a_cli_ingest_past_the_file_size_limit_keeps_nothing(tmp_path: Path, city: Any) -> None:
    from sandbox.context import open_instance
    from sandbox.records.principals import create_principal
    from sandbox.settings import Settings

    assert _cli("init", "--data-dir", "inst", cwd=tmp_path).returncode == 0
    ctx = open_instance(Settings(data_dir=tmp_path / "inst", executor="local"))
    try:
        provider = create_principal(ctx, None, "市公安局", "provider")[0].id
    finally:
        ctx.close()
    pop = city["population"]
    pq.write_table(pop.table, tmp_path / "人口.parquet")
    meta = {"name": "人口", "title": "人口", "provider_id": provider, "level": pop.level}
    (tmp_path / "meta.json").write_text(
        json.dumps({**meta, "columns": pop.columns}, ensure_ascii=False), encoding="utf-8"
    )
    ingest = ("datasets", "ingest", "人口.parquet", "--meta", "meta.json", "--data-dir", "inst")
    datasets = tmp_path / "inst" / "datasets"
    database = [p for p in (tmp_path / "inst").iterdir() if p.is_file()]
    # Room for what exists (the database) and what registering adds to it, none for a
    # partition of this dataset (about 580 KB).
    largest = max(p.stat().st_size for p in database)
    r = _cli(*ingest, cwd=tmp_path, max_file_bytes=largest + 64 * 1024)
    assert r.returncode == 1, r.stdout + r.stderr
    said = " ".join(r.stderr.split())
    assert "full" in said and "nothing of it was kept" in said and "Traceback" not in said
    assert not (datasets / "人口").exists()
    assert _leftovers(datasets) == []
    r = _cli("datasets", "list", "--data-dir", "inst", cwd=tmp_path)
    assert "人口" not in r.stdout

    r = _cli(*ingest, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "人口" in _cli("datasets", "list", "--data-dir", "inst", cwd=tmp_path).stdout
    assert _leftovers(datasets) == []


def test_a_new_version_past_the_file_size_limit_keeps_nothing(tmp_path: Path, city: Any) -> None:
    test_a_cli_ingest_past_the_file_size_limit_keeps_nothing(tmp_path, city)
    datasets = tmp_path / "inst" / "datasets"
    registry_before = (datasets / ".entities" / "registry.npz").read_bytes()
    bigger = city["population"].table
    pq.write_table(pa.concat_tables([bigger, bigger.slice(0, 10)]), tmp_path / "v2.parquet")
    publish = ("datasets", "publish", "人口", "v2.parquet", "--data-dir", "inst")
    database = [p for p in (tmp_path / "inst").iterdir() if p.is_file()]
    largest = max(p.stat().st_size for p in database)
    r = _cli(*publish, cwd=tmp_path, max_file_bytes=largest + 64 * 1024)
    assert r.returncode == 1, r.stdout + r.stderr
    said = " ".join(r.stderr.split())
    assert "full" in said and "nothing of it was kept" in said and "Traceback" not in said
    assert not (datasets / "人口@2").exists() and _leftovers(datasets) == []
    assert (datasets / ".entities" / "registry.npz").read_bytes() == registry_before
    versions = _cli("datasets", "versions", "人口", "--data-dir", "inst", cwd=tmp_path).stdout
    assert "replace" not in versions
    r = _cli(*publish, cwd=tmp_path)
    assert r.returncode == 0 and "version 2" in r.stdout, r.stderr
