"""What the bureau watches the service with: `/metrics` for Prometheus (bureau and
regulators only; counts, never a data value) and health split into liveness and readiness."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from conftest import World
from sqlalchemy.exc import OperationalError

COUNT = 'emit("n", table("population").group_by("district").agg(n=count()).collect())\n'


def scrape(w: World, who: dict[str, Any] | None = None) -> dict[str, float]:
    r = w.client.get("/metrics", headers=w.h(who or w.bureau))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    samples = {}
    for line in r.text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def value(samples: dict[str, float], pattern: str) -> float:
    return sum(v for k, v in samples.items() if re.fullmatch(pattern, k))


def test_metrics_count_jobs_stages_suppression_and_levels(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()
    before = scrape(w)
    job = w.run(cid, COUNT).json()
    assert job["status"] == "succeeded", job
    rejected = w.client.post(
        "/v1/jobs", json={"contract_id": cid, "code": "x = (\n"}, headers=w.h(w.operator)
    )
    assert rejected.status_code == 400
    after = scrape(w, w.regulator)

    def delta(pattern: str) -> float:
        return value(after, pattern) - value(before, pattern)

    assert delta(r'sandbox_jobs_total\{code="",status="succeeded"\}') == 1
    assert delta(r'sandbox_jobs_total\{code="code_rejected",status="rejected"\}') == 1
    for stage in ("submit", "compile", "queue", "run", "engine", "disclosure", "settle"):
        assert delta(rf'sandbox_job_stage_seconds_count\{{stage="{stage}"\}}') >= 1, stage
    suppressed = sum(1 for r in job["disclosure"]["releases"] for _ in r["suppressed"])
    assert delta(r'sandbox_cells_suppressed_total\{rule="[a-z_]+"\}') == suppressed
    size = w.client.get("/v1/ledger/checkpoint", headers=w.h(w.regulator)).json()["size"]
    assert after["sandbox_ledger_entries"] == size
    assert after["sandbox_money_reserved_yuan"] == 0  # nothing is running
    assert after["sandbox_epsilon_reserved"] == 0


def test_metrics_are_for_the_bureau_and_regulators_and_carry_no_data(local_world: World) -> None:
    w = local_world
    w.run(w.active_contract(), COUNT)
    assert w.client.get("/metrics").status_code == 401
    for who in (w.operator, w.provider):
        r = w.client.get("/metrics", headers=w.h(who))
        assert r.status_code == 403 and r.json()["code"] == "forbidden", r.text
    text = w.client.get("/metrics", headers=w.h(w.bureau)).text
    assert not re.search(r"[\u4e00-\u9fff]", text)  # no district, no name
    assert w.bureau not in text and w.operator["token"] not in text


def test_liveness_and_readiness(local_world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    w = local_world
    assert w.client.get("/v1/health/live").json() == {"ok": True}
    ready = w.client.get("/v1/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {"ok": True, "checks": {"database": True, "ray": True, "jail": True}}

    @contextmanager
    def unreachable() -> Iterator[Any]:
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))
        yield

    monkeypatch.setattr(w.ctx, "reading", unreachable)
    down = w.client.get("/v1/health/ready")
    assert down.status_code == 503
    body = down.json()
    assert body["ok"] is False and body["code"] == "not_ready" and "database" in body["error"]
    assert body["checks"] == {"database": False, "ray": True, "jail": True}
    assert w.client.get("/v1/health/live").status_code == 200
