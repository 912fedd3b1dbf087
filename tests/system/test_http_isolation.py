"""An operator never sees another operator's contracts, jobs, outputs or bills; the regulator
sees every job in full, the owner sees its own without contributor counts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import World, make_world

SMALL_GROUPS = (
    'rows = table("population").filter(col("district") == "北山区")'
    '.group_by("hukou_type", "gender").agg(n=count()).collect()\n'
    'emit("北山区户籍", rows)\n'
)


def this_month() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m")


@dataclass
class Setup:
    world: World
    contract: str  # the operator's
    job: dict[str, Any]  # the operator's finished job
    other_contract: str  # the other operator's
    other_job: dict[str, Any]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, city: dict[str, Any]) -> Iterator[Setup]:
    for w in make_world(tmp_path_factory.mktemp("isolation"), city, "local"):
        cid = w.active_contract()
        job = w.run(cid, SMALL_GROUPS, params={"备注": "第一批"}).json()
        assert job["status"] == "succeeded", job
        other = w.active_contract(operator="other_operator")
        other_job = w.run(
            other,
            'emit("total", table("population").agg(n=count()).collect())',
            operator="other_operator",
        ).json()
        assert other_job["status"] == "succeeded", other_job
        yield Setup(w, cid, job, other, other_job)


def _assert_hidden(r: Any, *secrets: str) -> None:
    assert r.status_code == 404, r.text
    assert r.json()["code"] == "not_found"
    for secret in secrets:
        assert secret not in r.text


def test_other_operator_cannot_read_job_or_outputs(setup: Setup) -> None:
    w, job = setup.world, setup.job
    other = w.h(w.other_operator)
    _assert_hidden(w.client.get(f"/v1/jobs/{job['id']}", headers=other), "北山区", "本地农村")
    for fmt in ("json", "csv", "parquet"):
        _assert_hidden(
            w.client.get(f"/v1/jobs/{job['id']}/outputs/北山区户籍?format={fmt}", headers=other),
            "本地农村",
        )
    # The same answer as for a job that does not exist: no probing for ids.
    missing = w.client.get("/v1/jobs/j-000000000000", headers=other).json()
    hidden = w.client.get(f"/v1/jobs/{job['id']}", headers=other).json()
    assert missing["code"] == hidden["code"] and missing["status"] == hidden["status"]


def test_other_operator_cannot_read_or_use_contract(setup: Setup) -> None:
    w, cid = setup.world, setup.contract
    other = w.h(w.other_operator)
    _assert_hidden(w.client.get(f"/v1/contracts/{cid}", headers=other), "养老服务设施规划")
    body = {"contract_id": cid, "code": 'emit("n", table("population").agg(n=count()).collect())'}
    _assert_hidden(w.client.post("/v1/quotes", json=body, headers=other))
    before = w.client.get(f"/v1/contracts/{cid}", headers=w.h(w.operator)).json()["spend"]
    _assert_hidden(w.client.post("/v1/jobs?wait=true", json=body, headers=other))
    _assert_hidden(
        w.client.post(f"/v1/contracts/{cid}/sign", json={"signature": "AAAA"}, headers=other)
    )
    after = w.client.get(f"/v1/contracts/{cid}", headers=w.h(w.operator)).json()["spend"]
    assert after == before


def test_provider_of_other_data_cannot_see_contract(setup: Setup) -> None:
    w = setup.world
    r = w.client.post(
        "/v1/principals", headers=w.h(w.bureau), json={"name": "市医保局", "role": "provider"}
    )
    stranger = w.h(r.json()["token"])
    _assert_hidden(w.client.get(f"/v1/contracts/{setup.contract}", headers=stranger))
    _assert_hidden(w.client.get(f"/v1/jobs/{setup.job['id']}", headers=stranger))
    # The provider of the contract's dataset is a party and may read it.
    r = w.client.get(f"/v1/contracts/{setup.contract}", headers=w.h(w.provider))
    assert r.status_code == 200 and r.json()["status"] == "active"


def test_bills_show_an_operator_only_its_own_charges(setup: Setup) -> None:
    w = setup.world
    period = this_month()
    mine = w.client.get(f"/v1/bills?period={period}", headers=w.h(w.operator)).json()
    assert {c["job_id"] for c in mine["charges"]} == {setup.job["id"]}
    assert mine["operator_id"] == w.operator["id"]
    # Asking for another operator's bill still returns one's own.
    r = w.client.get(
        f"/v1/bills?period={period}&operator_id={w.other_operator['id']}", headers=w.h(w.operator)
    )
    assert {c["job_id"] for c in r.json()["charges"]} == {setup.job["id"]}
    theirs = w.client.get(f"/v1/bills?period={period}", headers=w.h(w.other_operator)).json()
    assert {c["job_id"] for c in theirs["charges"]} == {setup.other_job["id"]}
    for overseer in (w.bureau, w.regulator):
        every = w.client.get(f"/v1/bills?period={period}", headers=w.h(overseer)).json()
        assert {c["job_id"] for c in every["charges"]} == {setup.job["id"], setup.other_job["id"]}
        one = w.client.get(
            f"/v1/bills?period={period}&operator_id={w.other_operator['id']}", headers=w.h(overseer)
        ).json()
        assert {c["job_id"] for c in one["charges"]} == {setup.other_job["id"]}


def test_regulator_reads_any_job_in_full(setup: Setup) -> None:
    w = setup.world
    for job in (setup.job, setup.other_job):
        r = w.client.get(f"/v1/jobs/{job['id']}", headers=w.h(w.regulator))
        assert r.status_code == 200, r.text
        full = r.json()
        assert full["outputs"] == job["outputs"]
    full = w.client.get(f"/v1/jobs/{setup.job['id']}", headers=w.h(w.regulator)).json()
    assert full["code"] == SMALL_GROUPS
    assert full["params"] == {"备注": "第一批"}
    (release,) = full["disclosure"]["releases"]
    assert release["suppressed"], "the fixture's job must have a suppressed cell"
    # Its small groups are left out (the regulator is told how many); each line they were
    # in has another cell hidden for them.
    assert release["left_out"] >= 1
    for cell in release["suppressed"]:
        assert cell["rule"] == "secondary" and cell["protects"]
    r = w.client.get(f"/v1/jobs/{setup.job['id']}/outputs/北山区户籍", headers=w.h(w.regulator))
    assert r.status_code == 200 and r.json() == setup.job["outputs"]["北山区户籍"]


def test_owner_sees_disclosure_without_contributor_counts(setup: Setup) -> None:
    w = setup.world
    own = w.client.get(f"/v1/jobs/{setup.job['id']}", headers=w.h(w.operator)).json()
    assert "code" not in own and "params" not in own
    full = w.client.get(f"/v1/jobs/{setup.job['id']}", headers=w.h(w.regulator)).json()
    (mine,), (theirs,) = own["disclosure"]["releases"], full["disclosure"]["releases"]
    assert len(mine["suppressed"]) == len(theirs["suppressed"]) > 0
    for seen, whole in zip(mine["suppressed"], theirs["suppressed"]):
        assert "contributors" not in seen
        assert seen == {k: v for k, v in whole.items() if k != "contributors"}
    assert own["outputs"] == full["outputs"]


def test_bureau_and_providers_do_not_read_jobs(setup: Setup) -> None:
    w = setup.world
    for token in (w.bureau, w.provider["token"]):
        _assert_hidden(w.client.get(f"/v1/jobs/{setup.job['id']}", headers=w.h(token)), "本地农村")
