"""Output review in a real browser: an operator's job is held (its page says so, with the time
waited); a department signs in, opens its queue, reads the held table and releases it; the
operator's page then shows the job finished with the released table."""

from __future__ import annotations

from typing import Any

from live import GRANTS, Cast

from .conftest import Watched, follow, shot, sign_in

CODE = "emit('按区', table('population').group_by('district').agg(n=count()).collect())"


def reviewed_contract(site: Cast) -> str:
    """An active contract whose every release is checked by people."""
    body = {
        "datasets": GRANTS,
        "purpose": "养老服务设施规划",
        "purpose_class": "commercial",
        "valid_from": "2026-01-01T00:00:00Z",
        "valid_to": "2030-01-01T00:00:00Z",
        "review": {"outputs": True},
    }
    cid = str(site.operator._request("POST", "/contracts", json=body)["id"])
    site.provider.approve_contract(cid)
    site.bureau.sign_contract(cid)
    assert site.operator.sign_contract(cid)["status"] == "active"
    return cid


def _go_as(tab: Watched, token: str, path: str) -> Any:
    tab.page.context.clear_cookies()
    sign_in(tab, token)
    tab.go(path)
    return tab.page


def test_a_reviewer_releases_a_held_job_from_the_queue(tab: Watched, site: Cast) -> None:
    cid = reviewed_contract(site)
    job = site.unsigned_operator.submit(cid, CODE, wait=True)
    assert job.status == "held"
    review_id = job.refresh().review["id"]  # type: ignore[index]

    page = _go_as(tab, site.operator_token, f"/jobs/{job.id}")
    assert "待审核" in page.locator("#job-status").inner_text()
    assert "已等待" in page.locator("#job-held").inner_text()
    assert page.locator("table.released").count() == 0

    department = site.provider.rotate_token()
    page = _go_as(tab, department, "/reviews")
    card = page.locator(f"#review-{review_id}")
    assert "合同要求审核全部结果" in card.inner_text()
    follow(page, card.locator("h2 a"))
    assert "城关区" in page.locator("#held").inner_text()
    shot(tab.page, "provider-review")
    follow(page, "#refuse")
    assert page.locator("#review-error").count() == 1  # a refusal needs its reason
    page.fill("#review-reason", "按区汇总，无个体信息")
    follow(page, "#release")
    assert "已放行" in page.locator("#review-status").inner_text()
    assert "按区汇总，无个体信息" in page.locator("#decisions").inner_text()

    assert job.wait(timeout=30).status == "succeeded"
    page = _go_as(tab, site.operator_token, f"/jobs/{job.id}")
    assert "已完成" in page.locator("#job-status").inner_text()
    assert "城关区" in page.locator("table.released").inner_text()
    assert "已放行" in page.locator("#job-review").inner_text()


def test_the_review_pages_fit_a_phone(phone: Watched, site: Cast) -> None:
    cid = reviewed_contract(site)
    job = site.unsigned_operator.submit(cid, CODE, wait=True)
    review_id = job.refresh().review["id"]  # type: ignore[index]
    sign_in(phone, site.server.bureau_token)
    for path in ("/reviews", f"/reviews/{review_id}"):
        assert phone.go(path).status == 200, path
        width = phone.page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, (path, width)
    phone.page.context.clear_cookies()
    sign_in(phone, site.operator_token)
    assert phone.go(f"/jobs/{job.id}").status == 200
    assert phone.page.evaluate("document.documentElement.scrollWidth") <= 390
