"""Authorized operation end to end, on the real local Ray: an operator's template reading two
departments' data is approved by both; it becomes a data product priced within the bureau's
cap for its scenario; a customer calls it with its own key (parameters out of range refused,
small groups suppressed as in any job); the calls reach the operator's bill and the
regulator's revenue report. A second product reads L4 data: each call's release is held
until two people release it, and one they refuse never reaches the customer."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from typing import Any

import pyarrow as pa
from conftest import World
from factories import parquet_bytes

from operators.keys import sign
from sandbox.common import clock
from sandbox.records import money

CODE = """\
d = params["district"]
born_before = 2026 - params["min_age"]
people = (
    table("population")
    .filter((col("district") == d) & (col("birth_date").year() <= born_before))
    .group_by("gender")
    .agg(n=count())
    .collect()
)
firms = table("enterprises").filter(col("district") == d).agg(n=count()).collect()
emit("people", people)
emit("firms", firms)
"""
SCHEMA = {
    "type": "object",
    "properties": {
        "district": {"type": "string", "enum": ["城关区", "湖滨区", "新城区"]},
        "min_age": {"type": "integer", "minimum": 0, "maximum": 110, "default": 60},
    },
    "required": ["district"],
}
RELIEF = 'emit("户数", table("低保").filter(col("district") == params["district"]).agg(n=count()).collect())'
SCENARIO, RELIEF_SCENARIO = "人口与产业分析", "社会救助评估"


def ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


def refused(r: Any, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["ok"] is False and body["code"] == code, body
    return str(body["error"])


def department(w: World, name: str) -> dict[str, Any]:
    return ok(
        w.client.post(
            "/v1/principals", json={"name": name, "role": "provider"}, headers=w.h(w.bureau)
        ),
        201,
    )


def ingest(
    w: World, name: str, owner: dict[str, Any], table: pa.Table, level: str, columns: Any
) -> None:
    meta = {
        "name": name,
        "title": name,
        "provider_id": owner["id"],
        "level": level,
        "columns": columns,
    }
    ok(
        w.client.post(
            "/v1/datasets",
            headers=w.h(w.bureau),
            files={"file": (f"{name}.parquet", parquet_bytes(table))},
            data={"meta": json.dumps(meta, ensure_ascii=False)},
        ),
        201,
    )


def contract(w: World, departments: list[dict[str, Any]], **terms: Any) -> str:
    cid = ok(w.client.post("/v1/contracts", json=terms, headers=w.h(w.operator)), 201)["id"]
    for dept in departments:
        ok(w.client.post(f"/v1/contracts/{cid}/approve", headers=w.h(dept)))
    ok(w.client.post(f"/v1/contracts/{cid}/sign", headers=w.h(w.bureau)))
    canonical = base64.b64decode(
        ok(w.client.get(f"/v1/contracts/{cid}", headers=w.h(w.operator)))["canonical"]
    )
    signed = w.client.post(
        f"/v1/contracts/{cid}/sign",
        json={"signature": sign(w.operator_key, canonical)},
        headers=w.h(w.operator),
    )
    assert ok(signed)["status"] == "active"
    return str(cid)


def review(
    w: World, who: dict[str, Any] | str, template_id: str, decision: str, **more: Any
) -> Any:
    return w.client.post(
        f"/v1/templates/{template_id}/versions/1/reviews",
        json={"decision": decision, **more},
        headers=w.h(who),
    )


def call(w: World, product_id: str, key: str, **params: Any) -> Any:
    return w.client.post(
        f"/v1/products/{product_id}/calls", json={"params": params}, headers={"X-Product-Key": key}
    )


def terms(datasets: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {
        "datasets": datasets,
        "purpose": "辖区人口与产业匹配的数据产品",
        "purpose_class": "commercial",
        "valid_from": "2026-01-01T00:00:00Z",
        "valid_to": "2030-01-01T00:00:00Z",
        **more,
    }


def test_a_template_becomes_a_product_its_customers_call_within_the_cap(
    world: World, city: dict[str, Any]
) -> None:
    w = world
    market = department(w, "市市场监管局")
    ent = city["enterprises"]
    ingest(w, "enterprises", market, ent.table, ent.level, ent.columns)
    grants = {
        "population": {"district": ["filter"], "birth_date": ["filter"], "gender": ["group_by"]},
        "enterprises": {"district": ["filter"]},
    }
    cid = contract(w, [w.provider, market], **terms(grants, review={"templates_only": True}))

    # The template: one exact code, reviewed by both departments whose data it reads.
    t = ok(
        w.client.post(
            "/v1/templates",
            json={"name": "辖区人口与市场主体", "code": CODE, "params_schema": SCHEMA},
            headers=w.h(w.operator),
        ),
        201,
    )
    reviewers = {r["id"] if isinstance(r, dict) else r for r in t["versions"][0]["reviewers"]}
    assert reviewers == {w.provider["id"], market["id"]}
    ok(review(w, w.provider, t["id"], "approve"))
    run = w.client.post(
        f"/v1/templates/{t['id']}/runs",
        json={"contract_id": cid, "params": {"district": "城关区"}},
        headers=w.h(w.operator),
    )
    assert run.status_code == 409 and "市市场监管局" in run.json()["error"], run.text
    approved = ok(review(w, market, t["id"], "approve", conditions="仅输出区级汇总"))
    assert approved["versions"][0]["status"] == "approved"
    # Under this contract nothing but the approved template runs.
    refused(w.run(cid, CODE, params={"district": "城关区"}), 403, "contract_scope")

    # The product, priced within the bureau's cap for its scenario.
    ok(
        w.client.put(
            f"/v1/product-caps/{SCENARIO}",
            json={"max_price": "3.00", "description": "区级人口与产业匹配"},
            headers=w.h(w.bureau),
        )
    )
    product = {
        "name": "辖区银发经济画像",
        "scenario": SCENARIO,
        "description": "按区的老年人口性别构成与市场主体数",
        "purpose_class": "commercial",
        "contract_id": cid,
        "template_id": t["id"],
        "template_version": 1,
    }
    said = refused(
        w.client.post("/v1/products", json={**product, "price": "3.50"}, headers=w.h(w.operator)),
        400,
        "price_above_cap",
    )
    assert "3.50" in said and "3.00" in said and SCENARIO in said
    p = ok(
        w.client.post("/v1/products", json={**product, "price": "3.00"}, headers=w.h(w.operator)),
        201,
    )
    public = ok(w.client.get("/v1/public/products"))
    listed = {s["scenario"]: [x["name"] for x in s["products"]] for s in public["scenarios"]}
    assert listed[SCENARIO] == ["辖区银发经济画像"]
    key = ok(
        w.client.post(
            f"/v1/products/{p['id']}/keys", json={"customer": "某农商银行"}, headers=w.h(w.operator)
        ),
        201,
    )["key"]

    # A customer's calls: each a job of the operator's, with every check a job has.
    pop = city["population"].table.to_pydict()
    elderly = sum(
        1
        for d, b in zip(pop["district"], pop["birth_date"])
        if d == "城关区" and b.year <= 2026 - 60
    )
    first = ok(call(w, p["id"], key, district="城关区"))
    assert first["status"] == "succeeded" and first["price"] == "3.00" and first["charged"]
    people = first["outputs"]["people"]
    assert sum(r[1] for r in people["rows"] if r[1] is not None) == elderly
    firms = [d for d in ent.table.column("district").to_pylist() if d == "城关区"]
    assert first["outputs"]["firms"]["rows"] == [[len(firms)]]
    said = refused(call(w, p["id"], key, district="城关区", min_age=120), 400, "params_invalid")
    assert "min_age" in said
    refused(call(w, p["id"], "pk_not-a-key", district="城关区"), 401, "unauthenticated")
    # Few men of 88 and over live in 湖滨区: the cell is suppressed, as in any job.
    rare = ok(call(w, p["id"], key, district="湖滨区", min_age=88))
    assert rare["status"] == "succeeded"
    hidden = rare["outputs"]["people"]
    assert hidden["suppressed"] and all(
        hidden["rows"][i][[c["name"] for c in hidden["columns"]].index(c)] is None
        for i, c in hidden["suppressed"]
    )

    # The operator pays the bureau's schedule for each call; the regulator sees the
    # product's revenue against its scenario's maximum.
    period = money.period_of(clock.now())
    bill = ok(w.client.get(f"/v1/bills?period={period}", headers=w.h(w.operator)))
    charged = {c["job_id"]: Decimal(c["amount"]) for c in bill["charges"]}
    assert first["id"] in charged and rare["id"] in charged
    assert all(charged[j] >= Decimal("2.00") for j in (first["id"], rare["id"]))
    report = ok(w.client.get(f"/v1/reports/revenue?period={period}", headers=w.h(w.regulator)))
    (line,) = [r for r in report["products_by_scenario"] if r["scenario"] == SCENARIO]
    assert (line["calls"], line["charged_calls"]) == (2, 2)
    assert (line["revenue"], line["max_allowed_revenue"], line["within"]) == ("6.00", "6.00", True)


def test_a_product_on_l4_data_waits_for_two_reviewers_and_a_refusal_reaches_no_one(
    world: World,
) -> None:
    w = world
    relief = pa.table(
        {
            "household_id": [f"H{i:05d}" for i in range(600)],
            "district": ["城关区", "湖滨区", "新城区"] * 200,
            "benefit": [300 + i % 400 for i in range(600)],
        }
    )
    columns = {
        "household_id": {"role": "identifier"},
        "district": {"role": "attribute"},
        "benefit": {"role": "sensitive", "lower": 0, "upper": 1000},
    }
    ingest(w, "低保", w.provider, relief, "L4", columns)
    grants = {"低保": {"district": ["filter"]}}
    cid = contract(
        w,
        [w.provider],
        **terms(grants, privacy={"低保": {"epsilon": "2", "per_job_epsilon": "0.5"}}),
    )
    schema = {
        "type": "object",
        "properties": {"district": {"type": "string", "enum": ["城关区", "湖滨区"]}},
    }
    t = ok(
        w.client.post(
            "/v1/templates",
            json={"name": "低保户数", "code": RELIEF, "params_schema": schema},
            headers=w.h(w.operator),
        ),
        201,
    )
    ok(review(w, w.provider, t["id"], "approve"))
    ok(
        w.client.put(
            f"/v1/product-caps/{RELIEF_SCENARIO}", json={"max_price": "1.00"}, headers=w.h(w.bureau)
        )
    )
    p = ok(
        w.client.post(
            "/v1/products",
            json={
                "name": "辖区低保户数",
                "scenario": RELIEF_SCENARIO,
                "description": "按区的低保户数（差分隐私，每次调用经两人复核）",
                "purpose_class": "commercial",
                "contract_id": cid,
                "template_id": t["id"],
                "template_version": 1,
                "price": "1.00",
            },
            headers=w.h(w.operator),
        ),
        201,
    )
    key = ok(
        w.client.post(
            f"/v1/products/{p['id']}/keys", json={"customer": "某保险公司"}, headers=w.h(w.operator)
        ),
        201,
    )["key"]
    checker = ok(
        w.client.post(
            "/v1/principals", json={"name": "数据局复核员", "role": "bureau"}, headers=w.h(w.bureau)
        ),
        201,
    )

    held = ok(call(w, p["id"], key, district="城关区"))
    assert held["status"] == "held" and held["outputs"] == {} and not held["charged"]
    job = w.wait_for_job(held["id"])
    assert job["review"]["reasons"] == ["level:L4"] and job["review"]["required"] == 2
    review_id = job["review"]["id"]
    for who in (w.provider, checker):
        ok(
            w.client.post(
                f"/v1/reviews/{review_id}/decisions", json={"decision": "release"}, headers=w.h(who)
            )
        )
    assert w.wait_for_job(held["id"])["status"] == "succeeded"
    done = ok(
        w.client.get(f"/v1/products/{p['id']}/calls/{held['id']}", headers={"X-Product-Key": key})
    )
    assert done["status"] == "succeeded" and done["charged"] and done["outputs"]["户数"]["rows"]

    second = ok(call(w, p["id"], key, district="湖滨区"))
    assert second["status"] == "held"
    review_id = w.wait_for_job(second["id"])["review"]["id"]
    said = w.client.post(
        f"/v1/reviews/{review_id}/decisions",
        json={"decision": "refuse", "reason": "单区户数过少，不宜对外"},
        headers=w.h(checker),
    )
    assert ok(said)["status"] == "refused"
    job = w.wait_for_job(second["id"])
    assert job["status"] == "failed" and job["error"]["code"] == "output_refused"
    assert job["outputs"] == {}
    seen = ok(
        w.client.get(f"/v1/products/{p['id']}/calls/{second['id']}", headers={"X-Product-Key": key})
    )
    assert seen["status"] == "failed" and seen["outputs"] == {} and not seen["charged"]
    assert seen["error"]["code"] == "output_refused"

    period = money.period_of(clock.now())
    report = ok(w.client.get(f"/v1/reports/revenue?period={period}", headers=w.h(w.regulator)))
    (line,) = [r for r in report["products_by_scenario"] if r["scenario"] == RELIEF_SCENARIO]
    assert (line["calls"], line["charged_calls"], line["revenue"]) == (2, 1, "1.00")
