"""Detection over HTTP, on the real local Ray: attack patterns raise flags the regulator lists
with the job's code and params; operators never see them; past the score the contract is
suspended and the next submission refused; ordinary jobs raise nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
from conftest import GRANTS, World, make_world

from sandbox.disclosure.detection import SCORES

# Filtering on income is what the attacks below need; the grant is the contract's to give.
INCOME_FILTER = {"population": {**GRANTS["population"], "income": ["aggregate", "filter"]}}
SEARCH = (
    'emit("t", table("population").filter(col("income") > params["t"])'
    '.agg(n=count(), m=mean("income")).collect())'
)
AT_LEAST = (
    'emit("n", table("population").filter(col("income") >= params["t"]).agg(n=count()).collect())'
)
BY_DISTRICT = (
    'emit("t", table("population").group_by("district")'
    '.agg(n=count(), avg_income=mean("income")).collect())'
)
README_EXAMPLE = """pop = table("population")
aged = pop.derive(age=params["year"] - col("birth_date").year()).filter(col("age") >= 60)
res = (aged.derive(age_band=col("age").bucket([60, 70, 80, 90]))
           .group_by("district", "age_band").agg(n=count(), avg_income=mean("income"))
           .collect())                       # a released aggregate: plain values, None where suppressed
emit("residents_60_plus", res)
emit("groups", len(res))
"""
ENVELOPE = {"ok", "status", "code", "error"}


def flags(w: World, query: str = "", who: Any = None) -> Any:
    return w.client.get(f"/v1/flags{query}", headers=w.h(who or w.regulator))


def listed(w: World, query: str = "") -> list[dict[str, Any]]:
    r = flags(w, query)
    assert r.status_code == 200, r.text
    return r.json()["flags"]  # type: ignore[no-any-return]


def ran(w: World, cid: str, code: str, **params: Any) -> dict[str, Any]:
    r = w.run(cid, code, params=params)
    assert r.status_code == 201 and r.json()["status"] == "succeeded", r.text
    return r.json()  # type: ignore[no-any-return]


def top_incomes(city: dict[str, Any]) -> list[int]:
    incomes = city["population"].table.column("income")
    return sorted(set(pc.drop_null(incomes).to_pylist()), reverse=True)


def count_at_least(city: dict[str, Any], t: int) -> int:
    incomes = city["population"].table.column("income")
    return int(pc.sum(pc.greater_equal(incomes, t)).as_py())


def assert_envelope(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == ENVELOPE and body["ok"] is False and body["code"] == code, body
    return body  # type: ignore[no-any-return]


def assert_nothing_of_flags(text: str) -> None:
    """A response an operator receives says nothing of detection."""
    for word in ("flag", "observation", "selected", *SCORES):
        assert word not in text, word


def test_ordinary_jobs_raise_no_flag(world: World) -> None:
    w = world
    cid = w.active_contract()
    ran(w, cid, BY_DISTRICT)
    ran(w, cid, README_EXAMPLE, year=2024)
    ran(
        w,
        cid,
        'emit("t", table("population").filter(col("district") == "北山区")'
        '.group_by("hukou_type", "gender").agg(n=count()).collect())',
    )
    ran(w, cid, BY_DISTRICT)  # asked again: a refresh
    assert listed(w) == []
    contract = w.client.get(f"/v1/contracts/{cid}", headers=w.h(w.operator)).json()
    assert contract["status"] == "active"


def test_the_benchmark_queries_raise_no_flag(world: World, city: dict[str, Any]) -> None:
    """The benchmark's analyses (a filtered group-by, distinct counts, a three-table join,
    quantiles and a histogram) as one operator would run them, each twice."""
    from benchmarks.queries import QUERIES
    from sandbox.catalog.synthetic import generate_city

    w = world
    for name in ("social_insurance", "enterprises"):
        d = city[name]
        assert w.ingest(name, d.table, d.level, d.columns, d.title).status_code == 201
    sample = generate_city(2000, seed=11)["population"]
    assert (
        w.ingest(
            "population_sample", sample.table, sample.level, sample.columns, sample.title
        ).status_code
        == 201
    )
    grants = {
        name: {c: ["group_by", "filter", "aggregate", "join"] for c in cols}
        for name, cols in (
            (
                "population",
                ("resident_id", "district", "gender", "birth_date", "hukou_type", "income"),
            ),
            ("population_sample", ("district", "birth_date", "income")),
            ("social_insurance", ("resident_id", "credit_code", "contribution_base")),
            ("enterprises", ("credit_code", "industry")),
        )
    }
    cid = w.active_contract(grants)
    for query in QUERIES.values():
        for _ in range(2):
            job = w.run(cid, query.code).json()
            assert job["status"] == "succeeded", (
                query.name,
                [(f["pattern"], f["detail"]) for f in listed(w)],
            )
    assert [(f["pattern"], f["detail"]) for f in listed(w)] == []


def test_a_search_and_an_isolating_filter_are_flagged_for_the_regulator_only(
    world: World, city: dict[str, Any]
) -> None:
    w = world
    cid = w.active_contract(INCOME_FILTER)
    sweep = [ran(w, cid, SEARCH, t=t) for t in (1000, 2000, 3000, 4000)]
    top = top_incomes(city)[0]
    assert count_at_least(city, top) == 1
    isolating = ran(w, cid, AT_LEAST, t=top)

    everything = listed(w)
    by_job: dict[str, set[str]] = {}
    for f in everything:
        by_job.setdefault(f["job_id"], set()).add(f["pattern"])
    assert "search" in by_job[sweep[3]["id"]]
    assert all("search" not in by_job.get(j["id"], set()) for j in sweep[:3])
    assert "small_selection" in by_job[isolating["id"]]
    # Newest first, and each names its job with the job's code and params.
    assert [f["created_at"] for f in everything] == sorted(
        (f["created_at"] for f in everything), reverse=True
    )
    (search,) = listed(w, "?pattern=search")
    assert search["job_id"] == sweep[3]["id"] and search["score"] == SCORES["search"]
    assert search["job"]["code"] == SEARCH and search["job"]["params"] == {"t": 4000}
    assert search["operator_id"] == w.operator["id"] and search["contract_id"] == cid
    assert search["detail"]["releases"][0]["distinct_earlier"] == 3
    (small,) = listed(w, "?pattern=small_selection")
    assert small["job"]["params"] == {"t": top}
    assert small["detail"]["releases"][0]["selected"] == [1]
    assert small["reviewed_at"] is None and small["about"]
    # Filters and paging.
    assert listed(w, f"?operator_id={w.other_operator['id']}") == []
    assert len(listed(w, f"?contract_id={cid}&operator_id={w.operator['id']}")) == len(everything)
    assert [f["id"] for f in listed(w, "?limit=1&offset=1")] == [everything[1]["id"]]
    assert "search" in assert_envelope(flags(w, "?pattern=bisection"), 400, "bad_request")["error"]
    assert_envelope(flags(w, "?limit=0"), 400, "bad_request")

    # Operators (and the bureau: flags carry code) are refused; nothing they read shows flags.
    for who in (w.operator, w.other_operator, w.bureau, w.provider):
        body = assert_envelope(flags(w, who=who), 403, "forbidden")
        assert "regulator" in body["error"]
    for job in (*sweep, isolating):
        r = w.client.get(f"/v1/jobs/{job['id']}", headers=w.h(w.operator))
        assert r.status_code == 200
        assert_nothing_of_flags(r.text)
    assert_nothing_of_flags(w.client.get("/v1/jobs", headers=w.h(w.operator)).text)
    assert_nothing_of_flags(w.client.get(f"/v1/contracts/{cid}", headers=w.h(w.operator)).text)
    assert w.client.get("/v1/ledger/entries", headers=w.h(w.operator)).status_code == 403
    review = w.client.post(
        f"/v1/flags/{small['id']}/review", headers=w.h(w.operator), json={"note": "看过了"}
    )
    assert_envelope(review, 403, "forbidden")

    # The regulator reviews, once, with a note; the log records it.
    r = w.client.post(
        f"/v1/flags/{small['id']}/review",
        headers=w.h(w.regulator),
        json={"note": "核实为测试数据，无风险"},
    )
    assert r.status_code == 200, r.text
    assert (
        r.json()["reviewed_by"] == w.regulator["id"]
        and r.json()["note"] == "核实为测试数据，无风险"
    )
    assert small["id"] not in {f["id"] for f in listed(w, "?unreviewed=true")}
    again = w.client.post(
        f"/v1/flags/{small['id']}/review", headers=w.h(w.regulator), json={"note": "再看"}
    )
    assert "unreviewed=true" in assert_envelope(again, 409, "conflict")["error"]
    blank = w.client.post(
        f"/v1/flags/{search['id']}/review", headers=w.h(w.regulator), json={"note": "  "}
    )
    assert "note" in assert_envelope(blank, 400, "bad_request")["error"]
    assert_envelope(
        w.client.post("/v1/flags/999999/review", headers=w.h(w.regulator), json={"note": "x"}),
        404,
        "not_found",
    )
    events = [
        e["event"]
        for e in w.client.get("/v1/ledger/entries", headers=w.h(w.regulator)).json()["entries"]
    ]
    raised = [e for e in events if e["type"] == "flag.raised"]
    assert {f["pattern"] for e in raised for f in e["data"]["flags"]} >= {
        "search",
        "small_selection",
    }
    (reviewed,) = [e for e in events if e["type"] == "flag.reviewed"]
    assert reviewed["actor"] == w.regulator["id"] and reviewed["data"]["flag_id"] == small["id"]


def test_past_the_score_the_contract_is_suspended_and_the_next_job_refused(
    world: World, city: dict[str, Any]
) -> None:
    w = world
    cid = w.active_contract(INCOME_FILTER)
    other = w.active_contract()  # another contract of the same operator stays usable
    incomes = top_incomes(city)
    # A walk down the top incomes, each filter selecting a few people, each wholly suppressed:
    # small_selection (3) each, repeated_suppression (1) from the third: 3 + 3 + 4 = 10.
    thresholds = [incomes[0], incomes[2], incomes[4]]
    assert all(0 < count_at_least(city, t) < 10 for t in thresholds)
    for i, t in enumerate(thresholds):
        status = w.client.get(f"/v1/contracts/{cid}", headers=w.h(w.operator)).json()["status"]
        assert status == "active", (i, status)
        ran(w, cid, AT_LEAST, t=t)
    assert sum(f["score"] for f in listed(w, f"?contract_id={cid}")) >= 10

    contract = w.client.get(f"/v1/contracts/{cid}", headers=w.h(w.operator)).json()
    assert contract["status"] == "suspended"
    assert "regulator" in contract["status_reason"]
    assert_nothing_of_flags(json.dumps(contract, ensure_ascii=False))
    r = w.run(cid, BY_DISTRICT)
    assert "suspended" in assert_envelope(r, 403, "contract_inactive")["error"]
    ran(w, other, BY_DISTRICT)

    # The suspension is logged as a regulator's is, by the service, naming the patterns.
    entries = w.client.get("/v1/ledger/entries", headers=w.h(w.regulator)).json()["entries"]
    (suspended,) = [e["event"] for e in entries if e["event"]["type"] == "contract.suspended"]
    assert suspended["subject"] == cid and suspended["actor"] is None
    assert suspended["data"]["automatic"] is True and suspended["data"]["score"] >= 10
    assert set(suspended["data"]["patterns"]) == {"small_selection", "repeated_suppression"}

    # The regulator reviews every flag, then resumes: jobs run again, with nothing pending.
    for f in listed(w, f"?contract_id={cid}&unreviewed=true"):
        r = w.client.post(
            f"/v1/flags/{f['id']}/review", headers=w.h(w.regulator), json={"note": "已约谈运营单位"}
        )
        assert r.status_code == 200, r.text
    r = w.client.post(
        f"/v1/contracts/{cid}/resume", headers=w.h(w.regulator), json={"reason": "已核查"}
    )
    assert r.status_code == 200 and r.json()["status"] == "active", r.text
    ran(w, cid, BY_DISTRICT)
    assert (
        w.client.get(f"/v1/contracts/{cid}", headers=w.h(w.operator)).json()["status"] == "active"
    )


def test_a_suspend_score_of_zero_only_flags(tmp_path: Path, city: dict[str, Any]) -> None:
    for w in make_world(tmp_path, city, "local", flag_suspend_score=0):
        cid = w.active_contract(INCOME_FILTER)
        for t in top_incomes(city)[:8:2]:
            ran(w, cid, AT_LEAST, t=t)
        assert sum(f["score"] for f in listed(w)) >= 10
        contract = w.client.get(f"/v1/contracts/{cid}", headers=w.h(w.regulator)).json()
        assert contract["status"] == "active"
