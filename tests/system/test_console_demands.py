"""Demand lists and objections in the console over HTTP: each role's pages and forms, the
refusals beside the form they concern with what was typed kept, and the walls: what a person
may not see is an error page as in the API, forms from another site change nothing, text
people typed stays text, and an objection page shows nothing of a disclosure report."""

from __future__ import annotations

import re
from typing import Any

from conftest import World
from fastapi.testclient import TestClient
from test_console import _fresh, _sign_in
from test_http_objections import NOBODY, rejected_job

SCRIPT = '<script>alert("x")</script>"><img src=x onerror=alert(1)>'


def _card(page: str, element_id: str) -> str:
    """One card of a list (its steps are list items too: the card ends on a line of its own)."""
    return re.split(r"\n\s*</li>", page.split(f'id="{element_id}"')[1])[0]


def _raise(browser: TestClient, csrf: str, **typed: str) -> Any:
    form = {"title": "全市养老机构床位", "description": "各区床位数与入住人数", "purpose": "规划"}
    form |= {"dataset": "", "columns": ""}
    return browser.post("/demands", data={"csrf": csrf, **form, **typed}, follow_redirects=False)


def _demand_id(location: str) -> str:
    found = re.search(r"demand-(dm-[0-9a-f]+)", location)
    assert found, location
    return found.group(1)


def _api(w: World, path: str, who: Any) -> dict[str, Any]:
    r = w.client.get(path, headers=w.h(who))
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_a_demand_goes_from_operator_to_bureau_to_department_and_back(local_world: World) -> None:
    w = local_world
    with _fresh(w) as op:
        csrf = _sign_in(op, w.operator["token"])
        page = op.get("/demands").text
        assert 'href="/demands"' in page and 'href="/objections"' in page  # in the menu
        assert 'action="/demands"' in page and "提出数据需求" in page
        # A refusal beside its field, what was typed kept, nothing raised.
        r = _raise(op, csrf, title="  ", purpose="测算养老缺口")
        assert r.status_code == 400
        title_field = r.text.split('id="demand-title"')[1].split("</div>")[0]
        assert 'id="raise-error"' in title_field and "title is empty" in title_field
        assert "测算养老缺口" in r.text
        r = _raise(op, csrf, dataset="population", columns="district")
        assert r.status_code == 400
        columns_field = r.text.split('id="demand-columns"')[1].split("</div>")[0]
        assert "are already in dataset" in columns_field
        assert _api(w, "/v1/demands", w.operator)["demands"] == []
        r = _raise(op, csrf, dataset="population", columns="education，marital_status")
        assert r.status_code == 303
        demand_id = _demand_id(r.headers["location"])
        card = _card(op.get("/demands").text, f"demand-{demand_id}")
        assert "全市养老机构床位" in card and "待处理" in card
        assert "<code>education</code>" in card and "<code>marital_status</code>" in card
        assert 'action="/demands/' not in card  # an operator neither routes nor answers

    with _fresh(w) as bureau:
        csrf = _sign_in(bureau, w.bureau)
        card = _card(bureau.get("/demands").text, f"demand-{demand_id}")
        assert w.operator["name"] in card and f'value="{w.provider["id"]}"' in card
        assert f'action="/demands/{demand_id}/route"' in card
        r = bureau.post(
            f"/demands/{demand_id}/route",
            data={"csrf": csrf, "provider_id": w.operator["id"], "note": "转交"},
        )
        assert r.status_code == 400 and f'id="route-error-{demand_id}"' in r.text
        assert "is not a department" in r.text and "转交" in r.text
        r = bureau.post(
            f"/demands/{demand_id}/route",
            data={"csrf": csrf, "provider_id": w.provider["id"], "note": "请公安局答复"},
            follow_redirects=False,
        )
        assert r.status_code == 303 and r.headers["location"] == f"/demands/{demand_id}"

    with _fresh(w) as department:
        csrf = _sign_in(department, w.provider["token"])
        page = department.get("/demands").text
        card = _card(page, f"demand-{demand_id}")
        assert "请公安局答复" in card and f'action="/demands/{demand_id}/answer"' in card
        assert f'action="/demands/{demand_id}/route"' not in card
        r = department.post(
            f"/demands/{demand_id}/answer",
            data={"csrf": csrf, "status": "refused", "answer": " ", "answer_dataset": ""},
        )
        assert r.status_code == 400 and f'id="answer-error-{demand_id}"' in r.text
        assert "needs the reason" in r.text
        r = department.post(
            f"/demands/{demand_id}/answer",
            data={
                "csrf": csrf,
                "status": "published",
                "answer": "已在人口库第 2 版增加",
                "answer_dataset": "population",
            },
            follow_redirects=False,
        )
        assert r.status_code == 303
        done = department.get(f"/demands/{demand_id}").text
        assert f'action="/demands/{demand_id}/answer"' not in done  # final: no more forms

    with _fresh(w) as op:
        _sign_in(op, w.operator["token"])
        card = _card(op.get("/demands").text, f"demand-{demand_id}")
        assert "已发布" in card and "已在人口库第 2 版增加" in card
        assert 'href="/catalog/population"' in card
        assert 'href="/contracts/new?dataset=population"' in card
        assert op.get("/demands?status=published").text.count('class="card item') == 1
        assert op.get("/demands?status=open").text.count('class="card item') == 0
    assert _api(w, f"/v1/demands/{demand_id}", w.operator)["status"] == "published"


def test_who_sees_which_demand_in_the_console(local_world: World) -> None:
    w = local_world
    r = w.client.post(
        "/v1/demands",
        json={"title": "企业用电", "description": "月度用电量", "purpose": "产业分析"},
        headers=w.h(w.operator),
    )
    demand_id = r.json()["id"]
    with _fresh(w) as other:
        _sign_in(other, w.other_operator["token"])
        assert demand_id not in other.get("/demands").text
        r = other.get(f"/demands/{demand_id}")
        assert r.status_code == 404 and "no demand" in r.text
    with _fresh(w) as department:
        csrf = _sign_in(department, w.provider["token"])
        assert department.get(f"/demands/{demand_id}").status_code == 404
        r = department.post(
            f"/demands/{demand_id}/answer",
            data={"csrf": csrf, "status": "planned", "answer": "x", "answer_dataset": ""},
        )
        assert r.status_code == 404
    with _fresh(w) as regulator:
        csrf = _sign_in(regulator, w.regulator["token"])
        page = regulator.get("/demands").text
        assert demand_id in page and "企业用电" in page
        assert '<form method="post" action="/demands' not in page  # read-only
        r = regulator.post(
            f"/demands/{demand_id}/route", data={"csrf": csrf, "provider_id": w.provider["id"]}
        )
        assert r.status_code == 403
    with _fresh(w) as op:
        csrf = _sign_in(op, w.operator["token"])
        r = op.post(
            "/demands",
            data={"csrf": csrf, "title": "x", "description": "y", "purpose": "z"},
            headers={"Origin": "https://evil.example"},
        )
        assert r.status_code == 403
    assert len(_api(w, "/v1/demands", w.operator)["demands"]) == 1


def test_text_people_typed_stays_text(local_world: World) -> None:
    w = local_world
    body = {"title": SCRIPT, "description": SCRIPT, "purpose": SCRIPT}
    demand = w.client.post("/v1/demands", json=body, headers=w.h(w.operator)).json()
    w.client.post(
        "/v1/objections",
        json={"kind": "quality", "dataset": "population", "text": SCRIPT},
        headers=w.h(w.operator),
    )
    for who in (w.operator["token"], w.bureau, w.regulator["token"]):
        with _fresh(w) as browser:
            _sign_in(browser, who)
            for path in ("/demands", f"/demands/{demand['id']}", "/objections"):
                text = browser.get(path).text
                assert "<script>alert" not in text and "<img src=x" not in text, path
                assert "&lt;script&gt;alert(" in text, path


def test_a_quality_objection_from_the_dataset_page_answered_by_the_department(
    local_world: World,
) -> None:
    w = local_world
    with _fresh(w) as op:
        csrf = _sign_in(op, w.operator["token"])
        dataset_page = op.get("/catalog/population").text
        assert 'href="/objections/new?dataset=population"' in dataset_page
        assert 'href="/demands?dataset=population#raise"' in dataset_page
        form = op.get("/objections/new?dataset=population").text
        assert 'name="dataset" value="population"' in form
        r = op.post(
            "/objections/new",
            data={"csrf": csrf, "dataset": "population", "version": "9", "text": "出生日期异常"},
        )
        assert r.status_code == 400 and "has no version 9" in r.text and "出生日期异常" in r.text
        r = op.post(
            "/objections/new",
            data={"csrf": csrf, "dataset": "population", "version": "", "text": "出生日期异常"},
            follow_redirects=False,
        )
        assert r.status_code == 303
        objection_id = r.headers["location"].rsplit("/", 1)[1]
        page = op.get(r.headers["location"]).text
        assert "出生日期异常" in page and "待答复" in page and 'action="/objections/' not in page
    with _fresh(w) as department:
        csrf = _sign_in(department, w.provider["token"])
        # A department does not object to its own dataset: no link on its page.
        assert "/objections/new?dataset=" not in department.get("/catalog/population").text
        listing = department.get("/objections").text
        assert f'id="objection-{objection_id}"' in listing
        r = department.post(f"/objections/{objection_id}/answer", data={"csrf": csrf, "answer": ""})
        assert r.status_code == 400 and 'id="objection-answer-error"' in r.text
        r = department.post(
            f"/objections/{objection_id}/answer",
            data={"csrf": csrf, "answer": "已核实，第 2 版修正"},
            follow_redirects=False,
        )
        assert r.status_code == 303
    with _fresh(w) as op:
        _sign_in(op, w.operator["token"])
        page = op.get(f"/objections/{objection_id}").text
        assert "已核实，第 2 版修正" in page and "已答复" in page
    with _fresh(w) as other:
        _sign_in(other, w.other_operator["token"])
        assert other.get(f"/objections/{objection_id}").status_code == 404


def test_an_objection_to_a_refusal_from_the_job_page_answered_by_the_bureau(
    local_world: World,
) -> None:
    w = local_world
    cid = w.active_contract()
    rejected = rejected_job(w, cid)
    hidden = w.run(cid, NOBODY).json()
    fine = w.run(cid, 'emit("n", table("population").agg(n=count()).collect())').json()
    with _fresh(w) as op:
        csrf = _sign_in(op, w.operator["token"])
        for job_id in (rejected, hidden["id"]):
            assert f'href="/objections/new?job={job_id}"' in op.get(f"/jobs/{job_id}").text
        assert "/objections/new?job=" not in op.get(f"/jobs/{fine['id']}").text
        assert 'id="not-refused"' in op.get(f"/objections/new?job={fine['id']}").text
        r = op.post(
            "/objections/new",
            data={"csrf": csrf, "job": rejected, "text": "第 2 行并未导入模块"},
            follow_redirects=False,
        )
        assert r.status_code == 303
        objection_id = r.headers["location"].rsplit("/", 1)[1]
        page = op.get(r.headers["location"]).text
        assert f'href="/jobs/{rejected}"' in page and "数据局" in page
    with _fresh(w) as other:
        _sign_in(other, w.other_operator["token"])
        assert other.get(f"/objections/new?job={rejected}").status_code == 404
    with _fresh(w) as department:
        _sign_in(department, w.provider["token"])
        assert department.get(f"/objections/{objection_id}").status_code == 404
        assert objection_id not in department.get("/objections").text
    with _fresh(w) as bureau:
        csrf = _sign_in(bureau, w.bureau)
        page = bureau.get(f"/objections/{objection_id}").text
        assert 'action="/objections/' in page
        for word in ("contributors", "min_contributors", "disclosure"):
            assert word not in page
        r = bureau.post(
            f"/objections/{objection_id}/answer",
            data={"csrf": csrf, "answer": "代码含 import，按规定拒绝"},
            follow_redirects=False,
        )
        assert r.status_code == 303
        again = bureau.post(
            f"/objections/{objection_id}/answer", data={"csrf": csrf, "answer": "再"}
        )
        assert again.status_code == 409 and "already answered" in again.text
    with _fresh(w) as regulator:
        _sign_in(regulator, w.regulator["token"])
        page = regulator.get("/objections").text
        assert objection_id in page and 'action="/objections/' not in page
        assert f'href="/oversight/jobs/{rejected}"' in page
