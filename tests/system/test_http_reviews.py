"""Output review over HTTP: a flagged release is held until reviewers release or refuse it;
the job's code never receives a held release before then, nor a refused one ever."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pyarrow as pa
import pytest
from conftest import World

from sandbox.pipeline import settlement
from sandbox.records import principals, reviews
from sandbox.records.principals import Actor
from sandbox.store.models import OutputReview

TWO_COLLECTS = (
    "a = table('population').group_by('district').agg(n=count()).collect()\n"
    "b = table('population').group_by('gender').agg(n=count()).collect()\n"
    "emit('by_district', a)\n"
    "emit('by_gender', b)\n"
)
REVIEWED = {"outputs": True}


def ledger(w: World, kind: str) -> list[dict[str, Any]]:
    entries = w.client.get("/v1/ledger/entries", headers=w.h(w.regulator)).json()["entries"]
    return [e["event"] for e in entries if e["event"]["type"] == kind]


def decide(w: World, who: Any, review_id: str, decision: str, reason: str | None = None) -> Any:
    body: dict[str, Any] = {"decision": decision}
    if reason is not None:
        body["reason"] = reason
    return w.client.post(f"/v1/reviews/{review_id}/decisions", headers=w.h(who), json=body)


def pending_review(w: World, job_id: str) -> dict[str, Any]:
    listed = w.client.get("/v1/reviews?status=pending", headers=w.h(w.bureau)).json()["reviews"]
    (review,) = [r for r in listed if r["job_id"] == job_id]
    return review


def second_reviewer(w: World) -> dict[str, Any]:
    r = w.client.post(
        "/v1/principals", headers=w.h(w.bureau), json={"name": "数据局复核员", "role": "bureau"}
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


@pytest.fixture
def two(tmp_path: Any, city: dict[str, Any]) -> Any:
    """An instance whose reviewed releases need two reviewers."""
    from conftest import make_world

    yield from make_world(tmp_path, city, "local", reviewers=2)


def test_a_held_release_is_released_by_two_reviewers_and_the_job_finishes(
    two: World, city: Any
) -> None:
    w = two
    cid = w.active_contract(review=REVIEWED)
    submitted = w.run(cid, TWO_COLLECTS).json()
    job = w.wait_for_job(submitted["id"])
    assert job["status"] == "held", job
    assert job["outputs"] == {} and job["charge"] is None
    assert job["review"]["reasons"] == ["contract"] and job["review"]["required"] == 2
    assert job["review"]["release_index"] == 0 and job["waited_seconds"] >= 0
    assert job["held_since"]
    review = pending_review(w, job["id"])
    assert "held" not in review  # the queue lists; the review's page shows the table
    full = w.client.get(f"/v1/reviews/{review['id']}", headers=w.h(w.provider)).json()
    truth = dict(Counter(city["population"].table["district"].to_pylist()))
    assert {row[0]: row[1] for row in full["held"]["rows"]} == truth
    assert full["can_decide"] is True

    r = decide(w, w.bureau, review["id"], "release", "聚合到区，无个体信息")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "pending" and r.json()["can_decide"] is False
    again = decide(w, w.bureau, review["id"], "release")
    assert again.status_code == 409 and again.json()["code"] == "conflict"
    assert "2 different reviewers" in again.json()["error"]
    assert w.wait_for_job(job["id"])["status"] == "held"

    r = decide(w, second_reviewer(w), review["id"], "release")
    assert r.status_code == 200 and r.json()["status"] == "released", r.text
    # Resumed: the first collect is replayed, the second is new and held in its turn.
    job = w.wait_for_job(job["id"])
    assert job["status"] == "held" and job["review"]["release_index"] == 1, job
    second = pending_review(w, job["id"])
    assert decide(w, w.provider, second["id"], "release").status_code == 200
    assert decide(w, w.bureau, second["id"], "release").json()["status"] == "released"

    job = w.wait_for_job(job["id"])
    assert job["status"] == "succeeded", job
    released = {row[0]: row[1] for row in job["outputs"]["by_district"]["rows"]}
    assert released == truth
    assert job["outputs"]["by_gender"]["rows"]
    rows = city["population"].table.num_rows
    # Each read counted once, whatever the runs: two collects of the whole table.
    assert job["usage"]["rows_scanned"] == 2 * rows and job["usage"]["collects"] == 2
    assert [r["index"] for r in job["disclosure"]["releases"]] == [0, 1]
    assert float(job["charge"]["amount"]) > 0
    assert [e["data"]["release_index"] for e in ledger(w, "job.held")] == [0, 1]
    assert [e["data"]["decision"] for e in ledger(w, "output.reviewed")] == ["release"] * 4
    assert len(ledger(w, "output.released")) == 2
    assert len(ledger(w, "job.succeeded")) == 1


def test_a_refused_release_fails_the_job_and_its_body_is_gone(local_world: World) -> None:
    w = local_world
    cid = w.active_contract(review=REVIEWED)
    job = w.wait_for_job(w.run(cid, TWO_COLLECTS).json()["id"])
    assert job["status"] == "held"
    review = pending_review(w, job["id"])
    no_reason = decide(w, w.provider, review["id"], "refuse")
    assert no_reason.status_code == 400 and no_reason.json()["code"] == "bad_request"
    r = decide(w, w.provider, review["id"], "refuse", "分组过细，存在识别风险")
    assert r.status_code == 200 and r.json()["status"] == "refused", r.text
    assert r.json()["held"] is None
    job = w.wait_for_job(job["id"])
    assert job["status"] == "failed" and job["error"]["code"] == "output_refused", job
    assert "分组过细，存在识别风险" in job["error"]["message"]
    assert job["outputs"] == {}
    assert job["review"]["status"] == "refused"
    # Charged for what it read (one scan), like a job refused part-way.
    assert job["usage"]["rows_scanned"] > 0 and job["usage"]["outputs"] == 0
    assert float(job["charge"]["amount"]) > 0
    with w.ctx.reading() as s:
        row = s.get(OutputReview, review["id"])
        assert row is not None and row.state is None
        assert row.held is not None and "body" not in row.held and "plan" not in row.held
    assert decide(w, w.bureau, review["id"], "release").status_code == 409
    assert [e["data"]["decision"] for e in ledger(w, "output.reviewed")] == ["refuse"]
    assert len(ledger(w, "output.refused")) == 1 and len(ledger(w, "job.failed")) == 1


def test_operators_cannot_list_or_read_reviews(local_world: World) -> None:
    w = local_world
    cid = w.active_contract(review=REVIEWED)
    job = w.wait_for_job(w.run(cid, TWO_COLLECTS).json()["id"])
    review = pending_review(w, job["id"])
    listed = w.client.get("/v1/reviews", headers=w.h(w.operator))
    assert listed.status_code == 403 and listed.json()["ok"] is False
    for who in (w.operator, w.other_operator):
        r = w.client.get(f"/v1/reviews/{review['id']}", headers=w.h(who))
        assert r.status_code == 403 and r.json()["code"] == "forbidden"
        d = decide(w, who, review["id"], "release")
        assert d.status_code == 403 and set(d.json()) == {"ok", "status", "code", "error"}
    # The regulator reads everything, and decides nothing.
    seen = w.client.get(f"/v1/reviews/{review['id']}", headers=w.h(w.regulator)).json()
    assert seen["held"]["rows"] and seen["can_decide"] is False
    assert decide(w, w.regulator, review["id"], "release").status_code == 403
    # The other operator does not learn of the job either.
    other = w.client.get(f"/v1/jobs/{job['id']}", headers=w.h(w.other_operator))
    assert other.status_code == 404


def test_a_department_reviews_only_releases_of_its_own_data(local_world: World) -> None:
    w = local_world
    cid = w.active_contract(review=REVIEWED)
    job = w.wait_for_job(w.run(cid, TWO_COLLECTS).json()["id"])
    review = pending_review(w, job["id"])
    stranger = w.client.post(
        "/v1/principals", headers=w.h(w.bureau), json={"name": "市人社局", "role": "provider"}
    ).json()
    assert w.client.get("/v1/reviews", headers=w.h(stranger)).json()["reviews"] == []
    assert w.client.get(f"/v1/reviews/{review['id']}", headers=w.h(stranger)).status_code == 404
    assert decide(w, stranger, review["id"], "release").status_code == 404
    mine = w.client.get("/v1/reviews", headers=w.h(w.provider)).json()["reviews"]
    assert [r["id"] for r in mine] == [review["id"]]


def test_a_resumed_job_whose_code_changes_its_plans_fails_cleanly(local_world: World) -> None:
    w = local_world
    cid = w.active_contract(review=REVIEWED)
    # The plan depends on how many times the job has run: the second run asks for another.
    code = "a = table('population').group_by('district').agg(n=count()).collect()\nemit('a', a)\n"
    job = w.wait_for_job(w.run(cid, code).json()["id"])
    review = pending_review(w, job["id"])
    with w.ctx.transaction() as s:
        row = s.get(OutputReview, review["id"])
        assert row is not None and row.held is not None
        row.held = {**row.held, "plan": "0" * 64}
    assert decide(w, w.bureau, review["id"], "release").json()["status"] == "released"
    job = w.wait_for_job(job["id"])
    assert job["status"] == "failed" and job["error"]["code"] == "replay_mismatch", job
    assert "repeat its earlier plans" in job["error"]["message"]
    assert job["outputs"] == {}


def test_epsilon_is_spent_once_across_the_runs_of_a_held_l4_job(local_world: World) -> None:
    w = local_world
    table = pa.table(
        {
            "resident_id": [f"4399{i:06d}" for i in range(400)],
            "district": ["城关区", "湖滨区"] * 200,
            "benefit": [100 * (i % 7) for i in range(400)],
        }
    )
    columns = {
        "resident_id": {"role": "identifier"},
        "district": {"role": "attribute"},
        "benefit": {"role": "sensitive", "lower": 0, "upper": 1000},
    }
    assert w.ingest("低保", table, "L4", columns).status_code == 201
    grants = {"低保": {"district": ["group_by"], "benefit": ["aggregate"]}}
    cid = w.active_contract(grants, privacy={"低保": {"epsilon": "1", "per_job_epsilon": "0.4"}})
    code = (
        "a = table('低保').agg(n=count()).collect()\n"
        "b = table('低保').group_by('district').agg(s=sum('benefit')).collect()\n"
        "emit('a', a)\n"
        "emit('b', b)\n"
    )
    job = w.wait_for_job(w.run(cid, code).json()["id"])
    reviewer = second_reviewer(w)
    for index in (0, 1):
        assert job["status"] == "held" and job["review"]["release_index"] == index, job
        assert job["review"]["reasons"] == ["level:L4"] and job["review"]["required"] == 2
        for who in (w.provider, reviewer):
            assert decide(w, who, job["review"]["id"], "release").status_code == 200
        job = w.wait_for_job(job["id"])
    assert job["status"] == "succeeded", job
    # Two collects of ε 0.2 each: the first, replayed in the second run, is not spent again.
    assert job["usage"]["epsilon_by_dataset"] == {"低保": "0.4"}
    budget = w.client.get(f"/v1/contracts/{cid}/budget", headers=w.h(w.operator)).json()
    assert budget["privacy"]["低保"]["spent"] == "0.4"
    assert budget["privacy"]["低保"]["reserved"] == "0"
    assert [e["data"]["epsilon"] for e in ledger(w, "privacy.spent")] == ["0.4"]
    assert job["usage"]["rows_scanned"] == 2 * 400


def test_a_refusal_interrupted_before_its_job_ended_is_finished_by_recovery(
    local_world: World,
) -> None:
    w = local_world
    cid = w.active_contract(review=REVIEWED)
    job = w.wait_for_job(w.run(cid, TWO_COLLECTS).json()["id"])
    review = pending_review(w, job["id"])
    # The decision is recorded; the process stops before the job is settled.
    with w.ctx.transaction() as s:
        reviews.decide(s, actor_of(w, w.provider), review["id"], "refuse", "不宜公开")
    assert w.wait_for_job(job["id"])["status"] == "held"
    settlement.recover_interrupted(w.ctx)
    job = w.wait_for_job(job["id"])
    assert job["status"] == "failed" and job["error"]["code"] == "output_refused"
    with w.ctx.reading() as s:
        row = s.get(OutputReview, review["id"])
        assert row is not None and row.state is None and "body" not in (row.held or {})
    assert len(ledger(w, "output.cleared")) == 1


def actor_of(w: World, who: dict[str, Any]) -> Actor:
    return principals.authenticate(w.ctx, who["token"])


def test_on_ray_a_held_job_resumes_and_finishes(world: World, city: Any) -> None:
    w = world
    cid = w.active_contract(review=REVIEWED)
    code = "emit('a', table('population').group_by('district').agg(n=count()).collect())\n"
    job = w.wait_for_job(w.run(cid, code).json()["id"], timeout=120)
    assert job["status"] == "held", job
    assert decide(w, w.bureau, job["review"]["id"], "release").json()["status"] == "released"
    job = w.wait_for_job(job["id"], timeout=120)
    assert job["status"] == "succeeded", job
    truth = dict(Counter(city["population"].table["district"].to_pylist()))
    assert {row[0]: row[1] for row in job["outputs"]["a"]["rows"]} == truth
    assert job["usage"]["rows_scanned"] == city["population"].table.num_rows


@pytest.fixture
def sized(tmp_path: Any, city: dict[str, Any]) -> Any:
    """An instance that holds releases of more than three cells, whatever their level."""
    from conftest import make_world

    yield from make_world(tmp_path, city, "local", review_levels="", review_max_cells=3)


def test_the_size_rule_holds_only_tables_above_its_limit(sized: World) -> None:
    w = sized
    cid = w.active_contract()
    small = w.run(cid, "emit('n', table('population').agg(n=count()).collect())").json()
    assert small["status"] == "succeeded", small
    assert "review" not in small
    big = w.wait_for_job(w.run(cid, TWO_COLLECTS).json()["id"])
    assert big["status"] == "held" and big["review"]["reasons"] == ["cells"], big
    assert big["review"]["required"] == 1
