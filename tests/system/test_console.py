"""The console over HTTP (FastAPI's TestClient): pages for everyone, signing in and out, and
the walls around them: headers that forbid inline script and framing, sessions that end with
their token, changes only from the console's own pages, user text escaped."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from conftest import World, parquet_bytes
from fastapi.testclient import TestClient

from sandbox.console.i18n import MESSAGES


def _sign_in(client: TestClient, token: str) -> str:
    """Signs the client in; the page's CSRF token."""
    r = client.post("/signin", data={"token": token, "next": "/catalog"}, follow_redirects=False)
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/catalog"
    page = client.get("/catalog")
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def _fresh(world: World) -> TestClient:
    # A browser of its own: cookies are not shared with the world's client.
    return TestClient(world.client.app)


def test_anyone_browses_the_catalog_and_its_dictionary_but_never_a_value(
    local_world: World, city: dict[str, Any]
) -> None:
    with _fresh(local_world) as browser:
        r = browser.get("/catalog")
        assert r.status_code == 200 and "text/html" in r.headers["content-type"]
        assert "数据目录" in r.text and "population" in r.text
        one = browser.get("/catalog/population")
        assert one.status_code == 200
        for column in city["population"].table.column_names:
            if column != "_entity":
                assert column in one.text
        # Values of the data never appear: no district, no birth date.
        for value in {str(v) for v in city["population"].table.column("district").to_pylist()}:
            assert value not in one.text and value not in r.text
        english = browser.get("/catalog?lang=en")
        assert "Data catalog" in english.text
        assert "Data catalog" in browser.get("/catalog").text  # the choice is kept
        missing = browser.get("/catalog/没有这个")
        assert missing.status_code == 404 and "没有这个" in missing.text


def test_console_pages_forbid_inline_script_framing_and_sniffing(local_world: World) -> None:
    with _fresh(local_world) as browser:
        for path in ("/catalog", "/signin", "/catalog/population", "/static/console.css"):
            headers = browser.get(path).headers
            csp = headers["content-security-policy"]
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
            assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
            assert headers["x-frame-options"] == "DENY"
            assert headers["x-content-type-options"] == "nosniff"
        # The API keeps its own: /docs loads Swagger UI.
        assert "content-security-policy" not in browser.get("/v1/health/live").headers


def test_signing_in_opens_a_session_in_an_http_only_strict_cookie_and_out_ends_it(
    local_world: World,
) -> None:
    w = local_world
    with _fresh(w) as browser:
        r = browser.post(
            "/signin", data={"token": w.operator["token"], "next": "/"}, follow_redirects=False
        )
        cookie = r.headers["set-cookie"]
        assert "sandbox_session=" in cookie and "HttpOnly" in cookie
        assert "SameSite=strict" in cookie or "samesite=strict" in cookie.lower()
        assert w.operator["token"] not in cookie
        page = browser.get("/catalog").text
        assert w.operator["name"] in page
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf
        # Signing out needs the page's token …
        refused = browser.post("/signout", data={}, follow_redirects=False)
        assert refused.status_code == 401
        assert w.operator["name"] in browser.get("/catalog").text
        # … and with it, the session ends, here and for anyone holding its cookie.
        out = browser.post("/signout", data={"csrf": csrf.group(1)}, follow_redirects=False)
        assert out.status_code == 303
        assert w.operator["name"] not in browser.get("/catalog").text


def test_a_wrong_token_is_explained_next_to_the_field(local_world: World) -> None:
    with _fresh(local_world) as browser:
        r = browser.post("/signin", data={"token": "sbx_not-a-token", "next": "/"})
        assert r.status_code == 401
        assert 'id="token-error"' in r.text and "unknown API token" in r.text
        assert "sandbox_session" not in r.headers.get("set-cookie", "")


def test_a_rotated_token_ends_the_sessions_opened_with_it(local_world: World) -> None:
    w = local_world
    with _fresh(w) as browser:
        _sign_in(browser, w.regulator["token"])
        assert w.regulator["name"] in browser.get("/catalog").text
        rotated = w.client.post("/v1/me/token", headers=w.h(w.regulator))
        assert rotated.status_code in (200, 201), rotated.text
        assert w.regulator["name"] not in browser.get("/catalog").text


def test_a_form_posted_from_another_site_is_refused(local_world: World) -> None:
    w = local_world
    with _fresh(w) as browser:
        csrf = _sign_in(browser, w.operator["token"])
        for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
            r = browser.post(
                "/signout", data={"csrf": csrf}, headers=headers, follow_redirects=False
            )
            assert r.status_code == 403, r.text
        assert w.operator["name"] in browser.get("/catalog").text


def test_text_users_typed_reaches_the_page_as_text(local_world: World, city: Any) -> None:
    w = local_world
    title = '<script>alert("户籍")</script><img src=x onerror=alert(1)>'
    table = city["population"].table.select(["district"]).slice(0, 200)
    r = w.ingest("xss_test", table, "L2", {"district": {"role": "attribute"}}, title=title)
    assert r.status_code == 201, r.text
    with _fresh(w) as browser:
        for path in ("/catalog", "/catalog/xss_test", "/catalog?q=%3Cscript%3E"):
            text = browser.get(path).text
            assert "<script>alert" not in text and "<img src=x" not in text
            assert "&lt;script&gt;alert(" in text


def test_the_next_page_after_signing_in_is_always_on_this_site(local_world: World) -> None:
    w = local_world
    with _fresh(w) as browser:
        for target in ("https://evil.example/", "//evil.example/x", "javascript:alert(1)"):
            r = browser.post(
                "/signin",
                data={"token": w.operator["token"], "next": target},
                follow_redirects=False,
            )
            assert r.headers["location"] == "/", target


@pytest.mark.parametrize("key", sorted(MESSAGES["zh"]))
def test_every_word_of_the_console_exists_in_both_languages(key: str) -> None:
    assert MESSAGES["en"].get(key), key
    assert set(MESSAGES["en"]) == set(MESSAGES["zh"])


def test_the_catalog_filters_by_topic_and_the_dictionary_explains_each_column(
    local_world: World, city: dict[str, Any]
) -> None:
    w = local_world
    table = city["population"].table.select(["district", "income"]).slice(0, 300)
    columns = {
        "district": {"role": "attribute", "description": "所在区"},
        "income": {"role": "sensitive", "lower": 0, "upper": 100000, "description": "月收入"},
    }
    meta = {
        "name": "收入抽样",
        "title": "收入抽样表",
        "topic": "收入",
        "description": "按区抽样的收入",
        "provider_id": w.provider["id"],
        "level": "L2",
        "columns": columns,
    }
    r = w.client.post(
        "/v1/datasets",
        headers=w.h(w.bureau),
        files={"file": ("s.parquet", parquet_bytes(table))},
        data={"meta": json.dumps(meta, ensure_ascii=False)},
    )
    assert r.status_code == 201, r.text
    assert r.json()["topic"] == "收入" and r.json()["registered_at"].endswith("Z")
    with _fresh(w) as browser:
        page = browser.get("/catalog?topic=收入").text
        assert "收入抽样表" in page and "按区抽样的收入" in page
        assert "/catalog/population" not in page  # another topic
        one = browser.get("/catalog/收入抽样").text
        assert "月收入" in one and "所在区" in one and "最近更新" in one
    public = w.client.get("/v1/public/datasets", params={"topic": "收入"}).json()
    assert [d["name"] for d in public["datasets"]] == ["收入抽样"]
