"""A department's statistics in a real browser: its own datasets' figures for this month, a
month without any, then this month again and its CSV downloaded; the table fits a phone by
scrolling inside its card."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from live import Cast, active_contract

from .conftest import Watched, follow, shot, sign_in

CODE = "emit('n', table('population').group_by('district').agg(n=count()).collect())"
BEIJING = dt.timezone(dt.timedelta(hours=8))


def test_a_department_reads_its_statistics_month_by_month(tab: Watched, site: Cast) -> None:
    cid = active_contract(site)
    assert site.operator.submit(cid, CODE, wait=True).status == "succeeded"
    month = dt.datetime.now(BEIJING).strftime("%Y-%m")
    sign_in(tab, site.provider.rotate_token())
    page = tab.page
    follow(page, "nav.menu a[href='/statistics']")
    row = page.locator("#ds-population")
    assert "人口基础信息库" in row.inner_text()
    assert row.locator("td.f-jobs").inner_text().startswith("1")
    assert page.locator("#departments tbody tr").count() == 1  # its own row only
    assert page.locator("#datasets svg.chart").count() == 1
    shot(tab.page, "provider-statistics")

    page.fill("#month", "2020-01")
    follow(page, "#month-form button")
    assert page.url.endswith("/statistics?month=2020-01")
    assert page.locator("#datasets .empty").count() == 1

    page.fill("#month", month)
    follow(page, "#month-form button")
    assert page.locator("#ds-population td.f-jobs").inner_text().startswith("1")
    with page.expect_download() as download:
        page.click("#datasets a.download")
    assert download.value.suggested_filename == f"statistics-datasets-{month}.csv"
    text = Path(download.value.path()).read_text(encoding="utf-8-sig")
    header, line = text.splitlines()[:2]
    assert header.startswith("month,dataset,title,department_id,department,")
    assert line.startswith(f"{month},population,人口基础信息库,")


def test_the_statistics_fit_a_phone(phone: Watched, site: Cast) -> None:
    sign_in(phone, site.provider.rotate_token())
    phone.go("/statistics")
    assert phone.page.evaluate("document.documentElement.scrollWidth") <= 390
