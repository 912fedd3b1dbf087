"""Three of four workers killed with SIGKILL while jobs run: their jobs are finished and explained
by the others, nothing reserved, ε given back, and the supervisor replaces them."""

from __future__ import annotations

import os
import signal
from typing import Any

import fleet
import httpx
from fleet import (
    FINAL,
    FLAT_FEE,
    NOISY,
    PRIVATE,
    assert_interrupted,
    assert_settled_consistently,
    statuses,
    submit_all,
    wait_all_running,
    worker_pids,
)
from live import active_contract, cast_of
from waiting import wait_until


def test_killed_workers_leave_their_jobs_to_the_others(deployment: fleet.Deployment) -> None:
    with deployment.serve() as served, cast_of(deployment.server(served), deployment.root) as cast:
        cast.bureau.publish_prices(FLAT_FEE)
        cid = active_contract(cast, spend_cap="100.00", privacy=PRIVATE)
        ids = submit_all(cast, cid, NOISY, [f"报表-{i}" for i in range(12)])
        wait_all_running(cast, ids)
        workers = worker_pids(served.process.pid)
        assert len(workers) == 4
        for pid in workers[:3]:
            os.kill(pid, signal.SIGKILL)

        def all_final() -> dict[str, Any] | None:
            try:
                jobs = statuses(cast, ids)
            except httpx.TransportError:
                return None
            return jobs if all(j.status in FINAL for j in jobs.values()) else None

        jobs = wait_until(all_final, 60, interval=0.5, message="jobs were left unfinished")
        interrupted = [j for j in jobs.values() if j.status == "failed"]
        assert interrupted, "no job was running in a killed worker"
        for job in interrupted:
            assert_interrupted(job)
        assert all(j.status == "succeeded" for j in jobs.values() if j not in interrupted)
        assert_settled_consistently(cast, cid, jobs)
        # The supervisor has replaced the killed workers, and the service works.
        wait_until(lambda: len(worker_pids(served.process.pid)) == 4, 60, interval=0.5)
        fresh = cast.operator.submit(cid, NOISY, wait=True)
        assert fresh.status == "succeeded", fresh.error
