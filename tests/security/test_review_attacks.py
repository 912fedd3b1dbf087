"""Attacks on output review: job code that tries to get something out of a release held for
review, or refused by its reviewers. The job's process is killed the moment a release is
held, so nothing it could catch, print, emit or spin on ever depends on the held values.

Each attack runs the same code against two datasets that differ only in one value of the held
release, and asserts that everything the operator observes is the same: the job's status,
error, outputs, disclosure report, usage, charge; before the reviewers decide and after they
refuse."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pytest
from conftest import World, make_world

COLUMNS = {
    "resident_id": {"role": "identifier"},
    "district": {"role": "attribute"},
    "income": {"role": "sensitive", "lower": 0, "upper": 100_000},
}
GRANTS = {
    name: {"district": ["group_by", "filter"], "income": ["aggregate"]} for name in ("甲", "乙")
}
# Both datasets hold the same people; one person's income differs.
ROWS = 200

ATTACKS = {
    "catch and emit": (
        "try:\n"
        "    r = table(params['ds']).group_by('district').agg(s=sum('income')).collect()\n"
        "except:\n"
        "    emit('caught', 1)\n"
        "emit('total', r)\n"
    ),
    "catch, print and spin": (
        "print('before')\n"
        "try:\n"
        "    r = table(params['ds']).agg(s=sum('income')).collect()\n"
        "    print(r.column('s')[0])\n"
        "    if r.column('s')[0] > 7000000:\n"
        "        while True:\n"
        "            pass\n"
        "except:\n"
        "    print('caught')\n"
        "    while True:\n"
        "        pass\n"
    ),
    "branch on the value": (
        "r = table(params['ds']).agg(s=sum('income')).collect()\n"
        "if r.column('s')[0] > 7000000:\n"
        "    emit('big', 1)\n"
        "    t = table(params['ds']).group_by('district').agg(n=count()).collect()\n"
        "else:\n"
        "    emit('small', 1)\n"
    ),
}

# What differs between any two jobs whatever they saw: ids, times, which dataset was named.
UNOBSERVED = {"id", "created_at", "finished_at", "held_since", "waited_seconds", "versions"}


@pytest.fixture
def world(tmp_path: Any, city: dict[str, Any]) -> Any:
    yield from make_world(tmp_path, city, "local", timing_quantum_seconds=1.0)


def dataset(secret: int) -> pa.Table:
    return pa.table(
        {
            "resident_id": [f"4399{i:06d}" for i in range(ROWS)],
            "district": ["城关区", "湖滨区"] * (ROWS // 2),
            "income": [secret if i == 0 else 30_000 for i in range(ROWS)],
        }
    )


def observed(w: World, job_id: str) -> dict[str, Any]:
    job = w.wait_for_job(job_id)
    seen = {k: v for k, v in job.items() if k not in UNOBSERVED}
    review = dict(seen.pop("review", None) or {})
    review.pop("id", None)
    for decision in review.get("decisions", []):
        decision.pop("at", None)
    # Which dataset the job named is the one difference the operator chose.
    text = json.dumps({**seen, "review": review, "params": None}, ensure_ascii=False)
    return json.loads(text.replace('"乙"', '"甲"'))  # type: ignore[no-any-return]


def held_review(w: World, job_id: str) -> str:
    return str(w.client.get(f"/v1/jobs/{job_id}", headers=w.h(w.operator)).json()["review"]["id"])


def refuse(w: World, job_id: str) -> None:
    review = w.client.get(f"/v1/jobs/{job_id}", headers=w.h(w.operator)).json()["review"]
    r = w.client.post(
        f"/v1/reviews/{review['id']}/decisions",
        headers=w.h(w.provider),
        json={"decision": "refuse", "reason": "不宜公开"},
    )
    assert r.status_code == 200 and r.json()["status"] == "refused", r.text


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_nothing_of_a_held_or_refused_release_reaches_the_operator(
    world: World, attack: str
) -> None:
    w = world
    assert w.ingest("甲", dataset(30_000), "L3", COLUMNS).status_code == 201
    assert w.ingest("乙", dataset(2_000_000), "L3", COLUMNS).status_code == 201
    cid = w.active_contract(GRANTS, review={"outputs": True})
    jobs = {ds: w.run(cid, ATTACKS[attack], params={"ds": ds}).json()["id"] for ds in ("甲", "乙")}
    held = {ds: observed(w, job) for ds, job in jobs.items()}
    assert held["甲"]["status"] == "held", held["甲"]
    assert held["甲"]["outputs"] == {} and held["甲"]["error"] is None
    assert held["甲"] == held["乙"]
    # … although what was held differs, as its reviewers see.
    bodies = [
        w.client.get(f"/v1/reviews/{held_review(w, job)}", headers=w.h(w.bureau)).json()["held"]
        for job in jobs.values()
    ]
    assert bodies[0] != bodies[1]
    for job in jobs.values():
        refuse(w, job)
    ended = {ds: observed(w, job) for ds, job in jobs.items()}
    assert ended["甲"]["status"] == "failed", ended["甲"]
    assert ended["甲"]["error"]["code"] == "output_refused"
    assert ended["甲"]["outputs"] == {}
    assert ended["甲"]["usage"]["rows_scanned"] == ROWS
    for key in sorted(set(ended["甲"]) | set(ended["乙"])):
        assert ended["甲"].get(key) == ended["乙"].get(key), key
    listed = w.client.get("/v1/jobs", headers=w.h(w.operator)).json()["jobs"]
    assert all(j["outputs"] == [] for j in listed)


def test_a_released_job_runs_its_code_again_and_only_then_sees_the_value(world: World) -> None:
    """The other side: once released, the code runs on with the released table."""
    w = world
    assert w.ingest("甲", dataset(2_000_000), "L3", COLUMNS).status_code == 201
    cid = w.active_contract({"甲": GRANTS["甲"]}, review={"outputs": True})
    job = w.run(cid, ATTACKS["branch on the value"], params={"ds": "甲"}).json()["id"]
    review = w.client.get(f"/v1/jobs/{job}", headers=w.h(w.operator)).json()["review"]
    r = w.client.post(
        f"/v1/reviews/{review['id']}/decisions",
        headers=w.h(w.bureau),
        json={"decision": "release"},
    )
    assert r.json()["status"] == "released", r.text
    # The second collect, chosen from the released value, is held in its turn.
    after = w.wait_for_job(job)
    assert after["status"] == "held", after["error"]
    assert after["review"]["release_index"] == 1
    assert after["outputs"] == {}
