"""The operator in a real browser: from a dataset's page to an application, the contract
signed in the browser with a key file (WebCrypto, the key never sent), a job refused at its
line, fixed, quoted and run, its table charted and downloaded, the month's bill; and the
pages on a phone."""

from __future__ import annotations

import re
from pathlib import Path

from live import Cast, active_contract

from operators.keys import private_key_to_pem

from .conftest import Watched, follow, shot, sign_in

CODE = (
    'emit("by_district", table("population").group_by("district")'
    ".agg(n=count(), pct=share(count())).with_totals().collect())"
)


def _apply(tab: Watched) -> str:
    page = tab.page
    tab.go("/catalog/population")
    follow(page, "#apply")
    page.check("input[name='use.district'][value='group_by']")
    page.check("input[name='use.income'][value='aggregate']")
    page.fill("#purpose", "城关区养老服务设施规划")
    page.select_option("#purpose_class", "public_interest")
    page.fill("#valid_from", "2026-01-01")
    page.fill("#valid_to", "2029-12-31")
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "operator-apply")
    follow(page, "#application button[type=submit]")
    found = re.search(r"/contracts/(c-[0-9a-f]+)$", page.url)
    assert found, page.url
    assert "待部门审批" in page.locator("#contract-status").inner_text()
    return found.group(1)


def _sign_with_key_file(tab: Watched, site: Cast, cid: str, tmp_path: Path) -> None:
    page = tab.page
    tab.go(f"/contracts/{cid}")
    assert "待您签署" in page.locator("#contract-status").inner_text()
    shot(page, "operator-contract-sign")
    key_file = tmp_path / "operator.pem"
    key_file.write_bytes(private_key_to_pem(site.operator_key))
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.post_data or "") if r.method == "POST" else None)
    with page.expect_navigation():
        page.set_input_files("#key-file", str(key_file))
    page.wait_for_load_state()
    assert "生效中" in page.locator("#contract-status").inner_text()
    # Only the signature went to the service, never the key.
    assert sent and all("PRIVATE" not in body and "MC4CAQ" not in body for body in sent)


def _write_and_run(tab: Watched) -> str:
    page = tab.page
    follow(page, "a[href^='/jobs/new?contract=']")
    assert page.locator(".editor.enhanced").count() == 1
    page.fill("#code", "x = 1\nimport os\n")
    follow(page, "#quote")
    assert page.locator(".gutter li.bad").inner_text() == "2"
    assert "第 2 行" in page.locator("#code-error").inner_text()
    page.fill("#code", CODE)
    assert page.locator(".highlight .tok-str").count() >= 2
    follow(page, "#quote")
    assert "¥" in page.locator("#quote-result").inner_text()
    shot(page, "operator-editor")
    page.click("#run")
    page.wait_for_selector("table.released", timeout=60_000)
    assert "已完成" in page.locator("#job-status").inner_text()
    assert page.locator("svg.chart rect.chart-bar").count() >= 3
    # The total is a row of its own, saying what it adds up, and not one of the bars.
    total = page.locator("table.released tr.total")
    assert total.count() == 1 and "合计" in total.inner_text()
    bars = page.locator("svg.chart rect.chart-bar").count()
    assert bars == page.locator("table.released tbody tr").count() - 1
    shot(page, "operator-job")
    found = re.search(r"/jobs/(j-[0-9a-f]+)", page.url)
    assert found, page.url
    return found.group(1)


def test_an_operator_applies_signs_in_the_browser_runs_a_job_and_sees_the_bill(
    tab: Watched, site: Cast, tmp_path: Path
) -> None:
    sign_in(tab, site.operator_token)
    cid = _apply(tab)
    site.provider.approve_contract(cid)
    site.bureau.sign_contract(cid)
    _sign_with_key_file(tab, site, cid, tmp_path)
    job_id = _write_and_run(tab)
    page = tab.page
    with page.expect_download() as download:
        page.click("#output-1 a.download-csv")
    header = Path(download.value.path()).read_text(encoding="utf-8-sig").splitlines()[0]
    assert "district" in header
    tab.go("/bills")
    assert job_id in page.locator("#charges").inner_text()
    assert page.locator("#bill-total").inner_text().startswith("¥")
    shot(page, "operator-bills")


def test_the_operators_pages_fit_a_phone(phone: Watched, site: Cast) -> None:
    cid = active_contract(site)
    job = site.operator.submit(cid, CODE, wait=True)
    waiting = site.operator.apply_contract(
        {"population": {"district": ["group_by"]}},
        "养老服务设施规划",
        "commercial",
        "2026-01-01T00:00:00Z",
        "2030-01-01T00:00:00Z",
    )["id"]
    site.provider.approve_contract(waiting)
    site.bureau.sign_contract(waiting)
    sign_in(phone, site.operator_token)
    for path in (
        "/contracts/new?dataset=population",
        f"/contracts/{cid}",
        f"/contracts/{waiting}",
        f"/jobs/new?contract={cid}",
        f"/jobs/{job.id}",
        "/jobs",
        "/bills",
    ):
        assert phone.go(path).status == 200, path
        width = phone.page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, (path, width)
    # The canonical bytes and the commands to sign them wrap rather than widen the page.
    phone.go(f"/contracts/{waiting}")
    assert phone.page.locator("#key-file").is_visible()
    phone.page.click("#sign-form summary")
    assert phone.page.locator("#canonical").is_visible()
    assert phone.page.evaluate("document.documentElement.scrollWidth") <= 390
