"""The regulator's view: listings of contracts, jobs, releases and usage, exportable as CSV."""

from __future__ import annotations

import csv
import io
from typing import Any

from conftest import World

SMALL = (
    'emit("t", table("population").filter(col("district") == "北山区")'
    '.group_by("hukou_type", "gender").agg(n=count()).collect())'
)
COUNT = 'emit("n", table("population").agg(n=count()).collect())'
ONE_DAY = (
    'emit("t", table("population").filter(col("birth_date") == "1980-04-21")'
    ".agg(n=count()).collect())"
)


def get(w: World, path: str, who: Any) -> Any:
    return w.client.get(path, headers=w.h(who))


def rows_of(response: Any) -> list[dict[str, str]]:
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))


def test_contract_listing_follows_who_may_read_and_carries_history(local_world: World) -> None:
    w = local_world
    mine = w.active_contract()
    theirs = w.active_contract(operator="other_operator")

    def ids(who: dict[str, Any]) -> set[str]:
        return {c["id"] for c in get(w, "/v1/contracts", who).json()["contracts"]}

    assert ids(w.operator) == {mine} and ids(w.other_operator) == {theirs}
    assert ids(w.regulator) == ids(w.bureau) == {mine, theirs} == ids(w.provider)
    listed = get(w, f"/v1/contracts?operator_id={w.operator['id']}", w.regulator).json()
    (c,) = listed["contracts"]
    assert [h["status"] for h in c["history"]][-1] == "active" and len(c["history"]) >= 4
    exported = rows_of(get(w, "/v1/contracts?format=csv", w.regulator))
    assert {r["id"] for r in exported} == {mine, theirs}
    # Terms in columns, with names people read beside the ids.
    first = exported[0]
    assert first["purpose"] == "养老服务设施规划" and first["purpose_class"] == "commercial"
    assert first["operator_name"] == "某数据科技有限公司" and first["departments"] == "市公安局"
    assert first["columns"].startswith("population.birth_date: filter, group_by;")
    assert first["bureau_signed_at"] and first["operator_signed_by"] == "某数据科技有限公司"
    assert get(w, "/v1/contracts?status=suspended", w.regulator).json()["contracts"] == []
    assert get(w, "/v1/contracts?limit=0", w.regulator).status_code == 400


def test_job_listing_shows_code_and_signatures_to_the_regulator_only(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()
    other = w.active_contract(operator="other_operator")
    job = w.run(cid, COUNT).json()
    w.run(other, COUNT, operator="other_operator")
    own = get(w, "/v1/jobs", w.operator).json()["jobs"]
    assert [j["id"] for j in own] == [job["id"]] and "code" not in own[0]
    assert own[0]["outputs"] == ["n"]
    everything = get(w, "/v1/jobs", w.regulator).json()["jobs"]
    assert len(everything) == 2 and all(j["code"] == COUNT for j in everything)
    by_operator = get(w, f"/v1/jobs?operator_id={w.operator['id']}", w.regulator).json()["jobs"]
    assert [j["id"] for j in by_operator] == [job["id"]]
    period = job["finished_at"][:7]
    assert (
        len(get(w, f"/v1/jobs?period={period}&status=succeeded", w.regulator).json()["jobs"]) == 2
    )
    exported = rows_of(get(w, "/v1/jobs?format=csv", w.regulator))
    assert {r["code"] for r in exported} == {COUNT}
    assert get(w, "/v1/jobs", w.bureau).status_code == 403
    assert get(w, "/v1/jobs", w.provider).status_code == 403


def test_releases_report_suppressions_with_contributor_counts(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()
    job = w.run(cid, SMALL).json()
    assert job["status"] == "succeeded" and job["outputs"]["t"]["suppressed"]
    total = w.run(cid, ONE_DAY).json()
    assert total["status"] == "succeeded" and total["outputs"]["t"]["rows"] == [[None]]
    period = job["finished_at"][:7]
    grouped, whole = get(w, f"/v1/releases?period={period}", w.regulator).json()["releases"]
    assert grouped["job_id"] == job["id"] and grouped["dataset"] == "population"
    assert grouped["keys"] == ["hukou_type", "gender"]
    # Its small groups were left out: how many, the regulator sees; their partners are hidden.
    assert grouped["left_out"] >= 1
    assert {s["rule"] for s in grouped["suppressed"]} == {"secondary"}
    # A whole-table cell keeps its row: its contributors are in the regulator's report.
    (primary,) = whole["suppressed"]
    assert primary["rule"] == "min_contributors" and primary["contributors"] < 10
    exported = rows_of(get(w, f"/v1/releases?period={period}&format=csv", w.regulator))
    assert exported[0]["job_id"] == job["id"] and exported[0]["left_out"] == str(
        grouped["left_out"]
    )
    assert "contributors" in exported[1]["suppressed"]
    assert get(w, f"/v1/releases?period={period}", w.operator).status_code == 403


def test_usage_per_operator_adds_up_to_the_jobs(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()
    jobs = [w.run(cid, COUNT).json() for _ in range(2)]
    period = jobs[0]["finished_at"][:7]
    (usage,) = get(w, f"/v1/reports/usage?period={period}", w.bureau).json()["operators"]
    assert usage["operator_id"] == w.operator["id"] and usage["jobs"] == 2
    assert usage["by_status"] == {"succeeded": 2}
    assert usage["rows_scanned"] == sum(j["usage"]["rows_scanned"] for j in jobs)
    assert usage["amount"] == f"{sum(float(j['charge']['amount']) for j in jobs):.2f}"
    exported = rows_of(get(w, f"/v1/reports/usage?period={period}&format=csv", w.regulator))
    assert exported[0]["amount"] == usage["amount"]
    assert get(w, f"/v1/reports/usage?period={period}", w.operator).status_code == 403
    assert get(w, "/v1/reports/usage?period=2026-1", w.regulator).status_code == 400
