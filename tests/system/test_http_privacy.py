"""Differential privacy over HTTP: noisy releases, ε budgets per contract × dataset reserved
with the money, spent or refunded at settlement, visible to operator and regulator."""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import Future
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from conftest import World

from sandbox.errors import Fault, JobError, JobStatus
from sandbox.pipeline import execution, settlement
from sandbox.pipeline.driver import JobResult

PRIVATE = {"population": {"epsilon": "0.5", "per_job_epsilon": "0.2"}}
BY_DISTRICT = (
    "emit('t', table('population').group_by('district')"
    ".agg(n=count(), avg_income=mean('income')).collect())"
)


def budget(w: World, cid: str, who: str | dict[str, Any] | None = None) -> dict[str, str]:
    r = w.client.get(f"/v1/contracts/{cid}/budget", headers=w.h(who or w.operator))
    assert r.status_code == 200, r.text
    return r.json()["privacy"]["population"]


def ledger(w: World, kind: str) -> list[dict[str, Any]]:
    entries = w.client.get("/v1/ledger/entries", headers=w.h(w.regulator)).json()["entries"]
    return [e["event"] for e in entries if e["event"]["type"] == kind]


def test_a_private_dataset_releases_noisy_counts_and_spends_the_per_job_epsilon(
    local_world: World, city: Any
) -> None:
    w = local_world
    cid = w.active_contract(privacy=PRIVATE)
    assert budget(w, cid) == {
        "total": "0.5",
        "spent": "0",
        "reserved": "0",
        "remaining": "0.5",
        "per_job_epsilon": "0.2",
    }
    job = w.run(cid, BY_DISTRICT).json()
    assert job["status"] == "succeeded", job
    truth = dict(zip(*_counts(city["population"].table)))
    released = {row[0]: row[1] for row in job["outputs"]["t"]["rows"]}
    assert set(released) == set(truth)
    # ε 0.2 over two aggregates: counts get Laplace noise of scale 1/0.1 = 10. Close, not exact.
    assert all(abs(released[d] - truth[d]) < 300 for d in truth)
    assert any(released[d] != truth[d] for d in truth)
    assert job["usage"]["epsilon_by_dataset"] == {"population": "0.2"}
    assert budget(w, cid) == {
        "total": "0.5",
        "spent": "0.2",
        "reserved": "0",
        "remaining": "0.3",
        "per_job_epsilon": "0.2",
    }
    view = w.client.get(f"/v1/contracts/{cid}", headers=w.h(w.operator)).json()
    assert view["privacy"]["population"]["remaining"] == "0.3"
    # The operator sees that noise was added and with which ε; contributors stay hidden.
    noise = job["disclosure"]["releases"][0]["noise"]
    assert {n["epsilon"] for n in noise} == {"0.1", "0.05"}
    assert all("contributors" not in s for s in job["disclosure"]["releases"][0]["suppressed"])
    assert [e["data"]["epsilon"] for e in ledger(w, "privacy.reserved")] == ["0.2"]
    assert [e["data"]["epsilon"] for e in ledger(w, "privacy.spent")] == ["0.2"]
    assert ledger(w, "privacy.spent")[0]["subject"] == job["id"]


def _counts(table: pa.Table) -> tuple[list[str], list[int]]:
    grouped = table.group_by("district").aggregate([("district", "count")])
    return grouped["district"].to_pylist(), grouped["district_count"].to_pylist()


def test_the_regulator_sees_epsilon_and_scale_of_every_noisy_release(local_world: World) -> None:
    w = local_world
    cid = w.active_contract(privacy=PRIVATE)
    job_id = w.run(cid, BY_DISTRICT).json()["id"]
    full = w.client.get(f"/v1/jobs/{job_id}", headers=w.h(w.regulator)).json()
    noise = full["disclosure"]["releases"][0]["noise"]
    assert [(n["column"], n["quantity"]) for n in noise] == [
        ("n", "count"),
        ("avg_income", "count"),
        ("avg_income", "sum"),
    ]
    assert all(n["rule"] == "differential_privacy" and n["mechanism"] == "laplace" for n in noise)
    assert noise[0]["epsilon"] == "0.1" and noise[0]["scale"] == pytest.approx(10.0)
    assert noise[2]["sensitivity"] == 200_000
    assert noise[2]["scale"] == pytest.approx(200_000 / 0.05)
    assert budget(w, cid, w.regulator)["spent"] == "0.2"


def test_a_job_past_the_budget_is_refused_before_it_runs(local_world: World) -> None:
    w = local_world
    cid = w.active_contract(privacy=PRIVATE)
    code = "emit('n', table('population').agg(n=count()).collect())"
    quote = w.client.post(
        "/v1/quotes", headers=w.h(w.operator), json={"contract_id": cid, "code": code}
    ).json()
    assert quote["bounds"]["epsilon"] == {"population": "0.2"}
    assert quote["bounds"]["collect_sites"] == 1
    assert w.run(cid, code).json()["status"] == "succeeded"
    assert w.run(cid, code).json()["status"] == "succeeded"
    submitted = len(ledger(w, "job.submitted"))
    r = w.run(cid, code)
    assert r.status_code == 429, r.text
    body = r.json()
    assert body["code"] == "privacy_budget_exceeded"
    assert "'population'" in body["error"] and "ε=0.1 left of its 0.5" in body["error"]
    assert '"epsilon": {"population": "0.1"}' in body["error"]
    assert len(ledger(w, "job.submitted")) == submitted  # nothing was admitted
    assert budget(w, cid)["remaining"] == "0.1"
    # Declaring a smaller ε (more noise) fits what is left.
    job = w.run(cid, code, epsilon={"population": "0.1"}).json()
    assert job["status"] == "succeeded", job
    assert budget(w, cid)["remaining"] == "0"


def test_a_job_that_fails_after_its_release_still_spends_epsilon(local_world: World) -> None:
    w = local_world
    cid = w.active_contract(privacy=PRIVATE)
    job = w.run(cid, "r = table('population').agg(n=count()).collect()\nx = 1 / 0").json()
    assert job["status"] == "failed"
    assert budget(w, cid)["spent"] == "0.2"
    # One that fails before any release gives its ε back.
    job = w.run(cid, "x = 1 / 0\nr = table('population').agg(n=count()).collect()").json()
    assert job["status"] == "failed"
    assert budget(w, cid) == {
        "total": "0.5",
        "spent": "0.2",
        "reserved": "0",
        "remaining": "0.3",
        "per_job_epsilon": "0.2",
    }
    assert ledger(w, "privacy.refunded")[-1]["data"]["reason"] == "not used by the job"


def test_a_service_fault_refunds_the_epsilon(
    local_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = local_world
    cid = w.active_contract(privacy=PRIVATE)

    def broken(ctx: Any, spec: Any) -> Any:
        assert spec.epsilon == {"population": "0.2"}  # the driver would have got its ε
        raise RuntimeError("worker lost")

    monkeypatch.setattr(execution, "execute", broken)
    job = w.run(cid, BY_DISTRICT).json()
    assert job["status"] == "failed" and job["error"]["fault"] == "service"
    assert budget(w, cid) == {
        "total": "0.5",
        "spent": "0",
        "reserved": "0",
        "remaining": "0.5",
        "per_job_epsilon": "0.2",
    }
    refund = ledger(w, "privacy.refunded")[-1]
    assert refund["data"] == {
        "contract_id": cid,
        "dataset": "population",
        "epsilon": "0.2",
        "reason": "service fault",
    }


def test_reserved_epsilon_shows_while_a_job_waits_and_comes_back_on_recovery(
    local_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = local_world
    cid = w.active_contract(privacy=PRIVATE)

    monkeypatch.setattr(execution, "dispatch", lambda ctx, job_id: _done())
    job = w.run(cid, BY_DISTRICT).json()
    assert job["status"] == "queued"
    assert budget(w, cid)["reserved"] == "0.2" and budget(w, cid)["remaining"] == "0.3"
    assert settlement.recover_interrupted(w.ctx) == 0  # its process is alive: its job
    # The process that reserved it dies, and its lease with it.
    assert w.ctx.lease is not None
    w.ctx.lease.release()
    w.ctx.lease = None
    assert settlement.recover_interrupted(w.ctx) == 1
    assert budget(w, cid) == {
        "total": "0.5",
        "spent": "0",
        "reserved": "0",
        "remaining": "0.5",
        "per_job_epsilon": "0.2",
    }


def test_a_service_fault_refunds_even_after_a_release(
    local_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = local_world
    cid = w.active_contract(privacy=PRIVATE)
    monkeypatch.setattr(execution, "dispatch", lambda ctx, job_id: _done())
    job_id = w.run(cid, BY_DISTRICT).json()["id"]
    faulted = JobResult(
        JobStatus.FAILED,
        {},
        {"epsilon_by_dataset": {"population": "0.2"}},
        {"releases": []},
        JobError("service_error", "the service failed", fault=Fault.SERVICE),
    )
    settlement.settle_job(w.ctx, job_id, faulted)
    assert budget(w, cid)["spent"] == "0" and budget(w, cid)["remaining"] == "0.5"
    # The same usage without a service fault is charged.
    job_id = w.run(cid, BY_DISTRICT).json()["id"]
    settlement.settle_job(
        w.ctx,
        job_id,
        dataclasses.replace(faulted, error=JobError("job_code_error", "division by zero", 2)),
    )
    assert budget(w, cid)["spent"] == "0.2"


def _done() -> Future[None]:
    done: Future[None] = Future()
    done.set_result(None)
    return done


def test_epsilon_in_a_submission_is_checked(local_world: World) -> None:
    w = local_world
    cid = w.active_contract(privacy=PRIVATE)
    code = "emit('n', table('population').agg(n=count()).collect())"
    for epsilon, message in [
        ({"population": 0.1}, "invalid_request"),
        ({"population": "0.0001"}, "at most 3 decimal places"),
        ({"population": "0.6"}, "privacy_budget_exceeded"),
        ({"enterprises": "0.1"}, "does not analyse"),
    ]:
        r = w.run(cid, code, epsilon=epsilon)
        assert r.status_code in (400, 429), r.text
        assert message in r.text
    assert budget(w, cid)["reserved"] == "0"


def test_an_l4_dataset_is_granted_only_under_differential_privacy(local_world: World) -> None:
    w = local_world
    table = pa.table(
        {
            "resident_id": [f"4399{i:06d}" for i in range(50)],
            "district": ["城关区"] * 50,
            "benefit": [100 * (i % 7) for i in range(50)],
        }
    )
    columns = {
        "resident_id": {"role": "identifier"},
        "district": {"role": "attribute"},
        "benefit": {"role": "sensitive", "lower": 0, "upper": 1000},
    }
    assert w.ingest("低保", table, "L4", columns).status_code == 201
    grants = {"低保": {"district": ["group_by"], "benefit": ["aggregate"]}}
    body = {
        "datasets": grants,
        "purpose": "救助政策评估",
        "purpose_class": "public_interest",
        "valid_from": "2026-01-01T00:00:00Z",
        "valid_to": "2030-01-01T00:00:00Z",
    }
    r = w.client.post("/v1/contracts", json=body, headers=w.h(w.operator))
    assert r.status_code == 400 and r.json()["code"] == "contract_invalid"
    assert "classified L4" in r.json()["error"] and '"privacy"' in r.json()["error"]
    private = {"低保": {"epsilon": "1", "per_job_epsilon": "0.5"}}
    cid = w.active_contract(grants, privacy=private)
    job = w.run(cid, "emit('t', table('低保').agg(n=count(), s=sum('benefit')).collect())")
    # L4 releases are checked by two people before the job's code receives them.
    assert job.json()["status"] == "held", job.text
    assert job.json()["review"]["reasons"] == ["level:L4"]
    review = job.json()["review"]["id"]
    reviewer = w.client.post(
        "/v1/principals", headers=w.h(w.bureau), json={"name": "复核员", "role": "bureau"}
    ).json()
    for who in (w.provider, reviewer):
        r = w.client.post(
            f"/v1/reviews/{review}/decisions", headers=w.h(who), json={"decision": "release"}
        )
        assert r.status_code == 200, r.text
    done = w.wait_for_job(job.json()["id"])
    assert done["status"] == "succeeded", done
    assert done["disclosure"]["releases"][0]["noise"]


def test_a_dataset_with_several_rows_per_person_cannot_be_private(local_world: World) -> None:
    w = local_world
    table = pa.table(
        {
            "resident_id": [f"4399{i // 3:06d}" for i in range(60)],
            "months": [i % 12 for i in range(60)],
        }
    )
    columns = {
        "resident_id": {"role": "identifier"},
        "months": {"role": "attribute", "lower": 0, "upper": 12},
    }
    assert w.ingest("缴费记录", table, "L3", columns).status_code == 201
    r = w.client.post(
        "/v1/contracts",
        headers=w.h(w.operator),
        json={
            "datasets": {"缴费记录": {"months": ["aggregate"]}},
            "purpose": "社保缴费分析",
            "purpose_class": "public_interest",
            "valid_from": "2026-01-01T00:00:00Z",
            "valid_to": "2030-01-01T00:00:00Z",
            "privacy": {"缴费记录": {"epsilon": "1", "per_job_epsilon": "0.1"}},
        },
    )
    assert r.status_code == 400, r.text
    assert "one row per person" in r.json()["error"]


def test_an_idempotent_replay_must_ask_for_the_same_epsilon(local_world: World) -> None:
    w = local_world
    cid = w.active_contract(privacy=PRIVATE)
    code = "emit('n', table('population').agg(n=count()).collect())"
    first = w.run(cid, code, idempotency_key="隐私-1", epsilon={"population": "0.1"})
    assert first.status_code == 201, first.text
    again = w.run(cid, code, idempotency_key="隐私-1", epsilon={"population": "0.1"})
    assert again.json()["id"] == first.json()["id"]
    other = w.run(cid, code, idempotency_key="隐私-1", epsilon={"population": "0.2"})
    assert other.status_code == 409 and "idempotency_key" in other.json()["error"]


def test_the_client_applies_for_privacy_terms_and_sets_epsilon(local_world: World) -> None:
    import datetime as dt

    from conftest import GRANTS

    from operators.client import SandboxClient

    w = local_world
    c = SandboxClient("http://testserver", token=w.operator["token"], http_client=w.client)
    applied = c.apply_contract(
        GRANTS,
        "隐私保护统计",
        "public_interest",
        dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        "2030-01-01T00:00:00Z",
        privacy=PRIVATE,
        disclosure={"min_contributors": 20},
    )
    assert applied["document"]["privacy"]["population"]["per_job_epsilon"] == "0.2"
    assert applied["document"]["disclosure"] == {"min_contributors": 20}


def test_a_private_job_ends_at_a_whole_step_of_time_and_reports_that_step(
    local_world: World,
) -> None:
    """How long the engine worked on private data shows neither in the report nor in when
    the result appears: both are whole steps of `timing_quantum_seconds` from the start."""
    w = local_world
    quantum = w.ctx.settings.timing_quantum_seconds
    assert quantum > 0
    cid = w.active_contract(privacy=PRIVATE)
    started = time.monotonic()
    job = w.run(cid, BY_DISTRICT).json()
    elapsed = time.monotonic() - started
    assert job["status"] == "succeeded", job
    assert elapsed >= quantum  # held to the step, though the work took less
    seconds = Decimal(job["usage"]["compute_seconds"])
    assert seconds > 0 and seconds % Decimal(repr(quantum)) == 0, seconds
