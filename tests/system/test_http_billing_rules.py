"""Price rules end to end: caps, tiered monthly volume, per-dataset multipliers, the revenue
report against the maximum allowed revenue, and the README's worked example."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

from conftest import RESIDENTS, World
from sqlalchemy import select

from sandbox.store.models import Job

# The README's worked example: tiered rows, no time-based fee, so every amount is exact.
WORKED = {
    "name": "示例收费标准",
    "effective_from": "2026-01-02T00:00:00Z",
    "items": [
        {"unit": "call", "price": "2.00"},
        {
            "unit": "rows",
            "per": 10000,
            "level": "L3",
            "tiers": [{"up_to": 30000, "price": "0.10"}, {"up_to": None, "price": "0.05"}],
        },
        {"unit": "output", "price": "0.50"},
    ],
}
ONE_SCAN = 'emit("n", table("population").agg(n=count()).collect())'
TWO_SCANS = (
    'a = table("population").group_by("district").agg(n=count()).collect()\n'
    'b = table("population").group_by("gender").agg(n=count()).collect()\n'
    'emit("by_district", a)\nemit("by_gender", b)'
)
CAPS = {
    "name": "2026 上限收费标准",
    "effective_from": "2026-01-01T00:00:00Z",
    "items": [
        {"unit": "call", "max_price": "3.00"},
        {"unit": "rows", "per": 10000, "max_price": "0.12", "level": "L3"},
    ],
}


def publish(w: World, schedule: dict[str, Any]) -> Any:
    return w.client.post("/v1/price-schedules", json=schedule, headers=w.h(w.bureau))


def lines(job: dict[str, Any], unit: str) -> list[dict[str, Any]]:
    return [line for line in job["charge"]["lines"] if line["unit"] == unit]


def test_the_readme_worked_example(local_world: World) -> None:
    w = local_world
    assert RESIDENTS == 20_000
    assert publish(w, WORKED).status_code == 201
    cid = w.active_contract()
    jobs = [w.run(cid, code).json() for code in (ONE_SCAN, ONE_SCAN, TWO_SCANS)]
    assert [j["status"] for j in jobs] == ["succeeded"] * 3
    assert [j["charge"]["amount"] for j in jobs] == ["2.70", "2.65", "3.20"]
    # Job 2 straddles the 30 000-row tier boundary: 10 000 rows at 0.10, 10 000 at 0.05.
    assert [
        (line.get("tier"), line["quantity"], line["amount"]) for line in lines(jobs[1], "rows")
    ] == [(0, 10000, "0.10"), (1, 10000, "0.05")]
    assert all(Decimal(j["charge"]["amount"]) <= Decimal(j["quote"]["amount"]) for j in jobs)
    period = jobs[0]["finished_at"][:7]
    bill = w.client.get(f"/v1/bills?period={period}", headers=w.h(w.operator)).json()
    assert bill["total"] == "8.55"
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    example = readme[readme.index("## Worked example") :]
    for amount in ("2.70", "2.65", "3.20", "8.55"):
        assert amount in example


def test_a_schedule_above_the_caps_is_refused_naming_the_item(local_world: World) -> None:
    w = local_world
    assert w.client.post("/v1/price-caps", json=CAPS, headers=w.h(w.bureau)).status_code == 201
    assert w.client.get("/v1/price-caps/current").json()["name"] == "2026 上限收费标准"
    over = {
        **WORKED,
        "items": [
            {"unit": "call", "price": "2.00"},
            {"unit": "rows", "per": 10000, "price": "0.13", "level": "L3"},
        ],
    }
    r = publish(w, over)
    assert r.status_code == 400 and r.json()["code"] == "price_above_cap"
    assert "items[1]" in r.json()["error"] and "0.12" in r.json()["error"]
    at_cap = {
        **over,
        "items": [
            {"unit": "call", "price": "3.00"},
            {"unit": "rows", "per": 10000, "price": "0.12", "level": "L3"},
        ],
    }
    assert publish(w, at_cap).status_code == 201


def test_caps_below_the_schedule_in_force_are_refused(local_world: World) -> None:
    w = local_world
    low = {**CAPS, "items": [{"unit": "call", "max_price": "1.00"}]}
    r = w.client.post("/v1/price-caps", json=low, headers=w.h(w.bureau))
    assert r.status_code == 409 and "publish a schedule within them first" in r.json()["error"]
    assert w.client.get("/v1/price-caps/current").status_code == 404


def test_per_dataset_multipliers_scale_the_rows_line(local_world: World) -> None:
    w = local_world
    schedule = {
        **WORKED,
        "multipliers": {"population": "1.50"},
        "items": [{"unit": "rows", "per": 10000, "price": "0.10", "level": "L3"}],
    }
    assert publish(w, schedule).status_code == 201
    job = w.run(w.active_contract(), ONE_SCAN).json()
    (rows,) = lines(job, "rows")
    assert rows["dataset"] == "population" and rows["amount"] == "0.30"  # 2 × 0.10 × 1.5


def _age_job(w: World, job_id: str, months: int) -> None:
    """Move a finished job into an earlier month (time travel for the report's chain)."""
    with w.ctx.transaction() as s:
        job = s.scalar(select(Job).where(Job.id == job_id))
        assert job is not None and job.finished_at is not None
        job.finished_at = job.finished_at - dt.timedelta(days=31 * months)


def _period(finished_at: str, months_back: int = 0) -> str:
    moment = dt.datetime.fromisoformat(finished_at.replace("Z", "+00:00"))
    moment -= dt.timedelta(days=31 * months_back)
    return moment.astimezone(dt.timezone(dt.timedelta(hours=8))).strftime("%Y-%m")


def test_revenue_report_with_allowed_revenue_and_carry_forward(local_world: World) -> None:
    w = local_world
    assert publish(w, WORKED).status_code == 201
    commercial = w.active_contract()
    public = w.active_contract(purpose_class="public_interest")
    earlier = w.run(commercial, ONE_SCAN).json()  # 2.70, moved to last month
    _age_job(w, earlier["id"], 1)
    now_jobs = [w.run(commercial, ONE_SCAN).json(), w.run(public, ONE_SCAN).json()]
    last, this = _period(earlier["finished_at"], 1), _period(now_jobs[0]["finished_at"])
    h = w.h(w.bureau)
    assert (
        w.client.put(f"/v1/revenue/allowed/{last}", json={"amount": "2.00"}, headers=h).status_code
        == 200
    )
    assert (
        w.client.put(f"/v1/revenue/allowed/{this}", json={"amount": "10.00"}, headers=h).status_code
        == 200
    )
    old = w.client.get(f"/v1/reports/revenue?period={last}", headers=w.h(w.regulator)).json()
    assert old["revenue"] == "2.70" and old["excess"] == "0.70" and old["carry_forward"] == "0.70"
    new = w.client.get(f"/v1/reports/revenue?period={this}", headers=w.h(w.regulator)).json()
    assert new["carried_deduction"] == "0.70" and new["effective_allowed"] == "9.30"
    assert new["revenue"] == now_jobs[0]["charge"]["amount"]
    assert (
        Decimal(new["public_interest_list_value"])
        == Decimal(now_jobs[1]["charge"]["list_amount"])
        > 0
    )
    assert sum(Decimal(o["amount"]) for o in new["by_operator"]) == Decimal(new["revenue"])
    assert sum(Decimal(u["amount"]) for u in new["by_unit"]) == Decimal(new["revenue"])
    assert {d["dataset"] for d in new["by_dataset"]} == {"population", None}
    r = w.client.get(f"/v1/reports/revenue?period={this}", headers=w.h(w.operator))
    assert r.status_code == 403


def test_allowed_revenue_is_validated(local_world: World) -> None:
    w = local_world
    r = w.client.put("/v1/revenue/allowed/2026-13", json={"amount": "1.00"}, headers=w.h(w.bureau))
    assert r.status_code == 400 and "YYYY-MM" in r.json()["error"]
    r = w.client.put("/v1/revenue/allowed/2026-11", json={"amount": "1.001"}, headers=w.h(w.bureau))
    assert r.status_code == 400 and re.search("2 decimal places", r.json()["error"])


def test_prepaid_balance_reserves_quotes_and_is_debited_by_charges(local_world: World) -> None:
    w = local_world
    assert publish(w, WORKED).status_code == 201
    cid = w.active_contract()
    op = w.operator["id"]
    assert w.client.get(f"/v1/prepaid/{op}", headers=w.h(w.operator)).status_code == 404
    r = w.client.post(f"/v1/prepaid/{op}/top-ups", json={"amount": "5.00"}, headers=w.h(w.bureau))
    assert r.status_code == 201 and r.json()["available"] == "5.00"
    quote = w.client.post(
        "/v1/quotes", headers=w.h(w.operator), json={"contract_id": cid, "code": ONE_SCAN}
    ).json()["quote"]["amount"]
    assert quote == "2.70"
    first = w.run(cid, ONE_SCAN).json()
    assert first["status"] == "succeeded"
    account = w.client.get(f"/v1/prepaid/{op}", headers=w.h(w.operator)).json()
    assert account == {
        "operator_id": op,
        "balance": "2.30",
        "reserved": "0.00",
        "available": "2.30",
    }
    refused = w.run(cid, ONE_SCAN)  # quoted 2.65 now (tier 2 starts), above 2.30 available
    assert refused.status_code == 429 and "prepaid balance" in refused.json()["error"]
    assert w.client.get(f"/v1/prepaid/{op}", headers=w.h(w.other_operator)).status_code == 404
    assert w.client.get(f"/v1/prepaid/{op}", headers=w.h(w.regulator)).json()["balance"] == "2.30"
    r = w.client.post(f"/v1/prepaid/{op}/top-ups", json={"amount": "-1"}, headers=w.h(w.bureau))
    assert r.status_code == 400
    r = w.client.post(f"/v1/prepaid/{op}/top-ups", json={"amount": "1.00"}, headers=w.h(w.operator))
    assert r.status_code == 403


def test_a_job_is_billed_at_the_schedule_in_force_when_it_was_quoted(local_world: World) -> None:
    w = local_world
    assert publish(w, WORKED).status_code == 201
    cid = w.active_contract()
    slow = "x = 0\nfor i in range(1500000):\n    x += 1\n" + ONE_SCAN
    r = w.client.post("/v1/jobs", headers=w.h(w.operator), json={"contract_id": cid, "code": slow})
    assert r.status_code == 201 and r.json()["status"] in ("queued", "running")
    dearer = {
        **WORKED,
        "name": "调价后",
        "effective_from": "2026-01-03T00:00:00Z",
        "items": [{"unit": "call", "price": "9.00"}],
    }
    assert publish(w, dearer).status_code == 201
    deadline = dt.datetime.now() + dt.timedelta(seconds=60)
    job = r.json()
    while job["status"] in ("queued", "running") and dt.datetime.now() < deadline:
        job = w.client.get(f"/v1/jobs/{job['id']}", headers=w.h(w.operator)).json()
    assert job["status"] == "succeeded", job
    assert job["charge"]["amount"] == "2.70"  # the old schedule, not the 9.00 call fee
    assert w.run(cid, ONE_SCAN).json()["charge"]["amount"] == "9.00"


def test_the_csv_statement_lines_sum_to_its_total(local_world: World) -> None:
    import csv
    import io

    w = local_world
    assert publish(w, WORKED).status_code == 201
    cid = w.active_contract()
    jobs = [w.run(cid, code).json() for code in (ONE_SCAN, TWO_SCANS)]
    period = jobs[0]["finished_at"][:7]
    r = w.client.get(f"/v1/bills?period={period}&format=csv", headers=w.h(w.operator))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    body, total = rows[:-1], rows[-1]
    assert total["job_id"] == "total"
    assert sum(Decimal(x["amount"]) for x in body) == Decimal(total["amount"]) == Decimal("5.95")
    assert {x["job_id"] for x in body} == {j["id"] for j in jobs}


def test_a_mistake_before_any_data_is_read_costs_nothing(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()
    # A method the language does not have is found in the source: refused before it runs.
    typo = 'res = table("population").group_by("district").order_by("n")\nemit("x", res)'
    r = w.run(cid, typo)
    assert r.status_code == 400 and r.json()["code"] == "code_rejected", r.text
    assert r.json()["line"] == 1 and "'order_by'" in r.json()["error"]
    # A mistake found only when it runs, but before any collect(): failed, and free.
    early = 'x = [1][5]\nemit("n", table("population").agg(n=count()).collect())'
    job = w.run(cid, early).json()
    assert job["status"] == "failed" and job["error"]["line"] == 1, job
    assert job["usage"]["rows_scanned"] == 0
    assert job["charge"] is None or Decimal(job["charge"]["amount"]) == 0
    # The same mistake after a collect() has read the data is a use of it, and pays for it.
    late = 'n = table("population").agg(n=count()).collect()\nx = [1][5]'
    job = w.run(cid, late).json()
    assert job["status"] == "failed"
    assert job["usage"]["rows_scanned"] == RESIDENTS
    assert Decimal(job["charge"]["amount"]) > 0
    with w.ctx.reading() as s:
        spent = s.scalars(select(Job.charge_fen).where(Job.contract_id == cid)).all()
    assert sorted(spent) == [0, 0, int(Decimal(job["charge"]["amount"]) * 100)]


def test_the_bureau_may_leave_a_wholly_suppressed_result_uncharged(
    tmp_path: Path, city: dict[str, Any]
) -> None:
    from conftest import make_world

    for charged in (True, False):
        for w in make_world(tmp_path / str(charged), city, "local", charge_all_suppressed=charged):
            cid = w.active_contract()
            # The very oldest of the smallest district: too few to show.
            tiny = (
                'r = table("population").filter((col("birth_date") < "1935-01-01")'
                ' & (col("district") == "北山区")).agg(n=count()).collect()\n'
                'emit("r", r)'
            )
            job = w.run(cid, tiny).json()
            assert job["status"] == "succeeded", job["error"]
            cells = job["outputs"]["r"]
            assert cells["rows"] and len(cells["suppressed"]) == len(cells["rows"]), cells
            paid = Decimal(job["charge"]["amount"])
            assert (paid > 0) is charged
            # A result with something to show is charged whatever the setting.
            shown = w.run(cid, ONE_SCAN).json()
            assert Decimal(shown["charge"]["amount"]) > 0
