"""Scale-out: an instance attached to a multi-node Ray cluster spreads a job's partitions.

The cluster (a head without CPUs, where the API process attaches, and two worker nodes) is
started by `multinode_scenario.py` in a process of its own, with its own Ray directory, so it
neither needs nor disturbs the one local Ray the rest of the suite shares.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
from multinode_scenario import WORKER_CPUS

from sandbox.catalog.encryption import decryption_for as decrypt

SCENARIO = Path(__file__).with_name("multinode_scenario.py")
ROOT = Path(__file__).resolve().parents[2]
RESIDENTS = 3000
PARTITION_ROWS = 500
THRESHOLD = 10
TIMEOUT_SECONDS = 150
WORKERS = {"worker-1", "worker-2"}

pytestmark = pytest.mark.ray


def run_scenario(workdir: Path) -> dict[str, Any]:
    # A short private directory: Ray puts its sockets there (path length is limited) and its
    # "current cluster" file, which a bare ray.init() elsewhere would otherwise pick up.
    ray_dir = tempfile.mkdtemp(prefix="pds-ray-", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "SANDBOX_RAY_ADDRESS")}
    env.update(RAY_AUTH_MODE="disabled", RAY_TMPDIR=ray_dir)
    try:
        proc = subprocess.run(
            [
                sys.executable,
                str(SCENARIO),
                str(workdir),
                "--residents",
                str(RESIDENTS),
                "--partition-rows",
                str(PARTITION_ROWS),
                "--threshold",
                str(THRESHOLD),
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_SECONDS,
            check=False,
        )
    finally:
        shutil.rmtree(ray_dir, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    out["stderr"] = proc.stderr[-4000:]  # the service's log, shown when a job fails
    return out


@pytest.fixture(scope="module")
def scenario(
    tmp_path_factory: pytest.TempPathFactory, ray_local: None
) -> tuple[Path, dict[str, Any]]:
    # The suite's Ray is up while the cluster runs: the two must not meet.
    workdir = tmp_path_factory.mktemp("multinode")
    return workdir, run_scenario(workdir)


def truth(parquet: Path) -> dict[tuple[str, str], tuple[int, int, int]]:
    """(district, hukou_type) → (rows, rows with an income, income total), by DuckDB."""
    rows = duckdb.execute(
        "SELECT district, hukou_type, count(*), count(income), sum(income) "
        "FROM read_parquet(?) GROUP BY district, hukou_type",
        [str(parquet)],
    ).fetchall()
    return {(d, h): (n, k, int(s or 0)) for d, h, n, k, s in rows}


def test_instance_attaches_to_the_cluster_and_partitions_the_dataset(
    scenario: tuple[Path, dict[str, Any]],
) -> None:
    workdir, out = scenario
    assert out["attached"] == {"gcs_address": out["cluster_address"], "nodes": 3}
    assert out["nodes"] == ["head", "worker-1", "worker-2"]
    parts = [Path(p) for p in out["partitions"]]
    assert len(parts) == math.ceil(RESIDENTS / PARTITION_ROWS) > 2
    assert all(p.is_absolute() and p.is_relative_to(workdir) for p in parts)
    assert sum(pq.read_metadata(p, decryption_properties=decrypt(p)).num_rows for p in parts) == (
        RESIDENTS
    )


def test_released_table_matches_an_independent_computation(
    scenario: tuple[Path, dict[str, Any]],
) -> None:
    workdir, out = scenario
    job = out["job"]
    assert job["status"] == "succeeded", (job, out["stderr"])
    assert job["usage"]["rows_scanned"] == RESIDENTS
    table = job["outputs"]["区户籍收入"]
    assert [c["name"] for c in table["columns"]] == ["district", "hukou_type", "n", "total"]
    expected = truth(workdir / "population.parquet")
    released = {(d, h): (n, total) for d, h, n, total in table["rows"]}
    # Groups too small in every cell are left out, key and all.
    assert set(released) == {
        k for k, (rows, with_income, _) in expected.items() if max(rows, with_income) >= THRESHOLD
    }
    suppressed = {(table["rows"][i][0], table["rows"][i][1], col) for i, col in table["suppressed"]}
    small = sum(1 for rows, _, _ in expected.values() if rows < THRESHOLD)
    for key, (n, total) in released.items():
        rows, with_income, income = expected[key]
        # Cells under the minimum-contributor threshold are withheld and listed; every cell
        # that is released is exact.
        for col, value, contributors, exact in (
            ("n", n, rows, rows),
            ("total", total, with_income, income),
        ):
            if contributors < THRESHOLD:
                assert value is None and (*key, col) in suppressed
            if value is None:
                assert (*key, col) in suppressed
            else:
                assert value == exact
    assert small > 0, "the data must have a group below the threshold"
    assert sum(n for n, _ in released.values() if n is not None) > RESIDENTS // 2


def test_partition_tasks_ran_on_more_than_one_node(scenario: tuple[Path, dict[str, Any]]) -> None:
    _, out = scenario
    assert out["job"]["status"] == "succeeded", out["job"]
    (driver,) = [t for t in out["tasks"] if t["role"] == "driver"]
    # Besides the partition tasks, the driver calls only the instance's release gate (and
    # the API tells the gate the job was settled).
    started = [t for t in out["tasks"] if t["role"] == "started by the driver"]
    assert {t["function"] for t in out["tasks"] if t["role"] == "release gate"} <= {
        "GateActor.release",
        "GateActor.settled",
    }
    # The job's driver (and so its operator code) ran on a worker node: the head, where the
    # API process is attached, offers no CPU.
    assert driver["function"] == "run_job_on_ray" and driver["node"] in WORKERS, driver
    # Partition tasks only, for a plan over a single table: one per partition, or one per CPU
    # of the cluster reading consecutive partitions when there are more partitions than CPUs.
    slots = len(WORKERS) * WORKER_CPUS
    assert len(out["partitions"]) > slots
    assert len(started) == slots, out["tasks"]
    assert {t["function"] for t in started} <= {"partial_task", "partials_task"}, started
    spread = out["started_tasks_by_node"]
    assert set(spread) <= WORKERS and sum(spread.values()) == slots, spread
    assert len(spread) >= 2, spread


def test_the_suites_own_ray_is_untouched(scenario: tuple[Path, dict[str, Any]]) -> None:
    import ray

    _, out = scenario
    assert ray.get_runtime_context().gcs_address != out["cluster_address"]
    assert [n["Alive"] for n in ray.nodes()] == [True]
    assert ray.get(ray.remote(lambda: 6 * 7).remote()) == 42
