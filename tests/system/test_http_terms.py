"""Contract terms enforced at submission: uses, quotas; and what partial work costs."""

from typing import Any

from conftest import GRANTS, RESIDENTS, World


def _job(w: World, cid: str, code: str) -> Any:
    return w.client.post(
        "/v1/jobs", headers=w.h(w.operator), json={"contract_id": cid, "code": code}
    )


def test_a_use_not_granted_is_refused_at_submission_with_403(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()  # income is granted for aggregate only
    before = w.client.get("/v1/ledger/checkpoint", headers=w.h(w.bureau)).json()["size"]
    r = _job(w, cid, 'emit("t", table("population").group_by("income").agg(n=count()).collect())')
    assert r.status_code == 403, r.text
    body = r.json()
    assert body["code"] == "contract_scope"
    assert "'income'" in body["error"] and "group_by" in body["error"]
    assert "granted uses: aggregate" in body["error"]
    job = w.client.get(f"/v1/jobs/{body['job_id']}", headers=w.h(w.operator)).json()
    assert job["status"] == "rejected" and job["charge"] is None
    events = w.client.get(f"/v1/ledger/entries?start={before}", headers=w.h(w.bureau)).json()[
        "entries"
    ]
    assert [e["event"]["type"] for e in events] == ["job.rejected"]


def test_filter_on_an_aggregate_only_column_is_refused_at_submission(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()
    r = _job(
        w,
        cid,
        't = table("population").filter(col("income") > 5000).agg(n=count())\n'
        'emit("t", t.collect())',
    )
    assert r.status_code == 403 and "for filter" in r.json()["error"]


def test_granted_uses_pass_the_early_check(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()
    r = w.run(
        cid,
        'emit("t", table("population").filter(col("district") == "城关区")'
        '.group_by("gender").agg(m=mean("income")).collect())',
    )
    assert r.status_code == 201 and r.json()["status"] == "succeeded", r.text


def test_jobs_per_day_quota_refuses_the_next_job_with_429(local_world: World) -> None:
    w = local_world
    cid = w.active_contract(quotas={"jobs_per_day": 2})
    code = 'emit("t", table("population").agg(n=count()).collect())'
    assert [w.run(cid, code).status_code for _ in range(2)] == [201, 201]
    r = w.run(cid, code)
    assert r.status_code == 429, r.text
    assert r.json()["code"] == "contract_quota" and "2 job(s) per day" in r.json()["error"]


def test_rows_per_month_quota_counts_the_quoted_scan(local_world: World) -> None:
    w = local_world
    cid = w.active_contract(quotas={"rows_per_month": RESIDENTS * 2})
    one_scan = 'emit("t", table("population").agg(n=count()).collect())'
    two_scans = (
        'a = table("population").agg(n=count()).collect()\n'
        'b = table("population").agg(n=count()).collect()\nemit("n", len(a) + len(b))'
    )
    assert w.run(cid, one_scan).json()["status"] == "succeeded"
    r = w.run(cid, two_scans)  # would need 2 more scans; only 1 is left this month
    assert r.status_code == 429 and r.json()["code"] == "contract_quota", r.text
    assert w.run(cid, one_scan).json()["status"] == "succeeded"


def test_unknown_quota_is_refused_at_application(local_world: World) -> None:
    w = local_world
    r = w.client.post(
        "/v1/contracts",
        headers=w.h(w.operator),
        json={
            "datasets": GRANTS,
            "purpose": "规划",
            "purpose_class": "commercial",
            "valid_from": "2026-01-01T00:00:00Z",
            "valid_to": "2030-01-01T00:00:00Z",
            "quotas": {"queries": 5},
        },
    )
    assert r.status_code == 400 and "unknown quota 'queries'" in r.json()["error"]


def test_a_job_refused_part_way_pays_for_the_scans_it_made(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()
    # One collect() call site is quoted for one scan; the loop asks for three.
    code = (
        "for i in range(3):\n"
        '    r = table("population").agg(n=count()).collect()\n'
        'emit("n", len(r))'
    )
    job = w.run(cid, code).json()
    assert job["status"] == "rejected" and job["error"]["code"] == "quota_exceeded"
    assert job["usage"]["rows_scanned"] == RESIDENTS
    rows = [line for line in job["charge"]["lines"] if line["unit"] == "rows"]
    assert rows and rows[0]["quantity"] == RESIDENTS and rows[0]["amount"] == "0.20"
    assert float(job["charge"]["amount"]) <= float(job["quote"]["amount"])


def test_grouping_by_a_fine_quasi_identifier_is_refused(local_world: World) -> None:
    """Even with every count suppressed, grouping a district by exact birth date would list
    which birth dates occur there. A raw fine-grained quasi-identifier is no group key."""
    w = local_world
    cid = w.active_contract()
    r = _job(
        w,
        cid,
        'emit("t", table("population").filter(col("district") == "北山区")'
        '.group_by("birth_date").agg(n=count()).collect())',
    )
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "disclosure_refused" and "coarsened" in r.json()["error"]


def test_a_fine_quasi_identifier_cannot_be_laundered_through_derive(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()
    r = w.run(
        cid,
        'emit("t", table("population").derive(d=col("birth_date"))'
        '.group_by("d").agg(n=count()).collect())',
    )
    job = r.json()
    assert r.status_code == 201 and job["status"] == "rejected", job
    assert (
        job["error"]["code"] == "disclosure_refused" and "'birth_date'" in job["error"]["message"]
    )


def test_coarsened_quasi_identifiers_and_small_ones_group_fine(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()
    job = w.run(
        cid,
        'emit("t", table("population").derive(y=col("birth_date").year())'
        '.group_by("y", "gender").agg(n=count()).collect())',
    ).json()
    assert job["status"] == "succeeded", job
    genders = {row[1] for row in job["outputs"]["t"]["rows"]}
    assert genders == {"男", "女"}  # gender is a quasi-identifier with 2 values: fine raw


def test_the_catalog_never_shows_distinct_counts(local_world: World) -> None:
    w = local_world
    cols = w.client.get("/v1/datasets/population", headers=w.h(w.operator)).json()["columns"]
    assert all(set(c) <= {"name", "type", "role", "lower", "upper", "description"} for c in cols)
    assert not any("distinct" in c or "unique" in c for c in cols)
