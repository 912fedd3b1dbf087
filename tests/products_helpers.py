"""What the data products' tests share: an approved template (inserted as rows until the
templates' own API is there to submit and approve one), a scenario's cap, a product."""

from __future__ import annotations

import hashlib
from typing import Any

from conftest import World

from sandbox.common import clock
from sandbox.context import Context
from sandbox.language.params import parse_schema
from sandbox.records.principals import new_id
from sandbox.store.models import Template, TemplateVersion

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
    """A template of the operator's whose version 1 the department approved."""
    op = operator or w.operator
    return approve_in(w.ctx, op["id"], w.provider["id"], code, schema)


def approve_in(
    ctx: Context,
    operator_id: str,
    provider_id: str,
    code: str = SMALL_GROUPS,
    schema: dict[str, Any] | None = None,
) -> tuple[str, int]:
    """The same, in the instance `ctx` opens (a live server's, too)."""
    template_id = new_id("t")
    with ctx.transaction() as s:
        s.add(Template(id=template_id, operator_id=operator_id, name=f"模板 {template_id}"))
        s.flush()
        s.add(
            TemplateVersion(
                template_id=template_id,
                version=1,
                code=code,
                code_sha256=hashlib.sha256(code.encode("utf-8")).hexdigest(),
                params_schema=parse_schema(SCHEMA if schema is None else schema).to_json(),
                datasets=["population"],
                reviewers=[provider_id],
                reviews=[{"by": provider_id, "decision": "approved"}],
                status="approved",
                decided_at=clock.stored_now(),
            )
        )
    return template_id, 1


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
