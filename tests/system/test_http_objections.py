"""Objections over HTTP (FastAPI's TestClient), on SQLite and PostgreSQL: a quality objection
about a dataset version answered by its department (or the bureau), an objection to the
refusal of a job answered by the bureau; who sees which (404 otherwise), who may answer, once;
every refusal with its message; the log holds each step and still verifies; and an objection
to a refusal says nothing more of the data than the refusal did."""

from __future__ import annotations

import json
from typing import Any

from conftest import World
from test_http_demands import assert_log_verifies, conforms, department, log_events, refused

from sandbox.api.models.demands import Objection, Objections

BY_DISTRICT = 'emit("t", table("population").group_by("district").agg(n=count()).collect())'
# A whole-table count over nobody: a cell of no contributors, suppressed.
NOBODY = (
    'emit("t", table("population").filter(col("district") == "无此区")'
    '.agg(n=count(), m=mean("income")).collect())'
)
QUALITY = "2024 年出生日期有大量 1900-01-01，疑似缺省值未清洗"


def raise_objection(w: World, who: Any, **body: Any) -> Any:
    return w.client.post("/v1/objections", json=body, headers=w.h(who))


def quality(w: World, who: Any = None, **body: Any) -> dict[str, Any]:
    r = raise_objection(
        w,
        who or w.operator,
        **{"kind": "quality", "dataset": "population", "text": QUALITY, **body},
    )
    return conforms(r, Objection, 201)


def answer(w: World, objection_id: str, who: Any, text: Any = "已核实并修正") -> Any:
    return w.client.post(
        f"/v1/objections/{objection_id}/answer", json={"answer": text}, headers=w.h(who)
    )


def get(w: World, objection_id: str, who: Any) -> Any:
    return w.client.get(f"/v1/objections/{objection_id}", headers=w.h(who))


def listed(w: World, who: Any, query: str = "") -> list[str]:
    body = conforms(w.client.get(f"/v1/objections{query}", headers=w.h(who)), Objections)
    return [o["id"] for o in body["objections"]]


def rejected_job(w: World, cid: str, operator: str = "operator") -> str:
    r = w.run(cid, "x = 1\nimport os\n", operator=operator)
    assert r.status_code == 400 and r.json()["job_id"], r.text
    return str(r.json()["job_id"])


def finished_job(w: World, cid: str, code: str) -> dict[str, Any]:
    r = w.run(cid, code)
    assert r.status_code == 201 and r.json()["status"] == "succeeded", r.text
    return r.json()  # type: ignore[no-any-return]


def test_a_quality_objection_is_answered_by_the_department_each_step_logged(
    local_world: World,
) -> None:
    w = local_world
    o = quality(w)
    assert o["id"].startswith("ob-") and o["status"] == "open" and o["text"] == QUALITY
    # Left out, the version is the one in force.
    assert o["dataset"] == "population" and o["version"] == 1 and o["job_id"] is None
    assert o["owner"] == "provider" and o["owner_id"] == w.provider["id"]
    assert o["owner_name"] == "市公安局" and o["raised_by_name"] == "某数据科技有限公司"
    # The department sees it among those it must answer, and answers it, once.
    assert listed(w, w.provider) == [o["id"]]
    done = conforms(
        answer(w, o["id"], w.provider, "已清洗出生日期缺省值，将发布第 2 版"), Objection
    )
    assert done["status"] == "answered" and done["answered_by"] == w.provider["id"]
    assert done["answer"] == "已清洗出生日期缺省值，将发布第 2 版" and done["answered_at"]
    refused(answer(w, o["id"], w.provider), 409, "conflict", "already answered", "answered once")
    refused(answer(w, o["id"], w.bureau), 409, "conflict", "already answered")
    # The operator reads the answer and the steps.
    mine = conforms(get(w, o["id"], w.operator), Objection)
    assert mine["answer"] == done["answer"]
    assert [(h["status"], h["by"]) for h in mine["history"]] == [
        ("open", w.operator["id"]),
        ("answered", w.provider["id"]),
    ]
    events = log_events(w, o["id"])
    assert [e["type"] for e in events] == ["objection.raised", "objection.answered"]
    assert events[0]["data"] == {
        "kind": "quality",
        "dataset": "population",
        "version": 1,
        "job_id": None,
        "owner_id": w.provider["id"],
        "text": QUALITY,
    }
    assert events[1]["actor"] == w.provider["id"]
    assert events[1]["data"] == {"kind": "quality", "answer": done["answer"]}
    assert listed(w, w.provider, "?status=answered") == [o["id"]]
    assert listed(w, w.provider, "?status=open") == []
    assert_log_verifies(w)


def test_another_department_objects_and_the_bureau_may_answer_for_the_owner(
    local_world: World,
) -> None:
    w = local_world
    civil = department(w)
    o = quality(w, civil, version=1, text="户籍类型与民政登记不一致")
    assert o["raised_by"] == civil["id"] and o["owner_id"] == w.provider["id"]
    # The raising department sees it; the owner too; a third department does not.
    assert listed(w, civil) == [o["id"]] and listed(w, w.provider) == [o["id"]]
    third = department(w, "市统计局")
    refused(get(w, o["id"], third), 404, "not_found")
    refused(answer(w, o["id"], third), 404, "not_found")
    # The raiser does not answer its own objection.
    refused(answer(w, o["id"], civil), 403, "forbidden", "answered by the department")
    done = conforms(answer(w, o["id"], w.bureau, "数据局已协调两部门核对"), Objection)
    assert done["status"] == "answered" and done["answered_by_name"] == "数据局"
    # A department does not object to its own dataset.
    refused(
        raise_objection(w, w.provider, kind="quality", dataset="population", text="自查"),
        400,
        "bad_request",
        "your department's own",
        "new version",
    )


def test_an_objection_to_a_refusal_is_answered_by_the_bureau(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()
    job_id = rejected_job(w, cid)
    r = raise_objection(
        w, w.operator, kind="refusal", job_id=job_id, text="第 2 行并未导入任何模块"
    )
    o = conforms(r, Objection, 201)
    assert o["kind"] == "refusal" and o["job_id"] == job_id and o["owner"] == "bureau"
    assert o["owner_id"] is None and o["dataset"] is None and o["version"] is None
    # One open objection per refusal.
    again = raise_objection(w, w.operator, kind="refusal", job_id=job_id, text="再次提出")
    refused(again, 409, "conflict", o["id"], "still open")
    # The department does not answer it, nor see it; the regulator sees but does not answer.
    refused(get(w, o["id"], w.provider), 404, "not_found")
    assert listed(w, w.provider) == []
    assert listed(w, w.regulator) == [o["id"]]
    refused(answer(w, o["id"], w.regulator), 403, "forbidden")
    refused(answer(w, o["id"], w.operator), 403, "forbidden")
    refused(answer(w, o["id"], w.bureau, "   "), 400, "bad_request", "answer is empty")
    done = conforms(answer(w, o["id"], w.bureau, "代码含 import 语句，按规定拒绝"), Objection)
    assert done["status"] == "answered"
    # Answered: a new objection to the same refusal may be raised.
    r = raise_objection(w, w.operator, kind="refusal", job_id=job_id, text="仍有疑问")
    assert r.status_code == 201, r.text
    assert_log_verifies(w)


def test_only_refused_jobs_of_ones_own_are_objected_to(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()
    fine = finished_job(w, cid, BY_DISTRICT)
    refused(
        raise_objection(w, w.operator, kind="refusal", job_id=fine["id"], text="为什么"),
        400,
        "bad_request",
        "succeeded",
        "no refusal to object to",
    )
    suppressed = finished_job(w, cid, NOBODY)
    assert suppressed["outputs"]["t"]["suppressed"], suppressed
    r = raise_objection(w, w.operator, kind="refusal", job_id=suppressed["id"], text="为何隐藏")
    assert r.status_code == 201, r.text
    # Another operator's job, or none: not found, as the job itself would be.
    other = rejected_job(w, w.active_contract(operator="other_operator"), "other_operator")
    for job_id in (other, "j-000000000000"):
        r = raise_objection(w, w.operator, kind="refusal", job_id=job_id, text="异议")
        refused(r, 404, "not_found", "no job")
    assert listed(w, w.other_operator) == []


def test_an_objection_to_a_refusal_tells_no_more_than_the_refusal(local_world: World) -> None:
    """Nothing of the job's disclosure report reaches the objection, its answer or its log
    entry: whoever reads them learns no more about the data than the operator was told."""
    w = local_world
    cid = w.active_contract()
    job = finished_job(w, cid, NOBODY)
    full = w.client.get(f"/v1/jobs/{job['id']}", headers=w.h(w.regulator)).json()
    assert full["disclosure"]["releases"][0]["suppressed"]
    r = raise_objection(w, w.operator, kind="refusal", job_id=job["id"], text="请说明原因")
    o = conforms(r, Objection, 201)
    for who in (w.operator, w.bureau, w.regulator):
        body = get(w, o["id"], who).json()
        text = json.dumps(body, ensure_ascii=False)
        for word in ("contributors", "min_contributors", "rule", "suppressed", "disclosure"):
            assert word not in text, (word, text)
        assert set(body) == set(o)
    (raised,) = [e for e in log_events(w, o["id"]) if e["type"] == "objection.raised"]
    assert set(raised["data"]) == {"kind", "dataset", "version", "job_id", "owner_id", "text"}


def test_who_raises_which_objection(local_world: World) -> None:
    w = local_world
    for who in (w.bureau, w.regulator):
        r = raise_objection(w, who, kind="quality", dataset="population", text="质量问题")
        refused(r, 403, "forbidden", "operator or a department")
    cid = w.active_contract()
    job_id = rejected_job(w, cid)
    for who in (w.provider, w.bureau, w.regulator):
        r = raise_objection(w, who, kind="refusal", job_id=job_id, text="异议")
        refused(r, 403, "forbidden", "operator whose job was refused")
    mine, theirs = quality(w), quality(w, w.other_operator, text="另一家公司的异议")
    assert listed(w, w.operator) == [mine["id"]]
    refused(get(w, theirs["id"], w.operator), 404, "not_found", "GET /v1/objections")
    assert listed(w, w.bureau) == [theirs["id"], mine["id"]]
    assert listed(w, w.regulator, "?kind=quality") == [theirs["id"], mine["id"]]
    assert listed(w, w.regulator, "?kind=refusal") == []


def test_refusals_say_what_was_wrong_and_how_to_fix_it(local_world: World) -> None:
    w = local_world
    op = w.operator

    def sent(**body: Any) -> Any:
        return raise_objection(w, op, **body)

    refused(sent(kind="other", text="x"), 400, "bad_request", "'quality'", "'refusal'")
    refused(sent(kind="quality", text="x"), 400, "bad_request", "names the dataset")
    refused(
        sent(kind="quality", dataset="没有这个", text="x"),
        400,
        "bad_request",
        "'没有这个' is not in the catalog",
    )
    refused(
        sent(kind="quality", dataset="population", version=7, text="x"),
        400,
        "bad_request",
        "has no version 7",
        "its versions are 1",
    )
    refused(
        sent(kind="quality", dataset="population", text="  "), 400, "bad_request", "text is empty"
    )
    refused(
        sent(kind="quality", dataset="population", job_id="j-1", text="x"),
        400,
        "bad_request",
        "leave job_id out",
    )
    refused(sent(kind="refusal", text="x"), 400, "bad_request", "job_id")
    refused(
        sent(kind="refusal", job_id="j-1", dataset="population", text="x"),
        400,
        "bad_request",
        "send job_id only",
    )
    refused(sent(kind="quality", dataset="population"), 400, "invalid_request", "text")
    refused(
        w.client.get("/v1/objections?status=closed", headers=w.h(op)),
        400,
        "bad_request",
        "open, answered",
    )
    refused(get(w, "ob-000000000000", w.bureau), 404, "not_found")
    refused(answer(w, "ob-000000000000", w.bureau), 404, "not_found")
    assert listed(w, w.bureau) == []
