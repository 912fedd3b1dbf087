"""Data products over HTTP, on SQLite and PostgreSQL: the bureau's cap per scenario, an
operator's product priced at or below it (with a trial price for a while), customers'
keys, calls that run as the operator's jobs with every check (params, disclosure), the
operator billed under the bureau's schedule, suspension, the public list, the revenue
report by scenario and the departments' statistics."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal
from typing import Any

import pytest
from conftest import GRANTS, World
from products_helpers import approved_template, call, issue_key, publish, set_cap

from sandbox.common import clock

ENVELOPE = {"ok", "status", "code", "error"}


def refused(r: Any, status: int, code: str, *words: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert ENVELOPE <= set(body) and body["ok"] is False and body["code"] == code, body
    for word in words:
        assert word in body["error"], (word, body["error"])
    return body


def product(w: World, price: str = "4.00", **body: Any) -> dict[str, Any]:
    assert set_cap(w, "普惠金融", "5.00", "面向小微企业的信贷服务").status_code == 200
    cid = w.active_contract()
    r = publish(w, cid, approved_template(w), price=price, **body)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def period() -> str:
    return clock.now().strftime("%Y-%m")


def test_caps_are_set_by_the_bureau_logged_with_history_and_public(local_world: World) -> None:
    w = local_world
    refused(set_cap(w, "普惠金融", "-1"), 400, "invalid_product_price")
    r = w.client.put(
        "/v1/product-caps/普惠金融", json={"max_price": "5.00"}, headers=w.h(w.operator)
    )
    refused(r, 403, "forbidden", "bureau")
    assert set_cap(w, "普惠金融", "5.00", "信贷").json()["max_price"] == "5.00"
    changed = set_cap(w, "普惠金融", "3.50", "信贷").json()
    assert [h["max_price"] for h in changed["history"]] == ["5.00", "3.50"]
    caps = w.client.get("/v1/product-caps").json()["caps"]  # no token
    assert [(c["scenario"], c["max_price"]) for c in caps] == [("普惠金融", "3.50")]
    entries = w.client.get("/v1/ledger/entries", headers=w.h(w.regulator)).json()["entries"]
    kinds = [e["event"]["type"] for e in entries]
    assert kinds.count("product_cap.set") == 2


def test_a_price_above_the_cap_is_refused_with_the_cap_and_one_at_the_cap_accepted(
    local_world: World,
) -> None:
    w = local_world
    assert set_cap(w, "普惠金融", "5.00").status_code == 200
    cid = w.active_contract()
    template = approved_template(w)
    refused(publish(w, cid, template, price="5.01"), 400, "price_above_cap", "普惠金融", "5.00")
    refused(
        publish(w, cid, template, price="1.00", scenario="交通出行"), 400, "invalid_product_price"
    )
    refused(
        publish(w, cid, template, price="1.00", purpose_class="public_interest"),
        400,
        "bad_request",
        "commercial",
    )
    r = publish(w, cid, template, price="5.00")
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["price"], body["cap"], body["price_now"], body["status"]) == (
        "5.00",
        "5.00",
        "5.00",
        "active",
    )
    assert body["operator_name"] == w.operator["name"] and body["purpose_class"] == "commercial"
    # Someone else's template or contract is not the operator's to sell.
    other = approved_template(w, operator=w.other_operator)
    refused(publish(w, cid, other), 404, "not_found")


def test_a_trial_price_applies_before_trial_until_and_the_regular_price_after(
    local_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = local_world
    until = clock.now() + dt.timedelta(days=10)
    p = product(w, trial_price="1.50", trial_until=clock.text(until))
    key = issue_key(w, p["id"])["key"]
    assert p["price_now"] == "1.50"
    first = call(w, p["id"], key, 区="北山区")
    assert first.status_code == 200, first.text
    assert first.json()["price"] == "1.50"
    later = until + dt.timedelta(seconds=1)
    monkeypatch.setattr(clock, "now", lambda: later)
    second = call(w, p["id"], key, 区="城关区")
    assert second.status_code == 200, second.text
    assert second.json()["price"] == "4.00"
    listed = w.client.get("/v1/products", headers=w.h(w.operator)).json()["products"]
    assert [(x["calls"], x["charged_calls"], x["revenue"]) for x in listed] == [(2, 2, "5.50")]


def test_a_call_runs_as_the_operators_job_billed_under_the_schedule(local_world: World) -> None:
    w = local_world
    p = product(w)
    issued = issue_key(w, p["id"])
    assert issued["key"].startswith("pk_") and issued["customer"] == "某城商行"
    # The key is shown once: listings hold no key.
    keys = w.client.get(f"/v1/products/{p['id']}/keys", headers=w.h(w.operator)).json()["keys"]
    assert [k["id"] for k in keys] == [issued["id"]] and keys[0].get("key") is None
    r = call(w, p["id"], issued["key"], 区="北山区")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "succeeded" and body["price"] == "4.00" and body["charged"]
    out = body["outputs"]["户籍性别"]
    assert [c["name"] for c in out["columns"]] == ["hukou_type", "gender", "n"]
    # Small groups stay hidden as in the job: suppressed cells null and listed.
    for row, column in out["suppressed"]:
        assert out["rows"][row][[c["name"] for c in out["columns"]].index(column)] is None
    # Nothing of the operator's: no code, contract, bill or disclosure details.
    for private in ("code", "contract_id", "charge", "quote", "usage", "disclosure", "params"):
        assert private not in body
    # The operator's job: its origin, and charged under the bureau's schedule.
    job = w.client.get(f"/v1/jobs/{body['id']}", headers=w.h(w.operator)).json()
    assert job["origin"]["product_id"] == p["id"] and job["status"] == "succeeded"
    assert job["origin"]["price"] == "4.00"
    assert Decimal(job["charge"]["amount"]) > 0
    bill = w.client.get(f"/v1/bills?period={period()}", headers=w.h(w.operator)).json()
    assert body["id"] in [c["job_id"] for c in bill["charges"]]
    # The customer reads the call again with its key.
    again = w.client.get(
        f"/v1/products/{p['id']}/calls/{body['id']}", headers={"X-Product-Key": issued["key"]}
    )
    assert again.status_code == 200 and again.json()["outputs"] == body["outputs"]


def test_params_outside_the_schema_are_refused_and_nothing_is_charged(local_world: World) -> None:
    w = local_world
    p = product(w)
    key = issue_key(w, p["id"])["key"]
    refused(call(w, p["id"], key, 区="火星区"), 400, "params_invalid", "区")
    refused(call(w, p["id"], key, 区="北山区", 档次=9), 400, "params_invalid", "档次")
    refused(call(w, p["id"], key, 区="北山区", code="x"), 400, "params_invalid")
    jobs = w.client.get("/v1/jobs", headers=w.h(w.operator)).json()["jobs"]
    assert jobs == []
    listed = w.client.get(f"/v1/products/{p['id']}", headers=w.h(w.operator)).json()
    assert (listed["calls"], listed["revenue"]) == (0, "0.00")


def test_a_call_the_disclosure_rules_refuse_is_answered_with_the_jobs_code(
    local_world: World,
) -> None:
    w = local_world
    assert set_cap(w, "人口研究", "2.00").status_code == 200
    grants = {"population": {**GRANTS["population"], "name": ["group_by", "join"]}}
    cid = w.active_contract(grants)
    code = 'emit("t", table("population").group_by("name").agg(n=count()).collect())\n'
    template = approved_template(w, code=code, schema={})
    r = publish(w, cid, template, scenario="人口研究", price="2.00")
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    key = issue_key(w, pid)["key"]
    body = refused(call(w, pid, key), 403, "disclosure_refused", "identifier")
    job = w.client.get(f"/v1/jobs/{body['job_id']}", headers=w.h(w.operator)).json()
    assert job["error"]["code"] == "disclosure_refused" and job["outputs"] == {}
    listed = w.client.get(f"/v1/products/{pid}", headers=w.h(w.operator)).json()
    assert (listed["calls"], listed["charged_calls"], listed["revenue"]) == (1, 0, "0.00")


def test_keys_unknown_revoked_or_for_another_product_are_refused(local_world: World) -> None:
    w = local_world
    p = product(w)
    issued = issue_key(w, p["id"])
    refused(call(w, p["id"], "pk_nope", 区="北山区"), 401, "unauthenticated")
    r = w.client.post(f"/v1/products/{p['id']}/calls", json={"params": {"区": "北山区"}})
    refused(r, 401, "unauthenticated", "X-Product-Key")
    # A principal's token is not a product key.
    r = w.client.post(
        f"/v1/products/{p['id']}/calls", json={"params": {"区": "北山区"}}, headers=w.h(w.operator)
    )
    refused(r, 401, "unauthenticated")
    second = publish(w, p["contract_id"], (p["template_id"], 1), name="第二个产品").json()
    refused(call(w, second["id"], issued["key"], 区="北山区"), 403, "forbidden", p["id"])
    revoked = w.client.post(
        f"/v1/products/{p['id']}/keys/{issued['id']}/revoke", headers=w.h(w.operator)
    )
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    refused(call(w, p["id"], issued["key"], 区="北山区"), 401, "unauthenticated", "revoked")
    # Another operator neither sees the product nor issues keys for it.
    r = w.client.post(
        f"/v1/products/{p['id']}/keys", json={"customer": "x"}, headers=w.h(w.other_operator)
    )
    refused(r, 404, "not_found")


def test_a_suspended_product_refuses_calls_and_leaves_the_public_list(local_world: World) -> None:
    w = local_world
    p = product(w)
    key = issue_key(w, p["id"])["key"]
    public = w.client.get("/v1/public/products").json()["scenarios"]
    assert [(g["scenario"], [x["name"] for x in g["products"]]) for g in public] == [
        ("普惠金融", ["小微企业户籍结构"])
    ]
    shown = public[0]["products"][0]
    assert shown["operator_name"] == w.operator["name"] and shown["price"] == "4.00"
    assert "contract_id" not in shown and "template_id" not in shown
    r = w.client.post(
        f"/v1/products/{p['id']}/suspend", json={"reason": "投诉核查中"}, headers=w.h(w.operator)
    )
    refused(r, 403, "forbidden")
    r = w.client.post(
        f"/v1/products/{p['id']}/suspend", json={"reason": "投诉核查中"}, headers=w.h(w.regulator)
    )
    assert r.status_code == 200 and r.json()["status"] == "suspended"
    assert r.json()["status_reason"] == "投诉核查中"
    refused(call(w, p["id"], key, 区="北山区"), 403, "product_suspended", "投诉核查中")
    assert w.client.get("/v1/public/products").json()["scenarios"] == []
    # The regulator's suspension is lifted by the regulator only.
    r = w.client.post(
        f"/v1/products/{p['id']}/resume", json={"reason": "核查完毕"}, headers=w.h(w.bureau)
    )
    refused(r, 403, "forbidden", "regulator")
    r = w.client.post(
        f"/v1/products/{p['id']}/resume", json={"reason": "核查完毕"}, headers=w.h(w.regulator)
    )
    assert r.status_code == 200 and r.json()["status"] == "active"
    assert call(w, p["id"], key, 区="北山区").status_code == 200
    entries = w.client.get("/v1/ledger/entries", headers=w.h(w.regulator)).json()["entries"]
    kinds = [e["event"]["type"] for e in entries]
    for kind in ("product.published", "product_key.issued", "product.suspended", "product.resumed"):
        assert kind in kinds


def test_a_lowered_cap_caps_the_price_of_later_calls(local_world: World) -> None:
    w = local_world
    p = product(w, price="4.00")
    key = issue_key(w, p["id"])["key"]
    assert set_cap(w, "普惠金融", "3.00").status_code == 200
    r = call(w, p["id"], key, 区="北山区")
    assert r.status_code == 200 and r.json()["price"] == "3.00"
    shown = w.client.get(f"/v1/products/{p['id']}", headers=w.h(w.operator)).json()
    assert (shown["price"], shown["cap"], shown["price_now"]) == ("4.00", "3.00", "3.00")


def test_revenue_report_by_scenario_and_department_statistics_count_the_calls(
    local_world: World,
) -> None:
    w = local_world
    p = product(w, price="4.00")
    key = issue_key(w, p["id"])["key"]
    for district in ("北山区", "城关区", "湖滨区"):
        assert call(w, p["id"], key, 区=district).status_code == 200
    assert set_cap(w, "普惠金融", "3.00").status_code == 200
    assert call(w, p["id"], key, 区="新城区").json()["price"] == "3.00"
    report = w.client.get(f"/v1/reports/revenue?period={period()}", headers=w.h(w.regulator)).json()
    (row,) = report["products_by_scenario"]
    # Σ prices 4 + 4 + 4 + 3; Σ caps in force at each call 5 + 5 + 5 + 3.
    assert row == {
        "scenario": "普惠金融",
        "calls": 4,
        "charged_calls": 4,
        "revenue": "15.00",
        "max_allowed_revenue": "18.00",
        "within": True,
    }
    assert w.client.get(f"/v1/reports/revenue?period={period()}", headers=w.h(w.bureau)).json()[
        "products_by_scenario"
    ] == [row]
    text = w.client.get(
        f"/v1/reports/revenue?period={period()}&format=csv", headers=w.h(w.regulator)
    ).text
    (line,) = [x for x in csv.DictReader(io.StringIO(text)) if x["section"] == "product_scenario"]
    assert (line["key"], line["calls"], line["amount"], line["allowed_revenue"]) == (
        "普惠金融",
        "4",
        "15.00",
        "18.00",
    )
    stats = w.client.get(
        f"/v1/statistics/datasets?month={period()}", headers=w.h(w.provider)
    ).json()
    (population,) = [d for d in stats["datasets"] if d["dataset"] == "population"]
    assert population["product_calls"] == 4 and population["jobs"] >= 4
    # A hand-written job reads the data too, but is no product call.
    cid = p["contract_id"]
    assert w.run(cid, 'emit("n", table("population").agg(n=count()).collect())').status_code == 201
    stats = w.client.get(
        f"/v1/statistics/departments?month={period()}", headers=w.h(w.provider)
    ).json()
    (mine,) = stats["departments"]
    assert mine["product_calls"] == 4 and mine["jobs"] == 5


def test_a_call_again_under_its_idempotency_key_is_the_same_call_and_only_its_key_reads_it(
    local_world: World,
) -> None:
    w = local_world
    p = product(w)
    mine, theirs = issue_key(w, p["id"])["key"], issue_key(w, p["id"], "另一家银行")["key"]
    body = {"params": {"区": "北山区"}, "idempotency_key": "订单-0001"}
    first = w.client.post(
        f"/v1/products/{p['id']}/calls", json=body, headers={"X-Product-Key": mine}
    )
    again = w.client.post(
        f"/v1/products/{p['id']}/calls", json=body, headers={"X-Product-Key": mine}
    )
    assert first.status_code == again.status_code == 200, again.text
    assert first.json()["id"] == again.json()["id"]
    # The same key text from another customer is another call.
    other = w.client.post(
        f"/v1/products/{p['id']}/calls", json=body, headers={"X-Product-Key": theirs}
    )
    assert other.status_code == 200 and other.json()["id"] != first.json()["id"]
    shown = w.client.get(f"/v1/products/{p['id']}", headers=w.h(w.operator)).json()
    assert (shown["calls"], shown["revenue"]) == (2, "8.00")
    r = w.client.get(
        f"/v1/products/{p['id']}/calls/{first.json()['id']}", headers={"X-Product-Key": theirs}
    )
    refused(r, 404, "not_found")


def test_public_interest_products_are_free_and_only_active_contracts_hold_products(
    local_world: World,
) -> None:
    w = local_world
    assert set_cap(w, "普惠金融", "5.00").status_code == 200
    free = w.active_contract(purpose_class="public_interest")
    template = approved_template(w)
    refused(publish(w, free, template, price="1.00"), 400, "invalid_product_price", "free")
    r = publish(w, free, template, price="0.00")
    assert r.status_code == 201 and r.json()["purpose_class"] == "public_interest", r.text
    key = issue_key(w, r.json()["id"])["key"]
    answer = call(w, r.json()["id"], key, 区="北山区")
    assert answer.status_code == 200 and answer.json()["price"] == "0.00"
    suspended = w.active_contract()
    r = w.client.post(
        f"/v1/contracts/{suspended}/suspend", json={"reason": "核查"}, headers=w.h(w.regulator)
    )
    assert r.status_code == 200, r.text
    refused(publish(w, suspended, template), 409, "conflict", "active")


def test_a_call_whose_job_fails_is_answered_with_the_jobs_code_and_not_charged(
    local_world: World,
) -> None:
    w = local_world
    assert set_cap(w, "人口研究", "2.00").status_code == 200
    cid = w.active_contract()
    code = 'n = table("population").agg(n=count()).collect()\nemit("n", [1][params["i"]])\n'
    schema = {
        "type": "object",
        "properties": {"i": {"type": "integer", "minimum": 0, "maximum": 3}},
    }
    r = publish(
        w, cid, approved_template(w, code=code, schema=schema), scenario="人口研究", price="2.00"
    )
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    key = issue_key(w, pid)["key"]
    assert call(w, pid, key, i=0).status_code == 200
    failed = call(w, pid, key, i=2)
    body = failed.json()
    job = w.client.get(f"/v1/jobs/{body['job_id']}", headers=w.h(w.operator)).json()
    assert job["status"] == "failed" and body["code"] == job["error"]["code"], (body, job)
    # An error in the product's own code: not the customer's doing, and not a refusal.
    assert (failed.status_code, body["code"]) == (502, "job_code_error"), body
    shown = w.client.get(f"/v1/products/{pid}", headers=w.h(w.operator)).json()
    assert (shown["calls"], shown["charged_calls"], shown["revenue"]) == (2, 1, "2.00")
