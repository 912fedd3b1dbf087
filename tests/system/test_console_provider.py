"""A department's console pages over HTTP: the requests that touch its datasets (approve, or
refuse with a reason), how its datasets are used, and the walls: another department's
requests are refused as the API refuses them, text users typed stays text, and a form from
another site changes nothing."""

from __future__ import annotations

import re
from typing import Any

from conftest import GRANTS, World
from test_console import _fresh, _sign_in

COUNT = 'emit("n", table("population").agg(n=count()).collect())'
SCRIPT = '<script>alert("x")</script>"><img src=x onerror=alert(1)>'


def _apply(w: World, purpose: str = "养老服务设施规划", operator: str = "operator") -> str:
    body = {
        "datasets": GRANTS,
        "purpose": purpose,
        "purpose_class": "commercial",
        "valid_from": "2026-01-01T00:00:00Z",
        "valid_to": "2030-01-01T00:00:00Z",
    }
    r = w.client.post("/v1/contracts", json=body, headers=w.h(getattr(w, operator)))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _status(w: World, cid: str) -> str:
    return str(w.client.get(f"/v1/contracts/{cid}", headers=w.h(w.bureau)).json()["status"])


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def _other_department(w: World) -> dict[str, Any]:
    r = w.client.post(
        "/v1/principals", json={"name": "市民政局", "role": "provider"}, headers=w.h(w.bureau)
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_a_department_sees_each_request_with_its_operator_columns_uses_and_purpose(
    local_world: World,
) -> None:
    w = local_world
    cid = _apply(w, purpose="社区养老床位测算")
    with _fresh(w) as browser:
        _sign_in(browser, w.provider["token"])
        page = browser.get("/requests")
        assert page.status_code == 200
        card = page.text.split(f'id="c-{cid}"')[1].split("</li>")[0]
        assert w.operator["name"] in card and "社区养老床位测算" in card
        for column in GRANTS["population"]:
            assert f"<code>{column}</code>" in card
        assert "分组" in card and "聚合" in card and "待部门审批" in card
        assert f'action="/requests/{cid}/approve"' in card


def test_a_department_approves_and_refuses_with_a_reason_next_to_the_field(
    local_world: World,
) -> None:
    w = local_world
    yes, no = _apply(w), _apply(w)
    with _fresh(w) as browser:
        csrf = _sign_in(browser, w.provider["token"])
        r = browser.post(f"/requests/{yes}/approve", data={"csrf": csrf}, follow_redirects=False)
        assert r.status_code == 303 and _status(w, yes) == "approved"
        # No reason: refused next to the field, what was typed kept, nothing changed.
        empty = browser.post(f"/requests/{no}/refuse", data={"csrf": csrf, "reason": "   "})
        assert empty.status_code == 400
        assert f'id="reason-error-{no}"' in empty.text and "needs a reason" in empty.text
        assert _status(w, no) == "pending_approval"
        r = browser.post(
            f"/requests/{no}/refuse",
            data={"csrf": csrf, "reason": "字段超出用途所需"},
            follow_redirects=False,
        )
        assert r.status_code == 303
        view = w.client.get(f"/v1/contracts/{no}", headers=w.h(w.operator)).json()
        assert view["status"] == "refused" and view["status_reason"] == "字段超出用途所需"
        page = browser.get("/requests").text
        assert "字段超出用途所需" in page
        # Decided requests offer no more buttons.
        assert f'action="/requests/{no}/refuse"' not in page
        assert f'action="/requests/{yes}/approve"' not in page


def test_another_departments_requests_are_neither_shown_nor_decided(local_world: World) -> None:
    w = local_world
    cid = _apply(w, purpose="只给公安局看的目的")
    other = _other_department(w)
    with _fresh(w) as browser:
        csrf = _sign_in(browser, other["token"])
        page = browser.get("/requests").text
        assert cid not in page and "只给公安局看的目的" not in page
        for action, data in (("approve", {}), ("refuse", {"reason": "越权"})):
            r = browser.post(f"/requests/{cid}/{action}", data={"csrf": csrf, **data})
            assert r.status_code == 404, r.text
            assert "只给公安局看的目的" not in r.text
            assert "no contract" in r.text
        assert _status(w, cid) == "pending_approval"
        # The usage page of this department shows none of the other's datasets.
        usage = browser.get("/usage").text
        assert "population" not in usage


def test_only_a_department_has_these_pages(local_world: World) -> None:
    w = local_world
    with _fresh(w) as browser:
        assert browser.get("/requests", follow_redirects=False).status_code == 303
        _sign_in(browser, w.operator["token"])
        for path in ("/requests", "/usage"):
            assert browser.get(path).status_code == 403


def test_usage_shows_jobs_and_rows_per_dataset_and_month_and_the_contracts_using_it(
    local_world: World,
) -> None:
    w = local_world
    cid = w.active_contract()
    job = w.run(cid, COUNT).json()
    assert job["status"] == "succeeded", job
    rows = job["usage"]["rows_by_dataset"]["population"]
    with _fresh(w) as browser:
        _sign_in(browser, w.provider["token"])
        page = browser.get("/usage")
        assert page.status_code == 200
        section = page.text.split('id="d-population"')[1].split("</section>")[0]
        assert f"<td>1</td><td>{rows:,}</td>" in section
        assert cid in section and w.operator["name"] in section
        assert '<svg class="chart"' in section
        # Counts only: never the job's code or what it released.
        assert "emit(" not in page.text and job["id"] not in page.text
    # The API gives the department the same counts, and nobody else.
    api = w.client.get("/v1/usage/datasets", headers=w.h(w.provider))
    assert api.status_code == 200
    (used,) = api.json()["datasets"]
    assert (used["dataset"], used["jobs"], used["rows"]) == ("population", 1, rows)
    for other in (w.operator, w.regulator):
        assert w.client.get("/v1/usage/datasets", headers=w.h(other)).status_code == 403


def test_text_typed_by_operators_and_departments_reaches_the_page_as_text(
    local_world: World,
) -> None:
    w = local_world
    cid = _apply(w, purpose=SCRIPT)
    with _fresh(w) as browser:
        csrf = _sign_in(browser, w.provider["token"])
        r = browser.post(f"/requests/{cid}/refuse", data={"csrf": csrf, "reason": SCRIPT})
        assert r.status_code == 200  # followed to the queue
        for text in (r.text, browser.get("/usage").text):
            assert "<script>alert" not in text and "<img src=x" not in text
        assert "&lt;script&gt;alert(" in r.text


def test_a_decision_posted_from_another_site_is_refused(local_world: World) -> None:
    w = local_world
    cid = _apply(w)
    with _fresh(w) as browser:
        csrf = _sign_in(browser, w.provider["token"])
        for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
            r = browser.post(f"/requests/{cid}/approve", data={"csrf": csrf}, headers=headers)
            assert r.status_code == 403
        assert browser.post(f"/requests/{cid}/approve", data={}).status_code == 401
        assert _status(w, cid) == "pending_approval"
