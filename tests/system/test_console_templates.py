"""Analysis templates in the console over HTTP: an operator submits one from the form (a
refusal beside it, what was typed kept), its department reviews the code and parameters it
is shown, the operator runs the approved version with parameters and lands on the job; the
bureau and the regulator read without forms; another operator sees nothing of it."""

from __future__ import annotations

import json
import re
from typing import Any

from conftest import World
from test_console import _fresh, _sign_in

SCRIPT = '<script>alert("x")</script>'
CODE = (
    'rows = table("population").filter(col("district") == params["district"])'
    '.group_by("gender").agg(n=count()).collect()\n'
    'emit("by_gender", rows)\n'
)
SCHEMA = {
    "type": "object",
    "properties": {"district": {"type": "string", "enum": ["城关区", "湖滨区"]}},
    "required": ["district"],
}


def _submit(browser: Any, csrf: str, **typed: str) -> Any:
    form = {
        "name": "分区性别构成",
        "description": "按区统计常住人口性别构成",
        "code": CODE,
        "params_schema": json.dumps(SCHEMA, ensure_ascii=False),
    }
    return browser.post("/templates", data={"csrf": csrf, **form, **typed}, follow_redirects=False)


def _api(w: World, path: str, who: Any) -> dict[str, Any]:
    r = w.client.get(path, headers=w.h(who))
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_a_template_is_submitted_reviewed_and_run_from_the_console(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()
    with _fresh(w) as op:
        csrf = _sign_in(op, w.operator["token"])
        page = op.get("/templates").text
        assert 'href="/templates"' in page and 'action="/templates"' in page
        # Refusals beside the form, what was typed kept, nothing submitted.
        r = _submit(op, csrf, code="x = 1\nimport os\n", description=SCRIPT)
        assert r.status_code == 400 and 'id="submit-error"' in r.text and "第 2 行" in r.text
        assert "&lt;script&gt;" in r.text and SCRIPT not in r.text
        r = _submit(op, csrf, params_schema="{not json")
        assert r.status_code == 400 and "params_schema is not JSON" in r.text
        r = _submit(op, csrf, params_schema='{"type": "object", "properties": {"x": {}}}')
        assert r.status_code == 400 and "params_schema.properties.x" in r.text
        assert _api(w, "/v1/templates", w.operator)["templates"] == []
        r = _submit(op, csrf)
        assert r.status_code == 303
        tid = r.headers["location"].rsplit("/", 1)[1]
        page = op.get(f"/templates/{tid}").text
        assert "审核中" in page and "市公安局" in page and "待审核" in page
        assert 'id="run-form"' not in page and "还没有通过审核的版本" in page
        assert f'action="/templates/{tid}/versions/1/withdraw"' in page
        assert 'class="answer review-form"' not in page  # an operator does not review

    with _fresh(w) as dept:
        csrf = _sign_in(dept, w.provider["token"])
        listing = dept.get("/templates").text
        assert tid in listing and "待本部门审核" in listing
        page = dept.get(f"/templates/{tid}").text
        # The department reads the exact code and the parameters it approves.
        assert "params[&#34;district&#34;]" in page or 'params["district"]' in page
        assert "&#34;enum&#34;" in page or '"enum"' in page
        assert f'action="/templates/{tid}/versions/1/review"' in page
        # Forms from another site change nothing.
        r = dept.post(
            f"/templates/{tid}/versions/1/review",
            data={"csrf": "forged", "decision": "approve"},
            follow_redirects=False,
        )
        assert r.status_code in (400, 401, 403)
        assert _api(w, f"/v1/templates/{tid}", w.operator)["versions"][0]["reviews"] == []
        r = dept.post(
            f"/templates/{tid}/versions/1/review",
            data={"csrf": csrf, "decision": "refuse", "reason": " ", "conditions": "仅汇总"},
        )
        assert r.status_code == 400 and 'id="review-error-1"' in r.text and "reason" in r.text
        assert "仅汇总" in r.text
        r = dept.post(
            f"/templates/{tid}/versions/1/review",
            data={"csrf": csrf, "decision": "approve", "reason": "", "conditions": "仅汇总"},
            follow_redirects=False,
        )
        assert r.status_code == 303
        page = dept.get(f"/templates/{tid}").text
        assert "已通过" in page and "仅汇总" in page and "review-form" not in page

    with _fresh(w) as op:
        csrf = _sign_in(op, w.operator["token"])
        page = op.get(f"/templates/{tid}").text
        assert 'id="run-form"' in page and f'value="{cid}"' in page
        assert "城关区" in page  # the parameters start from the first allowed value
        r = op.post(
            f"/templates/{tid}/runs",
            data={"csrf": csrf, "contract": cid, "version": "", "params": '{"district": "火星区"}'},
        )
        assert r.status_code == 400 and 'id="run-error"' in r.text and "district" in r.text
        assert "火星区" in r.text  # what was typed is kept
        r = op.post(
            f"/templates/{tid}/runs",
            data={"csrf": csrf, "contract": cid, "version": "", "params": "[1"},
        )
        assert r.status_code == 400 and "params are not JSON" in r.text
        assert _api(w, "/v1/jobs", w.operator)["jobs"] == []
        r = op.post(
            f"/templates/{tid}/runs",
            data={
                "csrf": csrf,
                "contract": cid,
                "version": "1",
                "params": '{"district": "湖滨区"}',
            },
            follow_redirects=False,
        )
        assert r.status_code == 303 and r.headers["location"].startswith("/jobs/")
        job_id = r.headers["location"].rsplit("/", 1)[1]
        job = w.wait_for_job(job_id)
        assert job["status"] == "succeeded" and job["origin"]["template_id"] == tid

    for who in (w.bureau, w.regulator["token"]):
        with _fresh(w) as reader:
            _sign_in(reader, who)
            page = reader.get(f"/templates/{tid}").text
            assert "分区性别构成" in page and "已通过" in page
            assert not re.search(r'<form method="post" action="/templates', page)
            assert tid in reader.get("/templates").text

    with _fresh(w) as other:
        _sign_in(other, w.other_operator["token"])
        assert tid not in other.get("/templates").text
        assert other.get(f"/templates/{tid}").status_code == 404
