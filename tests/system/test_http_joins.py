"""Joins over HTTP: the three datasets of the synthetic city joined on the real local Ray equal
DuckDB's join of the same tables; contracts must grant `join` on each key, the joined
identifier stays an identifier, and joins with a differentially private dataset are refused."""

from __future__ import annotations

import math
from typing import Any

from conftest import World
from factories import city_sql

from benchmarks.queries import OUTPUT, Q3

JOIN_GRANTS = {
    "population": {
        "resident_id": ["join"],
        "income": ["aggregate"],
        "district": ["group_by", "filter"],
    },
    "social_insurance": {
        "resident_id": ["join"],
        "credit_code": ["join"],
        "contribution_base": ["aggregate"],
    },
    "enterprises": {"credit_code": ["join"], "industry": ["group_by"]},
}
# L3 population and social insurance, L2 enterprises: cells need the L3 threshold.
THRESHOLD = 10


def _ingest_city(w: World, city: dict[str, Any]) -> None:
    for name in ("social_insurance", "enterprises"):
        ds = city[name]
        r = w.ingest(name, ds.table, ds.level, ds.columns, ds.title)
        assert r.status_code == 201, r.text


def _job(w: World, r: Any) -> dict[str, Any]:
    """The job a submission made, whether it was refused at submission (an error envelope
    naming the job) or ran and was rejected."""
    body = r.json()
    if "status" not in body:
        assert r.status_code in (400, 403), r.text
        body = w.client.get(f"/v1/jobs/{body['job_id']}", headers=w.h(w.operator)).json()
    return body


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    return bool(a == b)


def test_three_datasets_joined_on_ray_equal_duckdb(world: World, city: dict[str, Any]) -> None:
    w = world
    _ingest_city(w, city)
    cid = w.active_contract(JOIN_GRANTS)
    job = w.run(cid, Q3.code).json()
    assert job["status"] == "succeeded", job
    out = job["outputs"][OUTPUT]
    names = [c["name"] for c in out["columns"]]
    assert names == ["industry", "n", "avg_income", "avg_base"]
    expected = {r[0]: r[1:] for r in city_sql(city, Q3.sql)}
    released = {r[0]: r[1:] for r in out["rows"]}
    # A cell counts people in every table read: industries with fewer than 10 firms or
    # fewer than 10 insured residents are left out, the rest are released.
    people = {
        industry: min(firms, residents)
        for industry, firms, residents in city_sql(
            city,
            """SELECT e.industry, count(DISTINCT e.credit_code), count(DISTINCT s.resident_id)
                 FROM social_insurance s JOIN population p ON p.resident_id = s.resident_id
                 JOIN enterprises e ON e.credit_code = s.credit_code GROUP BY e.industry""",
        )
    }
    assert set(released) == {i for i, n in people.items() if n >= 10}
    suppressed = {(int(i), c) for i, c in out["suppressed"]}
    compared = 0
    for i, row in enumerate(out["rows"]):
        for column, ours, theirs in zip(names[1:], row[1:], expected[row[0]]):
            if (i, column) in suppressed:
                assert ours is None
            else:
                assert _close(ours, theirs), (row[0], column, ours, theirs)
                compared += 1
    assert compared >= len(released), "most cells of the synthetic city are large"
    # Each dataset's rows are read once and metered at its own level.
    rows = {n: city[n].table.num_rows for n in ("population", "social_insurance", "enterprises")}
    assert job["usage"]["rows_by_dataset"] == rows
    assert job["usage"]["rows_scanned"] == sum(rows.values())
    assert job["usage"]["rows_by_level"] == {
        "L2": rows["enterprises"],
        "L3": rows["population"] + rows["social_insurance"],
    }


def test_cells_of_a_join_need_the_strictest_threshold_of_its_datasets(
    local_world: World, city: dict[str, Any]
) -> None:
    """Enterprises (L2, threshold 5) joined with social insurance (L3, threshold 10): cells
    count enterprises, and need 10 of them."""
    w = local_world
    _ingest_city(w, city)
    cid = w.active_contract(
        {
            "enterprises": {"credit_code": ["join"], "industry": ["group_by"]},
            "social_insurance": {"credit_code": ["join"], "months_paid": ["filter"]},
        }
    )
    code = (
        'firms = table("enterprises").select("credit_code", "industry")\n'
        'long = table("social_insurance").filter(col("months_paid") >= 400)'
        '.select("credit_code")\n'
        'emit("t", firms.join(long, on="credit_code").group_by("industry")'
        ".agg(n=count()).collect())\n"
    )
    job = w.run(cid, code).json()
    assert job["status"] == "succeeded", job
    # The cell's people: the firms, and the insured residents their rows come from.
    expected = {
        industry: (n, min(firms, residents))
        for industry, n, firms, residents in city_sql(
            city,
            """
        SELECT e.industry, count(*), count(DISTINCT e.credit_code), count(DISTINCT s.resident_id)
        FROM enterprises e JOIN social_insurance s ON s.credit_code = e.credit_code
        WHERE s.months_paid >= 400 GROUP BY e.industry""",
        )
    }
    out = job["outputs"]["t"]
    released = {r[0]: r[1] for r in out["rows"]}
    assert any(p < THRESHOLD for _, p in expected.values()), "the data must have a small cell"
    assert any(p >= THRESHOLD for _, p in expected.values()), "… and a large one"
    # Small cells (fewer than 10 of either kind of person) are left out, the rest released.
    assert set(released) == {i for i, (_, p) in expected.items() if p >= THRESHOLD}
    for industry, n in released.items():
        assert n is None or n == expected[industry][0]


def test_a_join_key_the_contract_does_not_grant_for_join_is_refused(
    local_world: World, city: dict[str, Any]
) -> None:
    w = local_world
    _ingest_city(w, city)
    grants = {**JOIN_GRANTS, "enterprises": {"credit_code": ["filter"], "industry": ["group_by"]}}
    cid = w.active_contract(grants)
    # social_insurance grants join on credit_code, so only the run-time plan check, which
    # knows the key is read from enterprises too, can refuse it.
    job = _job(w, w.run(cid, Q3.code))
    assert job["status"] == "rejected", job
    assert job["error"]["code"] == "contract_scope"
    message = job["error"]["message"]
    assert "'credit_code'" in message and "join" in message and "'enterprises'" in message
    assert job["usage"]["rows_scanned"] == 0


def test_a_join_key_no_dataset_grants_for_join_is_refused_at_submission(
    local_world: World, city: dict[str, Any]
) -> None:
    w = local_world
    _ingest_city(w, city)
    grants = {
        **JOIN_GRANTS,
        "population": {"resident_id": ["filter"], "income": ["aggregate"]},
        "social_insurance": {
            "resident_id": ["filter"],
            "credit_code": ["join"],
            "contribution_base": ["aggregate"],
        },
    }
    cid = w.active_contract(grants)
    r = w.run(cid, Q3.code)
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "contract_scope"
    assert "'resident_id'" in r.json()["error"] and "join" in r.json()["error"]


def test_the_joined_identifier_cannot_be_grouped_by(
    local_world: World, city: dict[str, Any]
) -> None:
    w = local_world
    _ingest_city(w, city)
    grants = {
        "population": {"resident_id": ["join", "group_by"], "income": ["aggregate"]},
        "social_insurance": {"resident_id": ["join", "group_by"]},
    }
    cid = w.active_contract(grants)
    code = (
        'people = table("population").select("resident_id", "income")\n'
        'insured = table("social_insurance").select("resident_id")\n'
        'j = insured.join(people, on="resident_id").derive(who=col("resident_id"))\n'
        'emit("t", j.group_by("who").agg(n=count()).collect())\n'
    )
    job = _job(w, w.run(cid, code))
    assert job["status"] == "rejected", job
    assert job["error"]["code"] == "disclosure_refused"
    assert "'resident_id'" in job["error"]["message"]
    assert "identifier" in job["error"]["message"]
    assert job["outputs"] == {}


def test_a_join_with_a_differentially_private_dataset_is_refused(
    local_world: World, city: dict[str, Any]
) -> None:
    w = local_world
    _ingest_city(w, city)
    cid = w.active_contract(
        JOIN_GRANTS, privacy={"population": {"epsilon": "0.5", "per_job_epsilon": "0.2"}}
    )
    job = _job(w, w.run(cid, Q3.code))
    assert job["status"] == "rejected", job
    assert job["error"]["code"] == "disclosure_refused"
    assert "differential privacy" in job["error"]["message"]
    assert "'population'" in job["error"]["message"] and "join()" in job["error"]["message"]


def test_an_ambiguous_join_explains_how_to_fix_it(local_world: World, city: dict[str, Any]) -> None:
    w = local_world
    _ingest_city(w, city)
    cid = w.active_contract(
        {"enterprises": {"district": ["join"]}, "population": {"district": ["join"]}}
    )
    # Both tables have a column 'name'; it must be dropped or renamed on one side first.
    job = _job(
        w,
        w.run(
            cid,
            'emit("t", table("enterprises").join(table("population"), '
            'on="district").agg(n=count()).collect())\n',
        ),
    )
    assert job["status"] == "rejected", job
    message = job["error"]["message"]
    assert "'name'" in message and "both tables" in message and "select()" in message
