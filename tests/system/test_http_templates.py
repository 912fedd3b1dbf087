"""Analysis templates over HTTP (FastAPI's TestClient), on SQLite and PostgreSQL: an operator
submits parametrised code reading two departments' data; each department reviews that exact
code; the approved template runs with checked parameters through every check a job goes
through; versions by code; a contract that runs approved templates only; who sees and who
reviews what; every step in the log (which still verifies)."""

from __future__ import annotations

import base64
import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from conftest import World
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from factories import parquet_bytes
from pydantic import BaseModel

from operators.keys import sign
from operators.roles import Role
from sandbox.api.models.jobs import Job
from sandbox.api.models.templates import Template, Templates
from sandbox.ledger.verify import BureauKey, LedgerSource, verify_log
from sandbox.records import templates
from sandbox.records.principals import Actor

ENVELOPE = {"ok", "status", "code", "error"}
DISTRICTS = ["城关区", "湖滨区", "新城区"]
CODE = (
    'd = params["district"]\n'
    'people = table("population").filter(col("district") == d)'
    '.group_by("gender").agg(n=count()).collect()\n'
    'firms = table("enterprises").filter(col("district") == d).agg(n=count()).collect()\n'
    'emit("people", people)\n'
    'emit("firms", firms)\n'
)
SCHEMA = {
    "type": "object",
    "properties": {
        "district": {"type": "string", "enum": DISTRICTS, "description": "辖区"},
        "year": {"type": "integer", "minimum": 2020, "maximum": 2026, "default": 2026},
    },
    "required": ["district"],
}
GRANTS = {
    "population": {"district": ["filter", "group_by"], "gender": ["group_by", "filter"]},
    "enterprises": {"district": ["filter", "group_by"]},
}


def refused(r: Any, status: int, code: str, *words: str) -> str:
    """The error envelope of a refusal, whose message says each of `words`."""
    assert r.status_code == status, r.text
    body = r.json()
    assert ENVELOPE <= set(body) and body["ok"] is False and body["code"] == code, body
    for word in words:
        assert word in body["error"], (word, body["error"])
    return str(body["error"])


def conforms(r: Any, model: type[BaseModel], status: int = 200) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert model.model_validate(body).model_dump(mode="json", exclude_unset=True) == body
    return body  # type: ignore[no-any-return]


def city_of_two(w: World, city: dict[str, Any]) -> dict[str, Any]:
    """A second department (market regulation) providing the enterprises; the world's
    operator holds an active contract over both datasets. Returns that department."""
    r = w.client.post(
        "/v1/principals", json={"name": "市市场监管局", "role": "provider"}, headers=w.h(w.bureau)
    )
    assert r.status_code == 201, r.text
    market = dict(r.json())
    ent = city["enterprises"]
    meta = {
        "name": "enterprises",
        "title": ent.title,
        "provider_id": market["id"],
        "level": ent.level,
        "columns": ent.columns,
    }
    r = w.client.post(
        "/v1/datasets",
        headers=w.h(w.bureau),
        files={"file": ("enterprises.parquet", parquet_bytes(ent.table))},
        data={"meta": json.dumps(meta, ensure_ascii=False)},
    )
    assert r.status_code == 201, r.text
    return market


def contract(w: World, market: dict[str, Any], **terms: Any) -> str:
    body = {
        "datasets": GRANTS,
        "purpose": "辖区人口与市场主体匹配分析",
        "purpose_class": "commercial",
        "valid_from": "2026-01-01T00:00:00Z",
        "valid_to": "2030-01-01T00:00:00Z",
        **terms,
    }
    r = w.client.post("/v1/contracts", json=body, headers=w.h(w.operator))
    assert r.status_code == 201, r.text
    cid = str(r.json()["id"])
    for dept in (w.provider, market):
        r = w.client.post(f"/v1/contracts/{cid}/approve", headers=w.h(dept))
        assert r.status_code == 200, r.text
    assert w.client.post(f"/v1/contracts/{cid}/sign", headers=w.h(w.bureau)).status_code == 200
    canonical = base64.b64decode(
        w.client.get(f"/v1/contracts/{cid}", headers=w.h(w.operator)).json()["canonical"]
    )
    r = w.client.post(
        f"/v1/contracts/{cid}/sign",
        json={"signature": sign(w.operator_key, canonical)},
        headers=w.h(w.operator),
    )
    assert r.status_code == 200 and r.json()["status"] == "active", r.text
    return cid


def submit(w: World, code: str = CODE, schema: Any = None, who: Any = None, **more: Any) -> Any:
    body = {
        "name": "辖区人口与企业",
        "description": "按辖区统计常住人口性别构成与企业数",
        "code": code,
        "params_schema": SCHEMA if schema is None else schema,
        **more,
    }
    return w.client.post("/v1/templates", json=body, headers=w.h(who or w.operator))


def review(w: World, tid: str, version: int, who: Any, **body: Any) -> Any:
    return w.client.post(
        f"/v1/templates/{tid}/versions/{version}/reviews", json=body, headers=w.h(who)
    )


def run(w: World, tid: str, cid: str, params: dict[str, Any], **more: Any) -> Any:
    return w.client.post(
        f"/v1/templates/{tid}/runs",
        json={"contract_id": cid, "params": params, "wait": True, **more},
        headers=w.h(w.operator),
    )


def events(w: World, subject: str, prefix: str = "template.") -> list[dict[str, Any]]:
    r = w.client.get("/v1/ledger/entries", headers=w.h(w.regulator))
    assert r.status_code == 200, r.text
    return [
        e["event"]
        for e in r.json()["entries"]
        if e["event"]["subject"] == subject and e["event"]["type"].startswith(prefix)
    ]


def jobs_of(w: World) -> list[dict[str, Any]]:
    return list(w.client.get("/v1/jobs", headers=w.h(w.operator)).json()["jobs"])


def spend(w: World, cid: str) -> dict[str, int]:
    return dict(w.client.get(f"/v1/contracts/{cid}", headers=w.h(w.operator)).json()["spend"])


def assert_log_verifies(w: World) -> None:
    source = LedgerSource("http://testserver", w.regulator["token"], client=w.client)
    key = w.ctx.bureau_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    report = verify_log(source, BureauKey(key))
    assert report.ok, report.problems


def rows(w: World, job_id: str, name: str) -> list[list[Any]]:
    r = w.client.get(f"/v1/jobs/{job_id}/outputs/{name}", headers=w.h(w.operator))
    assert r.status_code == 200, r.text
    return list(r.json()["rows"])


def test_a_template_reading_two_departments_needs_both_and_then_runs_with_checked_params(
    local_world: World, city: dict[str, Any]
) -> None:
    w = local_world
    market = city_of_two(w, city)
    cid = contract(w, market)
    t = conforms(submit(w), Template, 201)
    tid = t["id"]
    (v1,) = t["versions"]
    assert v1["status"] == "pending" and v1["version"] == 1 and v1["code"] == CODE
    assert v1["datasets"] == ["enterprises", "population"]
    assert {r["id"] for r in v1["reviewers"]} == {w.provider["id"], market["id"]}
    assert v1["params_schema"]["additionalProperties"] is False

    # Before every department approved, it does not run, and says whom it waits for.
    refused(run(w, tid, cid, {"district": "城关区"}), 409, "conflict", "pending", "市公安局")
    first = conforms(
        review(w, tid, 1, w.provider, decision="approve", conditions="仅限汇总"), Template
    )
    assert first["versions"][0]["status"] == "pending"
    refused(run(w, tid, cid, {"district": "城关区"}), 409, "conflict", "市市场监管局")
    assert jobs_of(w) == []
    # Once only.
    refused(review(w, tid, 1, w.provider, decision="approve"), 409, "conflict", "already")
    done = conforms(review(w, tid, 1, market, decision="approve", reason="口径合规"), Template)
    (v1,) = done["versions"]
    assert v1["status"] == "approved" and v1["decided_at"] and done["approved_version"] == 1
    by = {r["by"]: r for r in v1["reviews"]}
    assert by[w.provider["id"]]["conditions"] == "仅限汇总"
    assert (
        by[market["id"]]["reason"] == "口径合规" and by[market["id"]]["by_name"] == "市市场监管局"
    )

    # Parameters outside the schema: refused, naming the parameter; nothing recorded or charged.
    before = spend(w, cid)
    for params, word in [
        ({"district": "火星区"}, "district"),
        ({"district": "城关区", "year": 2031}, "year"),
        ({"district": "城关区", "limit": 5}, "limit"),
        ({}, "district"),
    ]:
        refused(run(w, tid, cid, params), 400, "params_invalid", word)
    assert jobs_of(w) == [] and spend(w, cid) == before

    r = run(w, tid, cid, {"district": "湖滨区"})
    job = conforms(r, Job, 201)
    assert job["status"] == "succeeded", job
    assert job["origin"] == {"template_id": tid, "template_version": 1}
    assert spend(w, cid)["spent_fen"] > before["spent_fen"]
    pop = city["population"].table
    want = Counter(
        g
        for d, g in zip(pop["district"].to_pylist(), pop["gender"].to_pylist(), strict=True)
        if d == "湖滨区"
    )
    assert {g: n for g, n in rows(w, job["id"], "people")} == dict(want)
    ent = city["enterprises"].table
    firms = sum(1 for d in ent["district"].to_pylist() if d == "湖滨区")
    assert rows(w, job["id"], "firms") == [[firms]]
    # The default of an unsent parameter is filled in, and the run is logged as the template's.
    (submitted,) = [e for e in events(w, job["id"], "job.submitted")]
    assert submitted["data"]["params"] == {"district": "湖滨区", "year": 2026}
    assert submitted["data"]["origin"] == {"template_id": tid, "template_version": 1}

    # Every step of the review is in the log, with who decided what.
    log = events(w, tid)
    assert [e["type"] for e in log] == [
        "template.submitted",
        "template.reviewed",
        "template.reviewed",
        "template.approved",
    ]
    assert log[0]["data"]["datasets"] == ["enterprises", "population"]
    assert set(log[0]["data"]["reviewers"]) == {w.provider["id"], market["id"]}
    assert log[0]["data"]["code_sha256"] == v1["code_sha256"]
    assert log[0]["data"]["params_schema"] == v1["params_schema"]
    assert [(e["data"]["by"], e["data"]["decision"]) for e in log[1:3]] == [
        (w.provider["id"], "approve"),
        (market["id"], "approve"),
    ]
    assert log[1]["data"]["conditions"] == "仅限汇总" and log[2]["data"]["reason"] == "口径合规"
    assert_log_verifies(w)


def test_one_refusal_refuses_and_the_reason_is_required(
    local_world: World, city: dict[str, Any]
) -> None:
    w = local_world
    market = city_of_two(w, city)
    cid = contract(w, market)
    tid = conforms(submit(w), Template, 201)["id"]
    refused(review(w, tid, 1, market, decision="refuse"), 400, "bad_request", "reason")
    refused(review(w, tid, 1, market, decision="maybe"), 400, "bad_request", "approve")
    out = conforms(
        review(w, tid, 1, market, decision="refuse", reason="企业数口径不一致"), Template
    )
    assert out["versions"][0]["status"] == "refused" and out["approved_version"] is None
    # The other department has nothing left to decide.
    refused(review(w, tid, 1, w.provider, decision="approve"), 409, "conflict", "refused")
    refused(run(w, tid, cid, {"district": "城关区"}), 409, "conflict", "refused")
    assert [e["type"] for e in events(w, tid)] == [
        "template.submitted",
        "template.reviewed",
        "template.refused",
    ]
    assert events(w, tid)[1]["data"]["reason"] == "企业数口径不一致"
    assert jobs_of(w) == []


def approve_all(w: World, tid: str, version: int, *depts: dict[str, Any]) -> None:
    for dept in depts:
        assert review(w, tid, version, dept, decision="approve").status_code == 200


def test_changed_code_is_a_new_version_needing_new_approvals_identical_code_conflicts(
    local_world: World, city: dict[str, Any]
) -> None:
    w = local_world
    market = city_of_two(w, city)
    cid = contract(w, market)
    tid = conforms(submit(w), Template, 201)["id"]
    approve_all(w, tid, 1, w.provider, market)

    again = submit(w)
    refused(again, 409, "conflict", "version 1", "approved")
    changed = CODE.replace('group_by("gender")', 'group_by("gender", "district")')
    t = conforms(submit(w, changed), Template, 201)
    assert t["id"] == tid and [v["version"] for v in t["versions"]] == [2, 1]
    assert t["versions"][0]["status"] == "pending" and t["approved_version"] == 1
    assert t["versions"][0]["code_sha256"] != t["versions"][1]["code_sha256"]

    # The latest approved runs by default; the new one waits for its own review.
    job = conforms(run(w, tid, cid, {"district": "城关区"}), Job, 201)
    assert job["status"] == "succeeded" and job["origin"]["template_version"] == 1
    refused(run(w, tid, cid, {"district": "城关区"}, version=2), 409, "conflict", "pending")
    approve_all(w, tid, 2, w.provider, market)
    job = conforms(run(w, tid, cid, {"district": "城关区"}), Job, 201)
    assert job["origin"]["template_version"] == 2 and job["status"] == "succeeded"
    assert len(rows(w, job["id"], "people")[0]) == 3
    old = conforms(run(w, tid, cid, {"district": "城关区"}, version=1), Job, 201)
    assert old["origin"]["template_version"] == 1 and old["status"] == "succeeded"

    # A pending version can be withdrawn, once; an approved one cannot.
    third = CODE.replace(
        'agg(n=count()).collect()\nemit("people"', 'agg(m=count()).collect()\nemit("people"'
    )
    assert conforms(submit(w, third), Template, 201)["versions"][0]["version"] == 3
    r = w.client.post(f"/v1/templates/{tid}/versions/3/withdraw", headers=w.h(w.operator))
    assert conforms(r, Template)["versions"][0]["status"] == "withdrawn"
    r = w.client.post(f"/v1/templates/{tid}/versions/1/withdraw", headers=w.h(w.operator))
    refused(r, 409, "conflict", "approved")
    refused(review(w, tid, 3, market, decision="approve"), 409, "conflict", "withdrawn")
    assert "template.withdrawn" in [e["type"] for e in events(w, tid)]

    # The same code accepting other parameters is new to its reviewers too.
    wider = {**SCHEMA, "properties": {**SCHEMA["properties"], "year": {"type": "integer"}}}
    t = conforms(submit(w, schema=wider), Template, 201)
    assert t["versions"][0]["version"] == 4 and t["versions"][0]["status"] == "pending"
    assert t["versions"][0]["code_sha256"] == t["versions"][-1]["code_sha256"]


def test_a_templates_only_contract_refuses_plain_jobs_and_runs_approved_templates(
    local_world: World, city: dict[str, Any]
) -> None:
    w = local_world
    market = city_of_two(w, city)
    cid = contract(w, market, review={"templates_only": True})
    r = w.run(cid, CODE, params={"district": "城关区"})
    refused(r, 403, "contract_scope", "templates only", "/v1/templates")
    tid = conforms(submit(w), Template, 201)["id"]
    approve_all(w, tid, 1, w.provider, market)
    job = conforms(run(w, tid, cid, {"district": "新城区"}), Job, 201)
    assert job["status"] == "succeeded" and job["origin"]["template_id"] == tid


def test_code_and_datasets_are_checked_when_submitted(
    local_world: World, city: dict[str, Any]
) -> None:
    w = local_world
    refused(submit(w, "import os\n"), 400, "code_rejected", "line 1")
    refused(
        submit(w, 'emit("n", table(params["t"]).agg(n=count()).collect())'),
        400,
        "bad_request",
        "literally",
    )
    refused(
        submit(w, 'emit("n", table("nowhere").agg(n=count()).collect())'),
        400,
        "bad_request",
        "nowhere",
        "/v1/datasets",
    )
    refused(
        submit(w, schema={"type": "object", "properties": {"x": {"type": "string"}}}),
        400,
        "params_invalid",
        "maxLength",
    )
    refused(submit(w, who=w.provider), 403, "forbidden")
    assert w.client.get("/v1/templates", headers=w.h(w.operator)).json()["templates"] == []


def test_who_sees_and_reviews_what(local_world: World, city: dict[str, Any]) -> None:
    w = local_world
    market = city_of_two(w, city)
    # Reads population only: the market department neither sees nor reviews it.
    code = 'emit("n", table("population").group_by("district").agg(n=count()).collect())'
    t = conforms(submit(w, code, {}), Template, 201)
    tid = t["id"]
    assert [r["id"] for r in t["versions"][0]["reviewers"]] == [w.provider["id"]]
    refused(review(w, tid, 1, market, decision="approve"), 404, "not_found")
    r = w.client.get(f"/v1/templates/{tid}", headers=w.h(market))
    refused(r, 404, "not_found")
    refused(w.client.get(f"/v1/templates/{tid}", headers=w.h(w.other_operator)), 404, "not_found")
    r = w.client.post(f"/v1/templates/{tid}/versions/1/withdraw", headers=w.h(w.other_operator))
    refused(r, 404, "not_found")
    refused(review(w, tid, 1, w.operator, decision="approve"), 403, "forbidden")
    refused(review(w, tid, 9, w.provider, decision="approve"), 404, "not_found", "versions: 1")

    def listed(who: Any, query: str = "") -> list[str]:
        body = conforms(w.client.get(f"/v1/templates{query}", headers=w.h(who)), Templates)
        return [t["id"] for t in body["templates"]]

    assert listed(w.operator) == [tid] and listed(w.other_operator) == []
    assert listed(market) == [] and listed(w.provider) == [tid]
    assert listed(w.provider, "?awaiting=true") == [tid]
    assert listed(w.bureau) == [tid] and listed(w.regulator) == [tid]
    assert listed(w.regulator, "?status=approved") == []
    # Listings leave the code out; the template's page has it.
    body = w.client.get("/v1/templates", headers=w.h(w.regulator)).json()["templates"][0]
    assert "code" not in body["versions"][0]
    got = w.client.get(f"/v1/templates/{tid}", headers=w.h(w.regulator)).json()
    assert got["versions"][0]["code"] == code
    approve_all(w, tid, 1, w.provider)
    assert listed(w.provider, "?awaiting=true") == []
    assert listed(w.regulator, "?status=approved") == [tid]
    # Another operator cannot run it, even under a contract of its own.
    cid = w.active_contract(operator="other_operator")
    r = w.client.post(
        f"/v1/templates/{tid}/runs", json={"contract_id": cid}, headers=w.h(w.other_operator)
    )
    refused(r, 404, "not_found")


def test_departments_deciding_at_once_each_see_the_others_review(
    local_world: World, city: dict[str, Any]
) -> None:
    """Templates each approved by its two departments at the same moment (on PostgreSQL,
    from several connections): every one ends approved with both reviews, approved once in
    the log, and the log still verifies."""
    w = local_world
    market = city_of_two(w, city)
    ids = []
    for i in range(4):
        code = CODE.replace('emit("firms", firms)', f'emit("firms{i}", firms)')
        ids.append(conforms(submit(w, code, name=f"模板 {i}"), Template, 201)["id"])

    def decide(job: tuple[str, dict[str, Any]]) -> str:
        # The function the route calls, from threads of its own: requests through one test
        # client may be taken one at a time.
        tid, dept = job
        actor = Actor(dept["id"], dept["name"], Role.provider)
        return str(templates.review(w.ctx, actor, tid, 1, "approve")["id"])

    work = [(tid, dept) for tid in ids for dept in (w.provider, market)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert sorted(pool.map(decide, work)) == sorted(ids * 2)
    for tid in ids:
        (v,) = w.client.get(f"/v1/templates/{tid}", headers=w.h(w.regulator)).json()["versions"]
        assert v["status"] == "approved" and len(v["reviews"]) == 2, v
        assert [e["type"] for e in events(w, tid)].count("template.approved") == 1
    assert_log_verifies(w)
