"""Demand lists and objections in a real browser: an operator raises a demand, the bureau
routes it to the department, the department (its reason missing first, said beside the form)
publishes it with a link to a dataset, and the operator follows the link; an objection to a
refusal raised from the job's page and answered by the bureau, and one to a dataset's quality
raised from its page and answered by the department; the pages on a phone."""

from __future__ import annotations

import re
from typing import Any

import pytest
from live import Cast, active_contract

from operators.client import SandboxAPIError

from .conftest import Watched, follow, shot, sign_in

TITLE = "全市养老机构床位与入住情况"


def _go_as(tab: Watched, token: str, path: str) -> Any:
    """Signed in as the token's holder (whoever was signed in before, gone), at `path`."""
    tab.page.context.clear_cookies()
    sign_in(tab, token)
    tab.go(path)
    return tab.page


def test_a_demand_raised_routed_published_and_followed(tab: Watched, site: Cast) -> None:
    department = site.provider.rotate_token()
    provider_id = site.provider.me()["id"]
    page = _go_as(tab, site.operator_token, "/demands")
    page.fill("#demand-title", TITLE)
    page.fill("#demand-description", "各区养老机构的床位数、入住人数，按月，2023 年起")
    page.fill("#demand-purpose", "测算社区养老服务缺口")
    follow(page, "form.raise button[type=submit]")
    found = re.search(r"#demand-(dm-[0-9a-f]+)$", page.url)
    assert found, page.url
    demand_id = found.group(1)
    card = page.locator(f"#demand-{demand_id}")
    assert TITLE in card.inner_text() and "待处理" in card.inner_text()

    page = _go_as(tab, site.server.bureau_token, "/demands")
    card = page.locator(f"#demand-{demand_id}")
    assert "某数据科技有限公司" in card.inner_text()
    card.locator(f"#provider-{demand_id}").select_option(provider_id)
    card.locator(f"#route-note-{demand_id}").fill("人口相关数据请公安局答复")
    follow(page, card.locator("form.route button"))
    assert "已转交部门" in page.locator(f"#demand-{demand_id} .meta").inner_text()
    assert "市公安局" in page.locator(f"#demand-{demand_id} .provider").inner_text()
    shot(tab.page, "bureau-demands")

    page = _go_as(tab, department, "/demands")
    card = page.locator(f"#demand-{demand_id}")
    assert TITLE in card.inner_text()
    card.locator(f"#answer-status-{demand_id}").select_option("refused")
    follow(page, card.locator("form.answer button"))
    assert "needs the reason" in page.locator(f"#answer-error-{demand_id}").inner_text()
    card = page.locator(f"#demand-{demand_id}")
    card.locator(f"#answer-status-{demand_id}").select_option("published")
    card.locator(f"#answer-text-{demand_id}").fill("已在人口基础信息库中提供，可申请使用")
    card.locator(f"#answer-dataset-{demand_id}").fill("population")
    follow(page, card.locator("form.answer button"))
    assert "已发布" in page.locator(f"#demand-{demand_id} .meta").inner_text()

    page = _go_as(tab, site.operator_token, "/demands")
    card = page.locator(f"#demand-{demand_id}")
    assert "已发布" in card.inner_text()
    assert "已在人口基础信息库中提供，可申请使用" in card.locator(".answer").inner_text()
    follow(page, card.locator(".answer-dataset a[href='/catalog/population']"))
    assert page.url.endswith("/catalog/population")
    assert page.locator("#dictionary").count() == 1
    assert site.operator.demand(demand_id)["status"] == "published"


def test_objections_to_a_refusal_and_to_quality_raised_and_answered(
    tab: Watched, site: Cast
) -> None:
    department = site.provider.rotate_token()
    cid = active_contract(site)
    with pytest.raises(SandboxAPIError) as refused:
        site.operator.submit(cid, "x = 1\nimport os\n", wait=True)
    job_id = refused.value.details["job_id"]

    page = _go_as(tab, site.operator_token, f"/jobs/{job_id}")
    follow(page, "#object")
    page.fill("#objection-text", "第 2 行的 import 是注释示例，请复核")
    follow(page, "form.raise button[type=submit]")
    found = re.search(r"/objections/(ob-[0-9a-f]+)$", page.url)
    assert found, page.url
    refusal = found.group(1)
    assert "待答复" in page.locator("#objection-status").inner_text()
    assert "数据局" in page.locator("#objection .owner").inner_text()

    tab.go("/catalog/population")
    follow(page, "#object")
    page.fill("#objection-version", "7")
    page.fill("#objection-text", "出生日期有大量 1900-01-01")
    follow(page, "form.raise button[type=submit]")
    assert "has no version 7" in page.locator("#objection-error").inner_text()
    assert page.locator("#objection-text").input_value() == "出生日期有大量 1900-01-01"
    page.fill("#objection-version", "")
    follow(page, "form.raise button[type=submit]")
    quality = page.url.rsplit("/", 1)[1]
    assert "市公安局" in page.locator("#objection .owner").inner_text()

    page = _go_as(tab, site.server.bureau_token, "/objections")
    follow(page, f"#objection-{refusal} h2 a")
    page.fill("#objection-answer", "代码含 import 语句，按规定拒绝；注释中的示例请删除")
    follow(page, "form.answer button")
    assert "已答复" in page.locator("#objection-status").inner_text()

    page = _go_as(tab, department, f"/objections/{quality}")
    follow(page, "form.answer button")
    assert "answer is empty" in page.locator("#objection-answer-error").inner_text()
    page.fill("#objection-answer", "已核实，将发布清洗后的第 2 版")
    follow(page, "form.answer button")
    assert "已答复" in page.locator("#objection-status").inner_text()

    page = _go_as(tab, site.operator_token, "/objections")
    assert "代码含 import 语句" in page.locator(f"#objection-{refusal} .answer").inner_text()
    assert "已核实" in page.locator(f"#objection-{quality} .answer").inner_text()
    assert site.operator.objection(refusal)["status"] == "answered"


def test_the_pages_fit_a_phone(phone: Watched, site: Cast) -> None:
    demand = site.operator.raise_demand("手机上查看的需求", "各区数据", "规划")
    sign_in(phone, site.operator_token)
    for path in ("/demands", f"/demands/{demand['id']}", "/objections"):
        assert phone.go(path).status == 200, path
        width = phone.page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, (path, width)
    phone.page.context.clear_cookies()
    sign_in(phone, site.server.bureau_token)
    for path in ("/demands", "/objections"):
        assert phone.go(path).status == 200, path
        assert phone.page.evaluate("document.documentElement.scrollWidth") <= 390, path
