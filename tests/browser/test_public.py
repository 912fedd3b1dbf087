"""Signed out: the catalog, a dataset's dictionary, the language switch, a phone's menu."""

from __future__ import annotations

from typing import Any

from live import Cast

from .conftest import Watched, follow, sign_in


def test_anyone_finds_a_dataset_and_reads_its_dictionary(tab: Watched, site: Cast) -> None:
    tab.go("/")
    page = tab.page
    assert page.title().startswith("数据目录")
    page.fill("#q", "population")
    follow(page, "form.filters button[type=submit]")
    cards = page.locator("#datasets .card")
    assert cards.count() == 1
    follow(page, cards.first.locator("a"))
    assert "/catalog/population" in page.url
    header = page.locator("#dictionary thead").inner_text()
    assert "字段名" in header and "角色" in header
    rows = page.locator("#dictionary tbody tr")
    assert rows.count() >= 5
    follow(page, "a.lang")
    assert "Data dictionary" in page.content()


def test_a_person_signs_in_and_out(tab: Watched, site: Cast) -> None:
    sign_in(tab, site.operator_token)
    page = tab.page
    assert "某数据科技有限公司" in page.locator(".who").inner_text()
    follow(page, "form[action='/signout'] button")
    assert page.locator(".who").count() == 0


def test_a_wrong_token_is_explained_next_to_the_field(tab: Watched) -> None:
    sign_in(tab, "sbx_wrong")
    error = tab.page.locator("#token-error")
    assert "unknown API token" in error.inner_text()
    assert tab.page.get_attribute("#token", "aria-describedby") == "token-help token-error"


def test_the_catalog_works_on_a_phone(phone: Watched) -> None:
    phone.go("/catalog")
    page: Any = phone.page
    assert not page.locator("nav.menu").is_visible()
    page.click("label.menu-button")
    assert page.locator("nav.menu").is_visible()
    # Nothing wider than the screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
