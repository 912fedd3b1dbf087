"""Analysis templates in a real browser: an operator submits a template from the form, its
department reads the code and parameters and approves (a refusal without its reason said
beside the form first), and the operator runs it with parameters and lands on the job; the
template page on a phone."""

from __future__ import annotations

import json
from typing import Any

from live import Cast, active_contract

from .conftest import Watched, follow, shot, sign_in

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


def _go_as(tab: Watched, token: str, path: str) -> Any:
    tab.page.context.clear_cookies()
    sign_in(tab, token)
    tab.go(path)
    return tab.page


def test_a_template_submitted_approved_and_run(tab: Watched, phone: Watched, site: Cast) -> None:
    department = site.provider.rotate_token()
    cid = active_contract(site)
    page = _go_as(tab, site.operator_token, "/templates")
    page.fill("#template-name", "分区性别构成")
    page.fill("#template-description", "按区统计常住人口性别构成")
    page.fill("#template-code", CODE)
    page.fill("#template-schema", json.dumps(SCHEMA, ensure_ascii=False))
    follow(page, "#template-submit")
    tid = page.url.rsplit("/", 1)[1]
    assert tid.startswith("tp-"), page.url
    assert "审核中" in page.locator("#version-1").inner_text()
    assert "还没有通过审核的版本" in page.locator("#run").inner_text()

    page = _go_as(tab, department, "/templates")
    card = page.locator(f"#template-{tid}")
    assert "待本部门审核" in card.inner_text()
    follow(page, card.locator("h2 a"))
    version = page.locator("#version-1")
    assert 'params["district"]' in version.locator("pre.code").first.inner_text()
    assert "湖滨区" in version.locator("pre.code").nth(1).inner_text()
    version.locator("input[value=refuse]").check()
    follow(page, version.locator("form.review-form button"))
    assert "reason" in page.locator("#review-error-1").inner_text()
    version = page.locator("#version-1")
    version.locator("input[value=approve]").check()
    version.locator("#review-conditions-1").fill("结果仅用于养老服务规划")
    shot(tab.page, "provider-template-review")
    follow(page, version.locator("form.review-form button"))
    assert "已通过" in page.locator("#version-1 h2").inner_text()
    assert "结果仅用于养老服务规划" in page.locator("#version-1 .reviews").inner_text()

    page = _go_as(tab, site.operator_token, f"/templates/{tid}")
    page.locator("#run-contract").select_option(cid)
    page.fill("#run-params", '{"district": "火星区"}')
    follow(page, "#run-submit")
    assert "district" in page.locator("#run-error").inner_text()
    page.fill("#run-params", '{"district": "湖滨区"}')
    follow(page, "#run-submit")
    assert "/jobs/" in page.url
    job_id = page.url.rsplit("/", 1)[1]
    job = site.operator.job(job_id).wait()
    assert job.status == "succeeded" and job.origin == {"template_id": tid, "template_version": 1}
    tab.go(f"/jobs/{job_id}")
    assert "已完成" in tab.page.locator("#job-status").inner_text()
    assert "by_gender" in tab.page.content()
    shot(tab.page, "operator-template-run")

    small = _go_as(phone, site.operator_token, f"/templates/{tid}")
    width = small.evaluate("document.documentElement.scrollWidth")
    assert width <= 390 + 1, width  # the code wraps instead of widening the page
