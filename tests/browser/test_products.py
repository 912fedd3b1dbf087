"""Data products in a real browser: the bureau sets a scenario's cap, the operator
publishes a product on its approved template (a price above the cap refused beside the
form first), issues a customer's key and sees it once, the customer's call shows in the
operator's calls and revenue, the product is on the public directory signed out, and the
regulator suspends it with a reason, which takes it off the directory."""

from __future__ import annotations

import re
from typing import Any

import pytest
from live import Cast, active_contract
from products_helpers import approve_in

from operators.client import ProductClient, SandboxAPIError

from .conftest import Watched, follow, shot, sign_in

NAME = "小微企业户籍结构"


def _go_as(tab: Watched, token: str, path: str) -> Any:
    tab.page.context.clear_cookies()
    sign_in(tab, token)
    tab.go(path)
    return tab.page


def test_a_product_published_called_and_suspended(tab: Watched, site: Cast) -> None:
    template_id, version = approve_in(site.operator, site.provider)
    contract = active_contract(site)
    regulator = site.bureau.create_principal("市场监管审计处", "regulator")["token"]

    page = _go_as(tab, site.server.bureau_token, "/products")
    page.fill("#cap-scenario", "普惠金融")
    page.fill("#cap-price", "5.00")
    page.fill("#cap-description", "面向小微企业的信贷服务")
    follow(page, "#cap-form button[type=submit]")
    assert "普惠金融" in page.locator("#caps-table").inner_text()

    page = _go_as(tab, site.operator_token, "/products")
    page.fill("#p-name", NAME)
    page.select_option("#p-scenario", "普惠金融")
    page.fill("#p-description", "按区的户籍与性别构成，供信贷风控参考")
    page.select_option("#p-contract", contract)
    page.select_option("#p-template", f"{template_id}:{version}")
    page.fill("#p-price", "6.00")
    follow(page, "#publish-form button[type=submit]")
    error = page.locator("#publish-error").inner_text()
    assert "above the cap" in error and "5.00" in error
    assert page.input_value("#p-name") == NAME  # what was typed, kept
    page.fill("#p-price", "4.00")
    follow(page, "#publish-form button[type=submit]")
    found = re.search(r"#product-(pr-[0-9a-f]+)$", page.url)
    assert found, page.url
    product_id = found.group(1)
    card = page.locator(f"#product-{product_id}")
    card.locator(f"#customer-{product_id}").fill("某城商行")
    follow(page, card.locator("form.issue-key button"))
    key = page.locator("#new-key").inner_text().strip()
    assert key.startswith("pk_")
    shot(tab.page, "operator-products")

    with ProductClient(site.server.url, key) as customer:
        answer = customer.call(product_id, {"区": "北山区"})
        assert answer["status"] == "succeeded" and answer["price"] == "4.00"
        assert customer.output(answer, "户籍性别").num_rows > 0
    tab.go("/products")
    card = page.locator(f"#product-{product_id}")
    assert card.locator(".calls").inner_text().startswith("1")
    assert card.locator(".revenue").inner_text() == "4.00"
    assert key not in page.content()  # shown once only

    tab.page.context.clear_cookies()
    tab.go("/data-products")
    assert NAME in page.inner_text("main") and "某数据科技有限公司" in page.inner_text("main")
    shot(tab.page, "public-products")

    page = _go_as(tab, regulator, "/products")
    card = page.locator(f"#product-{product_id}")
    card.locator(f"#reason-{product_id}").fill("投诉核查中")
    follow(page, card.locator("form.status-form button"))
    card = page.locator(f"#product-{product_id}")
    assert "已暂停" in card.inner_text() and "投诉核查中" in card.inner_text()
    tab.page.context.clear_cookies()
    tab.go("/data-products")
    assert NAME not in page.inner_text("main")
    with ProductClient(site.server.url, key) as customer, pytest.raises(SandboxAPIError) as no:
        customer.call(product_id, {"区": "北山区"})
    assert no.value.code == "product_suspended" and "投诉核查中" in no.value.message


def test_the_product_pages_fit_a_phone(phone: Watched, site: Cast) -> None:
    for token in (site.operator_token, site.server.bureau_token, None):
        phone.page.context.clear_cookies()
        if token:
            sign_in(phone, token)
        path = "/products" if token else "/data-products"
        assert phone.go(path).status == 200, path
        width = phone.page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, (path, width)
