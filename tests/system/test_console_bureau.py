"""The bureau's pages over HTTP: each change goes through the function its API route calls,
refusals come back next to the field, and the walls hold: only the bureau, only from the
console's own pages, user text as text."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from conftest import GRANTS, SCHEDULE, World
from fastapi.testclient import TestClient

from operators.keys import generate_private_key, public_key_b64

CAPS = {
    "name": "上限收费标准 2026",
    "effective_from": "2026-01-01T00:00:00Z",
    "items": [{"unit": "call", "max_price": "3.00"}, {"unit": "output", "max_price": "0.80"}],
}
EVIL = '"><img src=x onerror=alert(1)><script>alert("x")</script>'
PAGES = ("/admin/datasets", "/admin/principals", "/admin/prices", "/admin/caps", "/admin/contracts")


def _fresh(world: World) -> TestClient:
    return TestClient(world.client.app)


def _sign_in(client: TestClient, token: str) -> str:
    """Signs the client in; the page's CSRF token."""
    r = client.post("/signin", data={"token": token, "next": "/catalog"}, follow_redirects=False)
    assert r.status_code == 303, r.text
    found = re.search(r'name="csrf" value="([^"]+)"', client.get("/catalog").text)
    assert found
    return found.group(1)


def _names(w: World) -> list[str]:
    principals = w.client.get("/v1/principals", headers=w.h(w.bureau)).json()["principals"]
    return [p["name"] for p in principals]


@pytest.mark.parametrize("who", ["operator", "provider", "regulator"])
def test_only_the_bureau_opens_its_pages(local_world: World, who: str) -> None:
    w = local_world
    with _fresh(w) as browser:
        for path in (*PAGES, "/admin/revenue"):
            assert browser.get(path, follow_redirects=False).status_code == 303
        csrf = _sign_in(browser, getattr(w, who)["token"])
        for path in (*PAGES, "/admin/revenue"):
            r = browser.get(path)
            assert r.status_code == 403, (path, r.status_code)
            assert "bureau" in r.text
        # With the page's own token, a change is still the bureau's alone.
        before = _names(w)
        r = browser.post(
            "/admin/principals", data={"csrf": csrf, "name": "冒名", "role": "operator"}
        )
        assert r.status_code == 403 and _names(w) == before
        cid = _approved_contract(w)
        assert browser.post(f"/admin/contracts/{cid}/sign", data={"csrf": csrf}).status_code
        assert _status(w, cid) == "approved"


def _principal(w: World, principal_id: str) -> dict[str, Any]:
    r = w.client.get(f"/v1/principals/{principal_id}", headers=w.h(w.bureau))
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _status(w: World, cid: str) -> str:
    return str(w.client.get(f"/v1/contracts/{cid}", headers=w.h(w.bureau)).json()["status"])


def _approved_contract(w: World) -> str:
    body = {
        "datasets": GRANTS,
        "purpose": "养老服务设施规划",
        "purpose_class": "commercial",
        "valid_from": "2026-01-01T00:00:00Z",
        "valid_to": "2030-01-01T00:00:00Z",
    }
    r = w.client.post("/v1/contracts", json=body, headers=w.h(w.operator))
    assert r.status_code == 201, r.text
    cid: str = r.json()["id"]
    assert w.client.post(f"/v1/contracts/{cid}/approve", headers=w.h(w.provider)).status_code == 200
    return cid


def _upload(
    browser: TestClient, csrf: str, name: str, title: str, columns: dict[str, str], **extra: Any
) -> Any:
    csv = "区县,年龄,收入\n" + "".join(f"东城区,{30 + i % 40},{5000 + i}\n" for i in range(60))
    return browser.post(
        "/admin/datasets",
        data={
            "csrf": csrf,
            "name": name,
            "title": title,
            "provider_id": extra.get("provider_id", ""),
            "level": "L2",
            "col_name": list(columns),
            "col_role": list(columns.values()),
            "col_lower": ["", "0", ""],
            "col_upper": ["", "120", ""],
        },
        files={"file": ("区县收入.csv", csv.encode(), "text/csv")},
        follow_redirects=False,
    )


COLUMNS = {"区县": "quasi_identifier", "年龄": "quasi_identifier", "收入": "sensitive"}


def test_the_bureau_registers_a_csv_with_chinese_columns(local_world: World) -> None:
    w = local_world
    with _fresh(w) as browser:
        csrf = _sign_in(browser, w.bureau)
        page = browser.get("/admin/datasets").text
        assert 'name="csrf"' in page and "市公安局" in page and "population" in page
        r = _upload(browser, csrf, "income_cn", "区县收入", COLUMNS, provider_id=w.provider["id"])
        assert r.status_code == 303, r.text
        assert r.headers["location"] == "/catalog/income_cn"
    got = w.client.get("/v1/datasets/income_cn", headers=w.h(w.operator)).json()
    assert got["title"] == "区县收入" and got["row_count"] == 60
    roles = {c["name"]: (c["role"], c.get("lower"), c.get("upper")) for c in got["columns"]}
    assert roles["年龄"] == ("quasi_identifier", 0, 120)
    assert roles["收入"][0] == "sensitive"


def test_a_refused_dataset_comes_back_with_the_error_next_to_the_field(
    local_world: World,
) -> None:
    w = local_world
    with _fresh(w) as browser:
        csrf = _sign_in(browser, w.bureau)
        bad_name = _upload(
            browser, csrf, "1坏名字", "我的标题", COLUMNS, provider_id=w.provider["id"]
        )
        assert bad_name.status_code == 400
        assert 'id="name-error"' in bad_name.text and "我的标题" in bad_name.text
        taken = _upload(browser, csrf, "population", "重名", COLUMNS, provider_id=w.provider["id"])
        assert taken.status_code == 400 and 'id="name-error"' in taken.text
        not_provider = _upload(browser, csrf, "x1", "t", COLUMNS, provider_id=w.operator["id"])
        assert not_provider.status_code == 400 and 'id="provider_id-error"' in not_provider.text
        missing = _upload(
            browser, csrf, "x2", "t", {"区县": "attribute"}, provider_id=w.provider["id"]
        )
        assert missing.status_code == 400 and 'role="alert"' in missing.text
        evil = _upload(browser, csrf, "x3", EVIL, {"区县": "nonsense"}, provider_id="p")
        assert evil.status_code == 400
        assert "<script>alert" not in evil.text and "&lt;script&gt;" in evil.text
    names = {
        d["name"] for d in w.client.get("/v1/datasets", headers=w.h(w.bureau)).json()["datasets"]
    }
    assert names == {"population"}


def test_a_new_principal_gets_its_token_once(local_world: World) -> None:
    w = local_world
    key = public_key_b64(generate_private_key())
    with _fresh(w) as browser:
        csrf = _sign_in(browser, w.bureau)
        r = browser.post(
            "/admin/principals",
            data={
                "csrf": csrf,
                "name": "新的运营公司",
                "role": "operator",
                "license_no": "授权运营-2026-099",
                "license_valid_to": "2027-12-31T23:59:59+08:00",
                "public_key": key,
            },
        )
        assert r.status_code == 201, r.text
        found = re.search(r'<pre class="token" id="token">(sbx_[^<]+)</pre>', r.text)
        assert found
        token = found.group(1)
        me = w.client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200 and me.json()["name"] == "新的运营公司"
        listing = browser.get("/admin/principals").text
        assert "新的运营公司" in listing and "授权运营-2026-099" in listing
        assert token not in listing
        refused = browser.post(
            "/admin/principals",
            data={"csrf": csrf, "name": "坏钥匙", "role": "operator", "public_key": "不是公钥"},
        )
        assert refused.status_code == 400 and 'id="p-public_key-error"' in refused.text
        assert 'value="坏钥匙"' in refused.text
        evil = browser.post(
            "/admin/principals", data={"csrf": csrf, "name": EVIL, "role": "provider"}
        )
        assert evil.status_code == 201
        for text in (evil.text, browser.get("/admin/principals").text):
            assert "<script>alert" not in text and "<img src=x" not in text
            assert "&lt;script&gt;" in text
    assert "坏钥匙" not in _names(w)


def test_the_bureau_suspends_and_resumes_with_a_reason(local_world: World) -> None:
    w = local_world
    op = w.operator["id"]
    with _fresh(w) as browser:
        csrf = _sign_in(browser, w.bureau)
        no_reason = browser.post(f"/admin/principals/{op}/suspend", data={"csrf": csrf})
        assert no_reason.status_code == 400 and 'role="alert"' in no_reason.text
        r = browser.post(
            f"/admin/principals/{op}/suspend",
            data={"csrf": csrf, "reason": EVIL},
            follow_redirects=False,
        )
        assert r.status_code == 303
        page = browser.get("/admin/principals").text
        assert "已暂停" in page and "<script>alert" not in page and "&lt;script&gt;" in page
        assert _principal(w, op)["status"] == "suspended"
        again = browser.post(f"/admin/principals/{op}/suspend", data={"csrf": csrf, "reason": "再"})
        assert again.status_code == 409 and "already suspended" in again.text
        back = browser.post(
            f"/admin/principals/{op}/resume",
            data={"csrf": csrf, "reason": "整改完成"},
            follow_redirects=False,
        )
        assert back.status_code == 303
        assert _principal(w, op)["status"] == "active"
        unknown = browser.post(
            "/admin/principals/o-nobody/suspend", data={"csrf": csrf, "reason": "x"}
        )
        assert unknown.status_code == 404


def _schedule_form(csrf: str, call_price: str) -> dict[str, Any]:
    return {
        "csrf": csrf,
        "name": "2026 年第二版收费标准",
        "effective_from": "2026-02-01T00:00:00Z",
        "unit": ["call", "rows", "output"],
        "price": [call_price, "0.04", "0.50"],
        "per": ["", "10000", ""],
        "level": ["", "L2", ""],
    }


def test_a_schedule_above_the_caps_is_refused_next_to_the_item(local_world: World) -> None:
    w = local_world
    assert w.client.post("/v1/price-caps", json=CAPS, headers=w.h(w.bureau)).status_code == 201
    with _fresh(w) as browser:
        csrf = _sign_in(browser, w.bureau)
        page = browser.get("/admin/prices").text
        assert CAPS["name"] in page and 'id="preview-total"' in page
        refused = browser.post("/admin/prices", data=_schedule_form(csrf, "3.50"))
        assert refused.status_code == 400
        assert 'id="item-1-error"' in refused.text and "above the cap" in refused.text
        assert 'value="3.50"' in refused.text  # what was typed comes back
        current = w.client.get("/v1/price-schedules/current").json()
        assert current["name"] == SCHEDULE["name"]
        ok = browser.post(
            "/admin/prices", data=_schedule_form(csrf, "2.50"), follow_redirects=False
        )
        assert ok.status_code == 303
        published = browser.get(ok.headers["location"]).text
        assert 'id="published"' in published
    current = w.client.get("/v1/price-schedules/current").json()
    assert current["name"] == "2026 年第二版收费标准"
    assert current["items"][0] == {"unit": "call", "price": "2.50"}
    assert current["items"][1] == {"unit": "rows", "price": "0.04", "per": 10000, "level": "L2"}


def test_the_preview_prices_a_typical_job_with_the_schedule(local_world: World) -> None:
    w = local_world
    with _fresh(w) as browser:
        _sign_in(browser, w.bureau)
        page = browser.get("/admin/prices").text
    # One call 2.00 + 100 000 L2 rows at 0.05 per 10 000 (0.50) + 10 s at 0.01 + one output 0.50.
    assert re.search(r'id="preview-total">3\.10<', page), page


def test_the_bureau_signs_an_approved_contract(local_world: World) -> None:
    w = local_world
    cid = _approved_contract(w)
    with _fresh(w) as browser:
        csrf = _sign_in(browser, w.bureau)
        page = browser.get("/admin/contracts").text
        assert cid in page and w.operator["name"] in page and "养老服务设施规划" in page
        r = browser.post(
            f"/admin/contracts/{cid}/sign", data={"csrf": csrf}, follow_redirects=False
        )
        assert r.status_code == 303
        assert _status(w, cid) == "signed_by_bureau"
        after = browser.get(r.headers["location"]).text
        assert 'id="signed"' in after and f'id="contract-{cid}"' not in after
        twice = browser.post(f"/admin/contracts/{cid}/sign", data={"csrf": csrf})
        assert twice.status_code in (400, 409) and 'role="alert"' in twice.text
        unknown = browser.post("/admin/contracts/c-nobody/sign", data={"csrf": csrf})
        assert unknown.status_code == 404


def test_revenue_is_drawn_against_the_allowed_revenue(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()
    job = w.run(cid, 'emit("n", table("population").agg(n=count()).collect())').json()
    assert job["status"] == "succeeded", job
    period = job["finished_at"][:7]
    with _fresh(w) as browser:
        csrf = _sign_in(browser, w.bureau)
        r = browser.post(
            "/admin/revenue/allowed",
            data={"csrf": csrf, "period": period, "amount": "100.00"},
            follow_redirects=False,
        )
        assert r.status_code == 303
        page = browser.get(f"/admin/revenue?period={period}").text
        assert 'class="chart-limit"' in page and "100.00" in page
        assert w.operator["name"] in page
        assert re.search(rf'id="revenue-total">{re.escape(job["charge"]["amount"])}<', page)
        bad = browser.post(
            "/admin/revenue/allowed", data={"csrf": csrf, "period": period, "amount": "很多"}
        )
        assert bad.status_code == 400 and 'id="amount-error"' in bad.text


def test_a_form_posted_from_another_site_changes_nothing(local_world: World) -> None:
    w = local_world
    cid = _approved_contract(w)
    with _fresh(w) as browser:
        csrf = _sign_in(browser, w.bureau)
        evil = {"Origin": "https://evil.example"}
        posts = (
            ("/admin/principals", {"csrf": csrf, "name": "跨站", "role": "operator"}),
            (f"/admin/principals/{w.operator['id']}/suspend", {"csrf": csrf, "reason": "x"}),
            (f"/admin/contracts/{cid}/sign", {"csrf": csrf}),
            ("/admin/prices", _schedule_form(csrf, "1.00")),
        )
        for path, data in posts:
            assert browser.post(path, data=data, headers=evil).status_code == 403, path
            # Without the page's token, even from here.
            no_token = {k: v for k, v in data.items() if k != "csrf"}
            assert browser.post(path, data=no_token).status_code in (401, 403), path
    assert "跨站" not in _names(w)
    assert _status(w, cid) == "approved"
    assert _principal(w, w.operator["id"])["status"] == "active"
    assert w.client.get("/v1/price-schedules/current").json()["name"] == SCHEDULE["name"]


def test_caps_below_the_schedule_in_force_are_refused_and_caps_above_it_published(
    local_world: World,
) -> None:
    w = local_world
    in_force = w.client.get("/v1/price-schedules/current").json()
    call = next(i for i in in_force["items"] if i["unit"] == "call")
    with _fresh(w) as browser:
        csrf = _sign_in(browser, w.bureau)
        form = {
            "csrf": csrf,
            "name": "上限收费标准 2027",
            "effective_from": "2026-06-01T00:00:00Z",
            "unit": ["call"],
            "price": ["0.01"],
            "per": [""],
            "level": [""],
        }
        refused = browser.post("/admin/caps", data=form)
        assert refused.status_code == 409, refused.text
        assert "publish a schedule within them first" in refused.text
        assert 'value="0.01"' in refused.text  # what was typed comes back
        assert w.client.get("/v1/price-caps/current").status_code == 404
        above = str(Decimal(call["price"]) * 2)
        ok = browser.post("/admin/caps", data={**form, "price": [above]}, follow_redirects=False)
        assert ok.status_code == 303, ok.text
        assert 'id="published"' in browser.get(ok.headers["location"]).text
    caps = w.client.get("/v1/price-caps/current").json()
    assert caps["name"] == "上限收费标准 2027"
    assert caps["items"] == [{"unit": "call", "max_price": above}]
