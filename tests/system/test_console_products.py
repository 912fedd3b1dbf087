"""Data products in the console over HTTP: the bureau sets a scenario's cap, the operator
publishes (a price above the cap refused beside the form, what was typed kept), issues a
customer's key shown once, revokes it; the regulator suspends with a reason and the
product leaves the public page (seen signed out); the revenue pages show product revenue
by scenario against the maximum allowed revenue."""

from __future__ import annotations

import html
import re

from conftest import World
from products_helpers import approved_template, call
from test_console import _fresh, _sign_in

from sandbox.common import clock


def _card(page: str, element_id: str) -> str:
    return page.split(f'id="{element_id}"')[1].split("</li>")[0]


def test_products_across_the_console(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()
    template_id, version = approved_template(w)

    with _fresh(w) as bureau:
        csrf = _sign_in(bureau, w.bureau)
        page = bureau.get("/products").text
        assert 'href="/products"' in page and 'id="cap-form"' in page
        r = bureau.post(
            "/products/caps", data={"csrf": csrf, "scenario": "普惠金融", "max_price": "abc"}
        )
        assert r.status_code == 400 and 'id="cap-error"' in r.text
        r = bureau.post(
            "/products/caps",
            data={"csrf": csrf, "scenario": "普惠金融", "max_price": "5.00", "description": "信贷"},
            follow_redirects=False,
        )
        assert r.status_code == 303
        assert "普惠金融" in bureau.get("/products").text.split('id="caps-table"')[1]

    form = {
        "name": "小微企业户籍结构",
        "scenario": "普惠金融",
        "description": "按区的户籍与性别构成",
        "contract_id": cid,
        "template": f"{template_id}:{version}",
        "price": "5.50",
        "trial_price": "",
        "trial_until": "",
    }
    with _fresh(w) as op:
        csrf = _sign_in(op, w.operator["token"])
        page = op.get("/products").text
        assert f'value="{template_id}:{version}"' in page and f'value="{cid}"' in page
        r = op.post("/products", data={"csrf": csrf, **form})
        assert r.status_code == 400
        error = r.text.split('id="publish-error"')[1].split("</p>")[0]
        assert "above the cap" in error and "5.00" in error
        assert 'value="5.50"' in r.text and "小微企业户籍结构" in r.text  # what was typed, kept
        assert w.client.get("/v1/products", headers=w.h(w.operator)).json()["products"] == []
        r = op.post(
            "/products", data={"csrf": csrf, **form, "price": "4.00"}, follow_redirects=False
        )
        assert r.status_code == 303
        product_id = re.search(r"product-(pr-[0-9a-f]+)", r.headers["location"]).group(1)  # type: ignore[union-attr]
        r = op.post(f"/products/{product_id}/keys", data={"csrf": csrf, "customer": "某城商行"})
        assert r.status_code == 201
        key = html.unescape(r.text.split('id="new-key">')[1].split("</code>")[0])
        assert key.startswith("pk_")
        # Shown once: the product's page lists the customer, never the key.
        page = op.get("/products").text
        assert key not in page and "某城商行" in _card(page, f"product-{product_id}")
        assert call(w, product_id, key, 区="北山区").status_code == 200
        card = _card(op.get("/products").text, f"product-{product_id}")
        assert 'class="calls">1' in card and 'class="revenue">4.00' in card

    with _fresh(w) as department:
        _sign_in(department, w.provider["token"])
        page = department.get("/statistics").text
        assert "其中数据产品调用 1 次" in page

    with _fresh(w) as anyone:
        public = anyone.get("/data-products")
        assert public.status_code == 200 and "小微企业户籍结构" in public.text
        assert w.operator["name"] in public.text

    with _fresh(w) as regulator:
        csrf = _sign_in(regulator, w.regulator["token"])
        card = _card(regulator.get("/products").text, f"product-{product_id}")
        assert f'action="/products/{product_id}/suspend"' in card
        r = regulator.post(f"/products/{product_id}/suspend", data={"csrf": csrf, "reason": " "})
        assert r.status_code == 400 and "needs a reason" in r.text
        r = regulator.post(
            f"/products/{product_id}/suspend", data={"csrf": csrf, "reason": "投诉核查中"}
        )
        assert r.status_code == 200
        card = _card(r.text, f"product-{product_id}")
        assert "已暂停" in card and "投诉核查中" in card
        period = clock.now().strftime("%Y-%m")
        report = regulator.get(f"/oversight/reports?period={period}").text
        section = report.split('id="product-revenue"')[1].split("</section>")[0]
        assert "普惠金融" in section and "4.00" in section and "5.00" in section

    with _fresh(w) as anyone:
        assert "小微企业户籍结构" not in anyone.get("/data-products").text

    with _fresh(w) as bureau:
        _sign_in(bureau, w.bureau)
        page = bureau.get(f"/admin/revenue?period={period}").text
        section = page.split('id="product-revenue"')[1].split("</section>")[0]
        assert "普惠金融" in section and "4.00" in section and "5.00" in section

    with _fresh(w) as op:
        csrf = _sign_in(op, w.operator["token"])
        key_id = w.client.get(f"/v1/products/{product_id}/keys", headers=w.h(w.operator)).json()[
            "keys"
        ][0]["id"]
        r = op.post(f"/products/{product_id}/keys/{key_id}/revoke", data={"csrf": csrf})
        assert r.status_code == 200
        assert "已吊销" in _card(r.text, f"key-{key_id}")
