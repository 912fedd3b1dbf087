"""Demand lists over HTTP (FastAPI's TestClient), on SQLite and PostgreSQL: an operator asks
for data, the bureau routes it, the department answers planned, refused or published; every
step in the demand's history and in the log (which still verifies); who sees what (404 for
what a caller may not see, 403 for a step its role never takes); every refusal says what was
wrong and how to fix it; Chinese text comes back as sent."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from conftest import World
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import BaseModel

from operators.roles import Role
from sandbox.api.models.demands import Demand, Demands
from sandbox.errors import Conflict
from sandbox.ledger.verify import BureauKey, LedgerSource, verify_log
from sandbox.records import demands
from sandbox.records.principals import Actor

ENVELOPE = {"ok", "status", "code", "error"}
WANTED = {
    "title": "全市养老机构床位与入住情况",
    "description": "各区养老机构的床位数、入住人数，按月，2023 年起",
    "purpose": "测算社区养老服务缺口，支撑养老服务设施规划",
}


def refused(r: Any, status: int, code: str, *words: str) -> str:
    """The error envelope of a refusal, whose message says each of `words`."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == ENVELOPE and body["ok"] is False and body["code"] == code, body
    for word in words:
        assert word in body["error"], (word, body["error"])
    return str(body["error"])


def conforms(r: Any, model: type[BaseModel], status: int = 200) -> dict[str, Any]:
    """The body, checked against the route's model: the model drops and adds nothing."""
    assert r.status_code == status, r.text
    body = r.json()
    assert model.model_validate(body).model_dump(mode="json", exclude_unset=True) == body
    return body  # type: ignore[no-any-return]


def raise_demand(w: World, who: Any = None, **body: Any) -> dict[str, Any]:
    r = w.client.post("/v1/demands", json={**WANTED, **body}, headers=w.h(who or w.operator))
    return conforms(r, Demand, 201)


def route(w: World, demand_id: str, provider_id: str, note: str | None = None) -> Any:
    return w.client.post(
        f"/v1/demands/{demand_id}/route",
        json={"provider_id": provider_id, "note": note},
        headers=w.h(w.bureau),
    )


def answer(w: World, demand_id: str, who: Any = None, **body: Any) -> Any:
    return w.client.post(
        f"/v1/demands/{demand_id}/answer", json=body, headers=w.h(who or w.provider)
    )


def get(w: World, demand_id: str, who: Any) -> Any:
    return w.client.get(f"/v1/demands/{demand_id}", headers=w.h(who))


def listed(w: World, who: Any, query: str = "") -> list[str]:
    body = conforms(w.client.get(f"/v1/demands{query}", headers=w.h(who)), Demands)
    return [d["id"] for d in body["demands"]]


def department(w: World, name: str = "市民政局") -> dict[str, Any]:
    r = w.client.post(
        "/v1/principals", json={"name": name, "role": "provider"}, headers=w.h(w.bureau)
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def log_events(w: World, subject: str) -> list[dict[str, Any]]:
    r = w.client.get("/v1/ledger/entries", headers=w.h(w.regulator))
    assert r.status_code == 200, r.text
    return [e["event"] for e in r.json()["entries"] if e["event"]["subject"] == subject]


def assert_log_verifies(w: World) -> None:
    """What `sandbox ledger verify` checks, from outside, through the routes it reads."""
    source = LedgerSource("http://testserver", w.regulator["token"], client=w.client)
    key = w.ctx.bureau_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    report = verify_log(source, BureauKey(key))
    assert report.ok, report.problems


def test_a_demand_is_raised_routed_and_published_with_a_link_each_step_logged(
    local_world: World,
) -> None:
    w = local_world
    d = raise_demand(w)
    assert d["status"] == "open" and d["operator_id"] == w.operator["id"]
    assert {k: d[k] for k in WANTED} == WANTED  # Chinese text round trip
    assert d["operator_name"] == "某数据科技有限公司" and d["provider_id"] is None
    assert d["id"].startswith("dm-") and d["columns"] == [] and d["dataset"] is None

    routed = conforms(route(w, d["id"], w.provider["id"], "民政数据由市公安局汇总"), Demand)
    assert routed["status"] == "routed" and routed["provider_id"] == w.provider["id"]
    assert routed["provider_name"] == "市公安局"

    planned = conforms(
        answer(w, d["id"], status="planned", answer="已列入 2026 年第三季度归集计划"), Demand
    )
    assert planned["status"] == "planned" and planned["answer"] == "已列入 2026 年第三季度归集计划"

    published = conforms(
        answer(
            w, d["id"], status="published", answer="已发布，可申请合同", answer_dataset="population"
        ),
        Demand,
    )
    assert published["status"] == "published" and published["answer_dataset"] == "population"
    assert published["answer_dataset_title"]

    # What the operator reads: the answer, the link and every step with who took it.
    mine = conforms(get(w, d["id"], w.operator), Demand)
    assert mine["answer"] == "已发布，可申请合同" and mine["answer_dataset"] == "population"
    steps = [(h["status"], h["by"]) for h in mine["history"]]
    assert steps == [
        ("open", w.operator["id"]),
        ("routed", bureau_id(w)),
        ("planned", w.provider["id"]),
        ("published", w.provider["id"]),
    ]
    assert mine["history"][1]["note"] == "民政数据由市公安局汇总"
    assert all(h["at"].endswith("Z") for h in mine["history"])

    events = log_events(w, d["id"])
    assert [e["type"] for e in events] == [
        "demand.raised",
        "demand.routed",
        "demand.answered",
        "demand.answered",
    ]
    assert events[0]["actor"] == w.operator["id"] and events[0]["data"]["title"] == WANTED["title"]
    assert events[1]["data"] == {"provider_id": w.provider["id"], "note": "民政数据由市公安局汇总"}
    assert events[3]["data"] == {
        "status": "published",
        "answer": "已发布，可申请合同",
        "answer_dataset": "population",
    }
    assert_log_verifies(w)


def bureau_id(w: World) -> str:
    return str(w.client.get("/v1/me", headers=w.h(w.bureau)).json()["id"])


def test_more_columns_of_a_dataset_and_the_bureau_answering_itself(local_world: World) -> None:
    w = local_world
    d = raise_demand(
        w,
        title="人口库增加受教育程度",
        dataset="population",
        columns=["education", " marital_status ", "education"],
    )
    assert d["dataset"] == "population" and d["columns"] == ["education", "marital_status"]
    assert d["dataset_title"]
    # The bureau may answer an open demand itself, without routing it.
    r = answer(w, d["id"], w.bureau, status="refused", answer="受教育程度不在共享目录内")
    done = conforms(r, Demand)
    assert done["status"] == "refused" and done["provider_id"] is None
    assert [h["status"] for h in done["history"]] == ["open", "refused"]
    # Planned, then refused: planned is not final.
    later = raise_demand(w, title="企业用电量")
    assert route(w, later["id"], w.provider["id"]).status_code == 200
    assert answer(w, later["id"], status="planned", answer="预计 2027 年 1 月").status_code == 200
    r = answer(w, later["id"], status="refused", answer="数据源系统停用，无法归集")
    assert r.status_code == 200 and r.json()["status"] == "refused"
    # The bureau may also answer a demand routed to a department.
    third = raise_demand(w, title="公交刷卡客流")
    assert route(w, third["id"], w.provider["id"]).status_code == 200
    r = answer(w, third["id"], w.bureau, status="published", answer_dataset="population")
    assert r.status_code == 200 and r.json()["answer"] is None
    assert_log_verifies(w)


def test_who_sees_which_demand(local_world: World) -> None:
    w = local_world
    mine = raise_demand(w)
    theirs = raise_demand(w, w.other_operator, title="另一家公司的需求")
    other_department = department(w)

    # Operators: their own only; another's is not found, not forbidden.
    assert listed(w, w.operator) == [mine["id"]]
    assert listed(w, w.other_operator) == [theirs["id"]]
    refused(get(w, theirs["id"], w.operator), 404, "not_found", theirs["id"])
    # Departments: only what is routed to them.
    assert listed(w, w.provider) == []
    refused(get(w, mine["id"], w.provider), 404, "not_found")
    assert route(w, mine["id"], w.provider["id"]).status_code == 200
    assert listed(w, w.provider) == [mine["id"]]
    assert get(w, mine["id"], w.provider).status_code == 200
    refused(get(w, mine["id"], other_department), 404, "not_found")
    refused(
        answer(w, mine["id"], other_department, status="planned", answer="不是我们的"),
        404,
        "not_found",
    )
    # Routed on to another department: the first no longer sees it.
    rerouted = conforms(route(w, mine["id"], other_department["id"], "应由民政局答复"), Demand)
    assert rerouted["provider_id"] == other_department["id"]
    assert listed(w, w.provider) == [] and listed(w, other_department) == [mine["id"]]
    # The bureau and the regulator see all, newest first.
    for overseer in (w.bureau, w.regulator):
        assert listed(w, overseer) == [theirs["id"], mine["id"]]
        assert get(w, theirs["id"], overseer).status_code == 200
    # Filtered by status.
    assert listed(w, w.bureau, "?status=routed") == [mine["id"]]
    assert listed(w, w.bureau, "?status=open") == [theirs["id"]]
    refused(
        w.client.get("/v1/demands?status=done", headers=w.h(w.bureau)),
        400,
        "bad_request",
        "open, routed, planned, refused, published",
    )
    refused(get(w, "dm-000000000000", w.bureau), 404, "not_found", "GET /v1/demands")


def test_each_role_takes_only_its_own_steps(local_world: World) -> None:
    w = local_world
    d = raise_demand(w)
    for who in (w.bureau, w.provider, w.regulator):
        r = w.client.post("/v1/demands", json=WANTED, headers=w.h(who))
        refused(r, 403, "forbidden", "operator")
    for who in (w.operator, w.provider, w.regulator):
        refused(
            w.client.post(
                f"/v1/demands/{d['id']}/route",
                json={"provider_id": w.provider["id"]},
                headers=w.h(who),
            ),
            403,
            "forbidden",
            "bureau",
        )
    for who in (w.operator, w.regulator):
        refused(answer(w, d["id"], who, status="planned", answer="x"), 403, "forbidden")
    assert conforms(get(w, d["id"], w.operator), Demand)["status"] == "open"
    assert [e["type"] for e in log_events(w, d["id"])] == ["demand.raised"]


def test_refusals_say_what_was_wrong_and_how_to_fix_it(local_world: World) -> None:
    w = local_world
    post = w.client.post

    def raised(**body: Any) -> Any:
        return post("/v1/demands", json={**WANTED, **body}, headers=w.h(w.operator))

    refused(raised(dataset="没有这个"), 400, "bad_request", "'没有这个' is not in the catalog")
    refused(raised(columns=["education"]), 400, "bad_request", "name it in dataset")
    refused(raised(dataset="population"), 400, "bad_request", 'name them in "columns"')
    refused(
        raised(dataset="population", columns=["district", "education"]),
        400,
        "bad_request",
        "columns district are already in dataset 'population'",
        "contract",
    )
    refused(raised(title="   "), 400, "bad_request", "title is empty")
    refused(raised(purpose=""), 400, "bad_request", "purpose is empty", "analysed for")
    refused(raised(title="长" * 301), 400, "bad_request", "keep it to 300")
    r = post("/v1/demands", json={"title": "x"}, headers=w.h(w.operator))
    refused(r, 400, "invalid_request", "description")
    refused(raised(colour="red"), 400, "invalid_request", "colour")

    d = raise_demand(w)
    # Routing: to a department, an active one, and only what is still open or routed.
    refused(route(w, d["id"], w.operator["id"]), 400, "bad_request", "is not a department")
    refused(route(w, d["id"], "d-nobody"), 400, "bad_request", "is not a department")
    refused(route(w, d["id"], ""), 400, "bad_request", "provider_id is empty")
    suspended = department(w, "市统计局")
    r = post(
        f"/v1/principals/{suspended['id']}/suspend",
        json={"reason": "整改期间"},
        headers=w.h(w.bureau),
    )
    assert r.status_code == 200, r.text
    refused(route(w, d["id"], suspended["id"]), 400, "bad_request", "is suspended")
    assert route(w, d["id"], w.provider["id"]).status_code == 200
    refused(route(w, d["id"], w.provider["id"]), 409, "conflict", "already routed")

    # Answering: a known answer, a reason for a refusal, a dataset that exists for a link.
    refused(answer(w, d["id"], status="done"), 400, "bad_request", "planned", "published")
    refused(answer(w, d["id"], status="refused"), 400, "bad_request", "needs the reason")
    refused(answer(w, d["id"], status="refused", answer="  "), 400, "bad_request", "reason")
    refused(answer(w, d["id"], status="planned"), 400, "bad_request", "answer is empty")
    refused(
        answer(w, d["id"], status="published", answer="已发布"),
        400,
        "bad_request",
        "answer_dataset",
    )
    refused(
        answer(w, d["id"], status="published", answer_dataset="没有这个"),
        400,
        "bad_request",
        "answer_dataset '没有这个' is not in the catalog",
    )
    refused(
        answer(w, d["id"], status="planned", answer="计划中", answer_dataset="population"),
        400,
        "bad_request",
        "leave it out",
    )
    assert conforms(get(w, d["id"], w.operator), Demand)["status"] == "routed"
    assert answer(w, d["id"], status="planned", answer="计划中").status_code == 200
    refused(answer(w, d["id"], status="planned", answer="还在计划"), 409, "conflict", "planned")
    refused(route(w, d["id"], w.provider["id"]), 409, "conflict", "planned already")
    assert answer(w, d["id"], status="published", answer_dataset="population").status_code == 200
    # Answered for good: a second answer, of any kind, is refused and changes nothing.
    for body in (
        {"status": "published", "answer_dataset": "population"},
        {"status": "refused", "answer": "改主意了"},
    ):
        refused(answer(w, d["id"], **body), 409, "conflict", "already answered published")
    after = conforms(get(w, d["id"], w.operator), Demand)
    assert after["status"] == "published" and len(after["history"]) == 4
    assert [e["type"] for e in log_events(w, d["id"])].count("demand.answered") == 2
    assert_log_verifies(w)


def test_paging_is_checked(local_world: World) -> None:
    w = local_world
    ids = [raise_demand(w, title=f"需求 {i}")["id"] for i in range(3)]
    assert listed(w, w.operator, "?limit=2") == ids[::-1][:2]
    assert listed(w, w.operator, "?limit=2&offset=2") == ids[:1]
    refused(
        w.client.get("/v1/demands?limit=0", headers=w.h(w.operator)), 400, "bad_request", "limit"
    )


def test_answers_sent_at_once_are_taken_once(local_world: World) -> None:
    """Eight answers to one demand at the same moment, each in a transaction of its own: one
    is taken, the others are refused as a second answer, and the log holds one."""
    w = local_world
    d = raise_demand(w)
    assert route(w, d["id"], w.provider["id"]).status_code == 200
    department = Actor(w.provider["id"], w.provider["name"], Role.provider)

    def send(i: int) -> str:
        try:
            demands.answer(w.ctx, department, d["id"], "refused", f"理由 {i}")
        except Conflict:
            return "conflict"
        return "taken"

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(send, range(8)))
    assert outcomes.count("taken") == 1 and outcomes.count("conflict") == 7, outcomes
    after = conforms(get(w, d["id"], w.operator), Demand)
    assert [h["status"] for h in after["history"]] == ["open", "routed", "refused"]
    assert [e["type"] for e in log_events(w, d["id"])].count("demand.answered") == 1
    assert_log_verifies(w)
