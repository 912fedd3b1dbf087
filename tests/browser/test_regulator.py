"""The regulator in a real browser: contracts with history, a suspension and a resumption with
reasons, a job's code and disclosure report, reports with a chart and a CSV download, and the
log with an inclusion proof verified on the server; the log on a phone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from live import Cast, active_contract

from .conftest import Watched, follow, shot, sign_in

CODE = (
    "emit('by_district', table('population').group_by('district')"
    ".agg(n=count(), income=mean('income')).collect())"
)


def _regulator(site: Cast, name: str) -> str:
    return str(site.bureau.create_principal(name, "regulator")["token"])


def test_a_regulator_reviews_contracts_jobs_reports_and_the_log(tab: Watched, site: Cast) -> None:
    cid = active_contract(site)
    job = site.operator.submit(cid, CODE, wait=True)
    assert job.status == "succeeded"
    sign_in(tab, _regulator(site, "市数据监管处"))
    page = tab.page

    tab.go("/oversight/contracts")
    shot(tab.page, "regulator-contracts")
    follow(page, f"#contracts a[href='/oversight/contracts/{cid}']")
    assert page.locator("#history-1 li").count() >= 4
    page.fill("#reason-contract-suspend", "抽查：核对查询用途")
    follow(page, "#contract-actions button")
    assert "已暂停" in page.locator("#contract-status").inner_text()
    assert "抽查：核对查询用途" in page.locator("#history-1").inner_text()
    page.fill("#reason-contract-resume", "核对完毕，用途相符")
    follow(page, "#contract-actions button")
    assert "生效" in page.locator("#contract-status").inner_text()
    shot(tab.page, "regulator-contract")

    tab.go("/oversight/jobs")
    follow(page, f"#jobs a[href='/oversight/jobs/{job.id}']")
    assert "group_by('district')" in page.locator("#code").inner_text()
    assert page.locator("#signature").inner_text() != "未签名"
    assert page.locator("#disclosure table tbody tr").count() >= 1
    assert page.locator("#outputs table tbody tr").count() >= 1
    shot(tab.page, "regulator-job")

    tab.go("/oversight/reports")
    assert page.locator("#usage svg.chart").count() == 1
    with page.expect_download() as download:
        page.click("#usage a.download")
    assert download.value.suggested_filename.startswith("usage-")
    assert "某数据科技有限公司" in Path(download.value.path()).read_text(encoding="utf-8-sig")
    shot(tab.page, "regulator-reports")

    tab.go("/oversight/log")
    size = int(page.locator("#log-size").inner_text())
    page.fill("#index", str(size // 2))
    follow(page, "#proof form button")
    assert "已在服务器上" in page.locator("#proof-result").inner_text()
    assert page.locator("#proof-path li").count() >= 1
    assert "sandbox ledger verify" in page.locator("#verify-command").inner_text()
    shot(tab.page, "regulator-log")


def test_the_oversight_pages_fit_a_phone(phone: Watched, site: Cast) -> None:
    cid = active_contract(site)
    job = site.operator.submit(cid, CODE, wait=True)
    sign_in(phone, _regulator(site, "手机监管员"))
    page: Any = phone.page
    for path in (
        "/oversight/log?index=0",
        f"/oversight/contracts/{cid}",
        f"/oversight/jobs/{job.id}",
        "/oversight/reports",
    ):
        phone.go(path)
        assert page.locator("h1").count() == 1
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, path
    phone.go("/oversight/log?index=0")
    assert page.locator("#proof-result").count() == 1
