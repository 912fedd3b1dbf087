"""Signed out in a real browser: find a dataset, read the fees, the public register and the
log's signed checkpoint with the command that verifies it; the same on a phone."""

from __future__ import annotations

from live import Cast, active_contract

from .conftest import Watched, follow, shot

CODE = 'd = table("population").group_by("district").agg(n=count()).collect()\nemit("d", d)\n'


def test_anyone_reads_the_catalog_fees_register_and_log(tab: Watched, site: Cast) -> None:
    cid = active_contract(site)
    job = site.operator.submit(cid, CODE, wait=True)
    assert job.status == "succeeded"
    page = tab.page
    tab.go("/catalog")
    page.fill("#q", "人口")
    follow(page, "form.filters button[type=submit]")
    assert page.locator("#datasets .card").count() == 1
    follow(page, page.locator("#datasets .card a").first)
    assert "/catalog/population" in page.url

    follow(page, "nav.menu a[href='/fees']")
    items = page.locator("#fee-items tbody tr")
    assert items.count() == 5
    assert "2.00" in items.first.inner_text()
    shot(page, "public-fees")

    follow(page, "nav.menu a[href='/register']")
    row = page.locator("#register tbody tr").first.inner_text()
    assert "某数据科技有限公司" in row and "授权运营-2026-007" in row
    assert page.locator("#fees-chart svg.chart rect.chart-bar").count() == 1
    assert str(job.charge_amount) in page.locator("#fees-by-month").inner_text()
    shot(page, "public-register")

    follow(page, "nav.menu a[href='/log']")
    note = page.locator("#checkpoint").inner_text()
    assert note.startswith("public-data-sandbox\n") and "—" in note
    assert page.locator("#log-root").inner_text() in note
    command = page.locator("#verify-command").inner_text()
    assert "sandbox ledger verify" in command and "--checkpoint checkpoint.txt" in command
    shot(page, "public-log")


def test_the_public_pages_fit_a_phone(phone: Watched) -> None:
    for path in ("/fees", "/register", "/log"):
        phone.go(path)
        assert phone.page.evaluate("document.documentElement.scrollWidth") <= 390, path


def test_the_dataset_page_shows_generated_rows_labelled_as_such(
    tab: Watched, phone: Watched
) -> None:
    tab.go("/catalog/population")
    section = tab.page.locator("#dummy")
    assert tab.page.locator("#dummy-preview tbody tr").count() == 5
    assert "示例数据（生成）" in section.inner_text()
    assert "不含任何真实数据值" in tab.page.locator("#dummy-note").inner_text()
    assert "district_" in tab.page.locator("#dummy-preview").inner_text()
    phone.go("/catalog/population")
    # The generated table scrolls inside its box; the page itself keeps to the phone's width.
    assert phone.page.evaluate("document.documentElement.scrollWidth") <= 390
