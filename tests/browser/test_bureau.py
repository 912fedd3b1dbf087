"""The bureau in a real browser: register a CSV whose header the page reads before upload,
create an operator and see its token once, publish prices (one refused above the caps, next
to the item), sign a contract a department approved, read the revenue chart."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import httpx
from conftest import GRANTS
from live import Cast

from .conftest import Watched, follow, shot, sign_in
from .test_public_pages import CODE

CAPS = {
    "name": "上限收费标准 2026",
    "effective_from": "2026-01-01T00:00:00Z",
    "items": [{"unit": "call", "max_price": "3.00"}],
}


def _approved_contract(site: Cast) -> str:
    applied = site.operator.apply_contract(
        GRANTS,
        "养老服务设施规划",
        "commercial",
        dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        "2030-01-01T00:00:00Z",
    )
    site.provider.approve_contract(applied["id"])
    return str(applied["id"])


def _submit(page: Any) -> None:
    follow(page, "form.card button[type=submit]")


def test_the_bureau_runs_the_service_from_its_pages(
    tab: Watched, site: Cast, tmp_path: Path
) -> None:
    bureau = {"Authorization": f"Bearer {site.server.bureau_token}"}
    caps = httpx.post(f"{site.server.url}/v1/price-caps", json=CAPS, headers=bureau)
    assert caps.status_code == 201, caps.text
    sign_in(tab, site.server.bureau_token)
    page = tab.page

    # A CSV with Chinese column names: the page fills one row per header column.
    csv = tmp_path / "养老机构.csv"
    csv.write_text(
        "区县,床位数,入住率\n" + "".join(f"东城区,{50 + i},{i % 100}\n" for i in range(40)),
        encoding="utf-8",
    )
    tab.go("/admin/datasets")
    page.set_input_files("#file", str(csv))
    page.wait_for_selector("#prefilled:not([hidden])")
    names = page.locator("input[name=col_name]")
    assert [names.nth(i).input_value() for i in range(names.count())] == [
        "区县",
        "床位数",
        "入住率",
    ]
    page.fill("#name", "care_homes")
    page.fill("#title", "养老机构床位")
    page.select_option("#col_role_1", "quasi_identifier")
    page.fill("#col_lower_2", "0")
    page.fill("#col_upper_2", "500")
    shot(page, "bureau-datasets")
    follow(page, "#dataset-form > button[type=submit]")
    assert page.url.endswith("/catalog/care_homes")
    assert "床位数" in page.locator("#dictionary").inner_text()

    tab.go("/admin/principals")
    page.fill("#p-name", "新运营公司")
    page.select_option("#p-role", "operator")
    page.fill("#p-license_no", "授权运营-2026-042")
    _submit(page)
    token = page.locator("#token").inner_text()
    assert token.startswith("sbx_")
    follow(page, "a[href='/admin/principals']")
    assert "新运营公司" in page.locator("#principals").inner_text()
    assert token not in page.content()
    shot(page, "bureau-principals")

    tab.go("/admin/prices")
    assert page.locator("#preview-total").inner_text() == "3.10"
    page.fill("#s-name", "2026 年第二版")
    page.fill("#price-1", "3.50")
    _submit(page)
    assert "above the cap" in page.locator("#item-1-error").inner_text()
    assert page.locator("#price-1").input_value() == "3.50"
    shot(page, "bureau-prices")
    page.fill("#price-1", "2.50")
    _submit(page)
    assert page.locator("#published").is_visible()
    assert page.locator("#preview-total").inner_text() == "3.60"

    cid = _approved_contract(site)
    tab.go("/admin/contracts")
    card = page.locator(f"#contract-{cid}")
    assert "某数据科技有限公司" in card.inner_text()
    shot(page, "bureau-contracts")
    follow(page, card.locator("button[type=submit]"))
    assert page.locator("#signed").is_visible()
    signed = site.operator.sign_contract(cid)
    assert signed["status"] == "active"

    job = site.operator.submit(cid, CODE, wait=True)
    assert job.status == "succeeded"
    tab.go("/admin/revenue")
    page.fill("#amount", "1.00")
    _submit(page)
    chart = page.locator("#revenue-chart svg.chart")
    assert chart.locator("rect.chart-bar").count() == 2  # the total and the one operator
    assert chart.locator("line.chart-limit").count() == 1
    assert page.locator("#revenue-total").inner_text() == str(job.charge_amount)
    shot(page, "bureau-revenue")


def test_the_bureau_pages_fit_a_phone(phone: Watched, site: Cast) -> None:
    sign_in(phone, site.server.bureau_token)
    for path in ("/admin/datasets", "/admin/principals", "/admin/prices", "/admin/revenue"):
        phone.go(path)
        assert phone.page.evaluate("document.documentElement.scrollWidth") <= 390, path
