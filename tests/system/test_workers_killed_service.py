"""The whole service of four workers killed with SIGKILL while jobs run: started again, every job
is finished and explained, nothing reserved, ε given back and the log verifying from outside."""

from __future__ import annotations

import os
import signal

import fleet
from fleet import (
    FINAL,
    FLAT_FEE,
    NOISY,
    PRIVATE,
    assert_interrupted,
    assert_settled_consistently,
    reconnected,
    regulator_desk,
    statuses,
    submit_all,
    verify,
    wait_all_running,
)
from live import active_contract, cast_of


def test_the_whole_service_killed_while_jobs_run_comes_back_consistent(
    deployment: fleet.Deployment,
) -> None:
    with deployment.serve() as served, cast_of(deployment.server(served), deployment.root) as cast:
        cast.bureau.publish_prices(FLAT_FEE)
        desk, regulator = regulator_desk(cast, deployment.root)
        cid = active_contract(cast, spend_cap="100.00", privacy=PRIVATE)
        keys = [f"夜间报表-{i}" for i in range(8)]
        ids = submit_all(cast, cid, NOISY, keys)
        wait_all_running(cast, ids)
        # Every process of the service at once: the workers, their supervisor, Ray.
        os.killpg(served.process.pid, signal.SIGKILL)
        served.process.wait(timeout=30)

    with deployment.serve() as served, reconnected(cast, deployment.server(served)) as cast:
        jobs = statuses(cast, ids)
        assert {j.status for j in jobs.values()} <= FINAL
        for job in jobs.values():
            assert_interrupted(job)
        assert_settled_consistently(cast, cid, jobs)
        # An idempotency key still names its job: submitted again, nothing new runs.
        again = cast.operator.submit(cid, NOISY, idempotency_key=keys[0])
        assert again.id == ids[0] and again.status == "failed"
        assert cast.bureau.contract(cid)["spend"]["reserved_fen"] == 0
        verify(served.url, desk, regulator)
        # And the service works: a new job runs.
        fresh = cast.operator.submit(cid, NOISY, wait=True)
        assert fresh.status == "succeeded", fresh.error
