"""Prices over HTTP: quotes bound charges, charges follow the published schedule, public-interest
use is metered but free, bills add up, the spend cap holds, schedules are versioned."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from conftest import SCHEDULE, World

COUNT_CODE = 'emit("n", table("population").agg(n=count()).collect())'
JOBS = {
    "count": COUNT_CODE,
    "grouped": 'emit("t", table("population").group_by("district").agg(n=count(), '
    'avg=mean("income")).collect())',
    "two scans and a scalar": 'a = table("population").agg(n=count()).collect()\n'
    'b = table("population").filter(col("gender") == "女")'
    ".agg(n=count()).collect()\n"
    'emit("a", a)\nemit("b", b)\nemit("share", 0.5)\n',
    "no data": 'emit("x", 1)',
    "fails after a scan": 'a = table("population").agg(n=count()).collect()\nx = 1 / 0\n',
    "collects in a loop": 'for d in ["城关区", "湖滨区"]:\n'
    '    emit(d, table("population").filter(col("district") == d)'
    ".agg(n=count()).collect())\n",
}
FEN = Decimal("0.01")


def money(text: str) -> Decimal:
    return Decimal(text)


def fen(amount: Decimal) -> Decimal:
    return amount.quantize(FEN, rounding=ROUND_HALF_UP)


def item(unit: str, level: str | None = None) -> dict[str, Any]:
    return next(i for i in SCHEDULE["items"] if i["unit"] == unit and i.get("level") == level)


def expected_amount(unit: str, quantity: Any, level: str | None = None) -> Decimal:
    it = item(unit, level)
    return fen(Decimal(str(quantity)) * Decimal(it["price"]) / it.get("per", 1))


def lines(charge: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        (ln["unit"] + (":" + ln["level"] if "level" in ln else "")): ln for ln in charge["lines"]
    }


def this_month() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m")


def spend(w: World, cid: str) -> dict[str, int]:
    return w.client.get(f"/v1/contracts/{cid}", headers=w.h(w.operator)).json()["spend"]


def quote(w: World, cid: str, code: str) -> dict[str, Any]:
    r = w.client.post(
        "/v1/quotes", json={"contract_id": cid, "code": code}, headers=w.h(w.operator)
    )
    assert r.status_code == 200, r.text
    return r.json()["quote"]


def test_quote_bounds_charge_for_every_job(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()
    for what, code in JOBS.items():
        quoted = quote(w, cid, code)
        job = w.run(cid, code).json()
        assert job["status"] in ("succeeded", "failed", "rejected"), (what, job)
        assert job["quote"] == quoted, what
        assert money(job["charge"]["amount"]) <= money(quoted["amount"]), what
        assert money(job["charge"]["list_amount"]) <= money(quoted["list_amount"]), what
        q = lines(quoted)
        for key, line in lines(job["charge"]).items():
            assert money(line["amount"]) <= money(q[key]["amount"]), (what, key)
    assert spend(w, cid)["reserved_fen"] == 0


def test_commercial_charge_follows_the_schedule(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()
    rows = w.client.get("/v1/datasets/population", headers=w.h(w.operator)).json()["row_count"]
    job = w.run(cid, JOBS["two scans and a scalar"]).json()
    assert job["status"] == "succeeded", job
    got = lines(job["charge"])
    assert set(got) == {"call", "rows:L3", "compute_seconds", "output"}
    assert got["call"]["quantity"] == 1
    assert money(got["call"]["amount"]) == expected_amount("call", 1)
    assert got["rows:L3"]["quantity"] == 2 * rows == job["usage"]["rows_scanned"]
    assert money(got["rows:L3"]["amount"]) == expected_amount("rows", 2 * rows, "L3")
    assert got["output"]["quantity"] == 3
    assert money(got["output"]["amount"]) == expected_amount("output", 3)
    seconds = got["compute_seconds"]["quantity"]
    assert seconds == job["usage"]["compute_seconds"] and Decimal(seconds) > 0
    assert money(got["compute_seconds"]["amount"]) == expected_amount("compute_seconds", seconds)
    for line in got.values():
        assert line["amount"] == line["list_amount"]
    assert money(job["charge"]["amount"]) == sum(money(ln["amount"]) for ln in got.values())
    assert job["charge"]["currency"] == "CNY"
    # The quote priced the bound: every row scanned, the wall-clock limit, each emit site.
    q = lines(job["quote"])
    assert q["rows:L3"]["quantity"] == 2 * rows and q["output"]["quantity"] == 3
    assert Decimal(q["compute_seconds"]["quantity"]) == Decimal(
        str(w.ctx.settings.job_wall_seconds)
    )


def test_rows_are_priced_by_level(local_world: World, city: Any) -> None:
    w = local_world
    ent = city["enterprises"]
    assert w.ingest("enterprises", ent.table, "L2", ent.columns).status_code == 201
    small = ent.table.slice(0, 50)
    assert w.ingest("open_list", small, "L1", ent.columns).status_code == 201
    cid = w.active_contract(
        {"enterprises": {"industry": ["group_by"]}, "open_list": {"industry": ["group_by"]}}
    )
    job = w.run(
        cid,
        'a = table("enterprises").agg(n=count()).collect()\n'
        'b = table("open_list").agg(n=count()).collect()\nemit("a", a)\n',
    ).json()
    assert job["status"] == "succeeded", job
    got = lines(job["charge"])
    assert got["rows:L2"]["quantity"] == ent.table.num_rows
    assert money(got["rows:L2"]["amount"]) == expected_amount("rows", ent.table.num_rows, "L2")
    assert "rows:L1" not in got  # the schedule prices no L1 rows: they are free
    assert job["usage"]["rows_by_level"] == {"L1": 50, "L2": ent.table.num_rows}


def test_public_interest_is_metered_but_free(local_world: World) -> None:
    w = local_world
    cid = w.active_contract(purpose_class="public_interest")
    quoted = quote(w, cid, COUNT_CODE)
    assert money(quoted["amount"]) == 0 and money(quoted["list_amount"]) > 0
    job = w.run(cid, COUNT_CODE).json()
    charge = job["charge"]
    assert money(charge["amount"]) == 0
    assert money(charge["list_amount"]) >= expected_amount("call", 1) > 0
    for line in charge["lines"]:
        assert money(line["amount"]) == 0
    assert money(lines(charge)["call"]["list_amount"]) == expected_amount("call", 1)
    assert spend(w, cid) == {"reserved_fen": 0, "spent_fen": 0}
    bill = w.client.get(f"/v1/bills?period={this_month()}", headers=w.h(w.operator)).json()
    assert bill["total"] == "0.00"
    assert money(bill["list_total"]) == money(charge["list_amount"])


def test_bills_add_up_by_period_and_operator(local_world: World) -> None:
    w = local_world
    mine, theirs = w.active_contract(), w.active_contract(operator="other_operator")
    jobs = [w.run(mine, code).json() for code in (COUNT_CODE, JOBS["grouped"], JOBS["no data"])]
    other = w.run(theirs, COUNT_CODE, operator="other_operator").json()
    period = this_month()
    bill = w.client.get(f"/v1/bills?period={period}", headers=w.h(w.operator)).json()
    assert bill["period"] == period and bill["currency"] == "CNY"
    assert [c["job_id"] for c in bill["charges"]] == [j["id"] for j in jobs]
    for charge, job in zip(bill["charges"], jobs):
        assert charge["amount"] == job["charge"]["amount"]
        assert money(charge["amount"]) == sum(money(ln["amount"]) for ln in charge["lines"])
    assert money(bill["total"]) == sum(
        money(ln["amount"]) for c in bill["charges"] for ln in c["lines"]
    )
    assert money(bill["total"]) == sum(money(j["charge"]["amount"]) for j in jobs)
    assert money(bill["list_total"]) == sum(money(c["list_amount"]) for c in bill["charges"])
    assert spend(w, mine)["spent_fen"] == int(money(bill["total"]) * 100)

    every = w.client.get(f"/v1/bills?period={period}", headers=w.h(w.regulator)).json()
    assert money(every["total"]) == money(bill["total"]) + money(other["charge"]["amount"])
    assert len(every["charges"]) == 4
    for empty in ("2020-01", "2099-12"):
        old = w.client.get(f"/v1/bills?period={empty}", headers=w.h(w.bureau)).json()
        assert old["charges"] == [] and old["total"] == "0.00"
    for bad in ("2026-1", "2026/01", "26-01", "2026-00"):
        r = w.client.get(f"/v1/bills?period={bad}", headers=w.h(w.operator))
        assert r.status_code == 400 and "YYYY-MM" in r.json()["error"]


def test_spend_cap_refuses_the_job_beyond_it(local_world: World) -> None:
    w = local_world
    per_job = money(quote(w, w.active_contract(), COUNT_CODE)["amount"])
    allowed = 3
    cid = w.active_contract(spend_cap=str(per_job * allowed))
    for _ in range(allowed):
        assert w.run(cid, COUNT_CODE).json()["status"] == "succeeded"
    before = spend(w, cid)
    assert before["reserved_fen"] == 0
    left = per_job * allowed - Decimal(before["spent_fen"]) / 100
    assert left < per_job, "the cap must now be too small for one more quote"
    submitted = sum(
        e["event"]["type"] == "job.submitted"
        for e in w.client.get("/v1/ledger/entries", headers=w.h(w.regulator)).json()["entries"]
    )

    r = w.client.post(
        "/v1/jobs?wait=true", json={"contract_id": cid, "code": COUNT_CODE}, headers=w.h(w.operator)
    )
    assert r.status_code == 429, r.text
    err = r.json()
    assert err["code"] == "quota_exceeded" and "job_id" not in err
    for amount in (per_job, left, per_job * allowed):  # quote, what is left, the cap
        assert f"{amount:.2f}" in err["error"], (amount, err)
    assert spend(w, cid) == before
    entries = w.client.get("/v1/ledger/entries", headers=w.h(w.regulator)).json()["entries"]
    assert sum(e["event"]["type"] == "job.submitted" for e in entries) == submitted


def test_current_schedule_is_the_latest_in_force(local_world: World) -> None:
    w = local_world
    first = w.client.get("/v1/price-schedules/current").json()
    assert first["name"] == SCHEDULE["name"] and first["items"][0] == item("call")
    now = dt.datetime.now(dt.UTC)
    cid = w.active_contract()
    old_job = w.run(cid, COUNT_CODE).json()

    newer = {
        **SCHEDULE,
        "name": "2026 调价",
        "items": [{"unit": "call", "price": "3.00"}],
        "effective_from": (now - dt.timedelta(days=1)).isoformat(),
    }
    r = w.client.post("/v1/price-schedules", json=newer, headers=w.h(w.bureau))
    assert r.status_code == 201, r.text
    published = r.json()
    future = {
        **SCHEDULE,
        "name": "明年标准",
        "items": [{"unit": "call", "price": "9.00"}],
        "effective_from": (now + dt.timedelta(days=365)).isoformat(),
    }
    assert (
        w.client.post("/v1/price-schedules", json=future, headers=w.h(w.bureau)).status_code == 201
    )

    current = w.client.get("/v1/price-schedules/current").json()
    assert current["id"] == published["id"] != first["id"]
    assert current["name"] == "2026 调价" and current["items"] == [
        {"unit": "call", "price": "3.00"}
    ]
    assert current["effective_from"].endswith("Z")
    q = quote(w, cid, COUNT_CODE)
    assert [(ln["unit"], ln["amount"]) for ln in q["lines"]] == [("call", "3.00")]
    # Jobs already billed keep the prices they were quoted at.
    again = w.client.get(f"/v1/jobs/{old_job['id']}", headers=w.h(w.operator)).json()
    assert again["charge"] == old_job["charge"]
    assert lines(again["charge"])["call"]["amount"] == "2.00"


@pytest.mark.parametrize(
    "items,needle",
    [
        (
            [{"unit": "call", "price": "2.00"}, {"unit": "minutes", "price": "1.00"}],
            "items[1].unit",
        ),
        ([{"unit": "call", "price": 2.0}], "items[0].price"),
        ([{"unit": "call", "price": "-1.00"}], "items[0].price"),
        ([{"unit": "call", "price": "0.001"}], "items[0].price"),
        (
            [{"unit": "call", "price": "2.00"}, {"unit": "rows", "price": "0.1", "per": 0}],
            "items[1].per",
        ),
        ([{"unit": "call", "price": "2.00", "level": "L3"}], "items[0].level"),
        ([{"unit": "call", "price": "2.00"}, {"unit": "call", "price": "3.00"}], "items[1]"),
        ([{"unit": "output"}], "items[0].price"),
        ([], "items"),
    ],
)
def test_invalid_schedule_is_refused_naming_the_item(
    local_world: World, items: list[Any], needle: str
) -> None:
    w = local_world
    before = w.client.get("/v1/price-schedules/current").json()
    r = w.client.post(
        "/v1/price-schedules", json={**SCHEDULE, "items": items}, headers=w.h(w.bureau)
    )
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "invalid_price_schedule"
    assert r.json()["error"].startswith(needle), r.json()["error"]
    assert w.client.get("/v1/price-schedules/current").json() == before


@pytest.mark.parametrize(
    "body,needle",
    [
        ({**SCHEDULE, "effective_from": "2026-01-01T00:00:00"}, "effective_from"),
        ({**SCHEDULE, "effective_from": "下个月"}, "effective_from"),
        ({**SCHEDULE, "name": " "}, "name"),
        ({**SCHEDULE, "currency": "USD"}, "currency"),
    ],
)
def test_invalid_schedule_fields_are_named(
    local_world: World, body: dict[str, Any], needle: str
) -> None:
    r = local_world.client.post(
        "/v1/price-schedules", json=body, headers=local_world.h(local_world.bureau)
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith(needle)
