"""A Ray worker killed while it drives a job: the job ends as the service's failure (never left
running), costs the operator nothing, gives its ε back, and leaves no job process behind."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import World, make_world
from waiting import wait_until

from sandbox.context import WORKERS_PER_CPU

PRIVATE = {"population": {"epsilon": "0.5", "per_job_epsilon": "0.2"}}
# A release, then a loop long enough to be killed in (well inside the CPU and wall limits).
LONG_JOB = (
    "t = table('population').group_by('district').agg(n=count()).collect()\n"
    "n = 0\n"
    "for i in range(400000000):\n"
    "    n += 1\n"
    "emit('t', t)\n"
)


@pytest.fixture
def ray_world(tmp_path: Path, city: dict[str, Any], ray_local: None) -> Iterator[World]:
    yield from make_world(tmp_path, city, "ray", job_cpu_seconds=30, job_wall_seconds=40)


def _processes() -> dict[int, tuple[int, str]]:
    """Every process's parent and command line, by pid."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The parent follows the command name, which is in parentheses and may hold spaces.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        found[int(entry)] = (ppid, cmdline.decode("utf-8", "replace").strip())
    return found


def _descendants(pid: int) -> set[int]:
    table = _processes()
    out: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, (parent, _) in table.items() if parent in frontier} - out
        out |= frontier
    return out


def _driver() -> int | None:
    """The Ray worker running a job's driver: Ray titles a busy worker after its task."""
    for pid, (_, cmdline) in _processes().items():
        if cmdline.startswith("ray::run_job_on_ray"):
            return pid
    return None


def _alive(pid: int) -> bool:
    try:
        # A zombie still answers signal 0; it has stopped running all the same.
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_job_whose_worker_is_killed_fails_as_the_service_fault_and_costs_nothing(
    ray_world: World,
) -> None:
    w = ray_world
    cid = w.active_contract(privacy=PRIVATE)
    r = w.client.post(
        "/v1/jobs", headers=w.h(w.operator), json={"contract_id": cid, "code": LONG_JOB}
    )
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    driver = wait_until(_driver, 20, message="no Ray worker took the job's driver")
    # The job's process, forked by the driver's template (so two processes below the driver),
    # is running its loop after the release.
    jailed = wait_until(
        lambda: found if len(found := _descendants(driver)) >= 2 else None,
        10,
        message="no job process started",
    )
    time.sleep(1)
    os.kill(driver, signal.SIGKILL)

    job = w.wait_for_job(job_id, timeout=30)
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "worker_lost"
    assert job["error"]["fault"] == "service"
    assert "not charged" in job["error"]["message"]
    assert "submit" in job["error"]["message"]
    assert job["charge"] is None or float(job["charge"]["amount"]) == 0
    spend = w.client.get(f"/v1/contracts/{cid}", headers=w.h(w.operator)).json()["spend"]
    assert spend["spent_fen"] == 0 and spend["reserved_fen"] == 0
    budget = w.client.get(f"/v1/contracts/{cid}/budget", headers=w.h(w.operator)).json()
    assert budget["privacy"]["population"]["spent"] == "0"
    assert budget["privacy"]["population"]["reserved"] == "0"
    # Nothing the operator's code started outlives the worker that ran it.
    wait_until(
        lambda: not any(_alive(pid) for pid in jailed),
        10,
        message=lambda: f"job processes still running: {sorted(p for p in jailed if _alive(p))}",
    )


def test_the_instance_runs_jobs_again_after_a_worker_was_lost(ray_world: World) -> None:
    w = ray_world
    cid = w.active_contract()
    r = w.client.post(
        "/v1/jobs", headers=w.h(w.operator), json={"contract_id": cid, "code": LONG_JOB}
    )
    job_id = r.json()["id"]
    os.kill(wait_until(_driver, 20, message="no driver"), signal.SIGKILL)
    assert w.wait_for_job(job_id, timeout=30)["status"] == "failed"
    again = w.run(cid, "emit('n', table('population').agg(n=count()).collect())").json()
    assert again["status"] == "succeeded", again
    assert again["outputs"]["n"]["rows"] == [[20_000]]


def test_the_service_readies_its_workers_with_their_job_template(ray_world: World) -> None:
    """A cold worker spends seconds on imports and on the job-process template; a job that
    arrives while another holds the one ready worker would wait for them (a spinning job then
    holds up the next operator's). The service readies workers as it starts."""
    import ray

    readying = ray_world.ctx.runner.readying
    assert len(readying) == WORKERS_PER_CPU * int(ray.cluster_resources()["CPU"])
    workers = set(ray.get(readying, timeout=60))
    table = _processes()
    for worker in workers:
        children = [cmd for parent, cmd in table.values() if parent == worker]
        assert any("sandbox.jail.forkserver" in cmd for cmd in children), (worker, children)
    # Ray stops idle workers beyond its soft limit after a second (one per CPU by default):
    # the service's Ray keeps the readied ones.
    time.sleep(3)
    assert all(_alive(worker) for worker in workers), [w for w in workers if not _alive(w)]
