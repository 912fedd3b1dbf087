"""Data on disk going wrong: a registered dataset's partition file missing, damaged or cut short
(the job fails as the service's fault, costs nothing, shows no data, and the bureau's log says
which file), and a disk that fills up during ingest (nothing half-written is kept)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from conftest import World

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
    meta = pq.ParquetFile(path).metadata
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
