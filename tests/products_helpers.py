"""What the data products' tests share: an approved template (submitted by the operator,
approved by the department), a scenario's cap, a product, a customer's key and call."""

from __future__ import annotations

import secrets
from typing import Any

from conftest import World

from operators.client import SandboxClient

DISTRICTS = ["北山区", "城关区", "湖滨区", "新城区", "滨江区", "经开区"]
SMALL_GROUPS = (
    'rows = table("population").filter(col("district") == params["区"])'
    '.group_by("hukou_type", "gender").agg(n=count()).collect()\n'
    'emit("户籍性别", rows)\n'
)
SCHEMA = {
    "type": "object",
    "properties": {
        "区": {"type": "string", "enum": DISTRICTS},
        "档次": {"type": "integer", "minimum": 1, "maximum": 5, "default": 1},
    },
    "required": ["区"],
}


def approved_template(
    w: World,
    code: str = SMALL_GROUPS,
    schema: dict[str, Any] | None = None,
    operator: dict[str, Any] | None = None,
) -> tuple[str, int]:
    """A template of the operator's whose version the department approved."""
    body = {"name": f"户籍结构 {secrets.token_hex(3)}", "code": code}
    body["params_schema"] = SCHEMA if schema is None else schema
    r = w.client.post("/v1/templates", json=body, headers=w.h(operator or w.operator))
    assert r.status_code == 201, r.text
    template_id, version = r.json()["id"], r.json()["versions"][-1]["version"]
    r = w.client.post(
        f"/v1/templates/{template_id}/versions/{version}/reviews",
        json={"decision": "approve"},
        headers=w.h(w.provider),
    )
    assert r.status_code == 200, r.text
    assert r.json()["versions"][-1]["status"] == "approved", r.json()
    return template_id, version


def approve_in(
    operator: SandboxClient,
    provider: SandboxClient,
    code: str = SMALL_GROUPS,
    schema: dict[str, Any] | None = None,
) -> tuple[str, int]:
    """The same on a live server, through the client."""
    name = f"户籍结构 {secrets.token_hex(3)}"
    made = operator.submit_template(name, code, SCHEMA if schema is None else schema)
    template_id, version = made["id"], made["versions"][-1]["version"]
    reviewed = provider.review_template(template_id, version, "approve")
    assert reviewed["versions"][-1]["status"] == "approved", reviewed
    return template_id, version


def set_cap(w: World, scenario: str, max_price: str, description: str = "") -> Any:
    return w.client.put(
        f"/v1/product-caps/{scenario}",
        json={"max_price": max_price, "description": description},
        headers=w.h(w.bureau),
    )


def publish(w: World, contract_id: str, template: tuple[str, int], **body: Any) -> Any:
    return w.client.post(
        "/v1/products",
        json={
            "name": "小微企业户籍结构",
            "scenario": "普惠金融",
            "description": "按区的户籍与性别构成，供信贷风控参考",
            "contract_id": contract_id,
            "template_id": template[0],
            "template_version": template[1],
            "price": "4.00",
            **body,
        },
        headers=w.h(w.operator),
    )


def issue_key(w: World, product_id: str, customer: str = "某城商行") -> dict[str, Any]:
    r = w.client.post(
        f"/v1/products/{product_id}/keys", json={"customer": customer}, headers=w.h(w.operator)
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def call(w: World, product_id: str, key: str, **params: Any) -> Any:
    return w.client.post(
        f"/v1/products/{product_id}/calls",
        json={"params": params},
        headers={"X-Product-Key": key},
    )
