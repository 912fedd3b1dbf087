"""The OpenAPI document says what every route takes and returns, errors included, and real
responses match what it declares (field for field: a response model must drop nothing)."""

from __future__ import annotations

import inspect
import re
from typing import Any

import pytest
from conftest import World
from pydantic import BaseModel

from sandbox.api.app import create_app
from sandbox.api.models import catalog, common, contracts, jobs, ledger, oversight, pricing
from sandbox.api.models import principals as principal_models
from sandbox.api.models.common import ErrorEnvelope

ENVELOPE = "#/components/schemas/ErrorEnvelope"
MODELS = {
    name: cls
    for module in (catalog, common, contracts, jobs, ledger, oversight, pricing, principal_models)
    for name, cls in inspect.getmembers(module, inspect.isclass)
    if issubclass(cls, BaseModel)
}
CODE = (
    'd = table("population").group_by("district").agg(n=count()).collect()\n'
    'emit("by_district", d)\nemit("share", 0.25)\nemit("note", "区县")\n'
)


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return create_app().openapi()


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, item in document["paths"].items()
        for method, op in item.items()
    ]


def _json_schema(response: dict[str, Any]) -> dict[str, Any]:
    return response.get("content", {}).get("application/json", {}).get("schema", {})


def _text_schema(response: dict[str, Any]) -> dict[str, Any]:
    """The schema of a route that answers in a text format of its own (Prometheus' for
    /metrics) and not in JSON."""
    content = response.get("content", {})
    text = [c for t, c in content.items() if t.startswith("text/")]
    return text[0].get("schema", {}) if text and "application/json" not in content else {}


def test_every_operation_declares_its_success_body(document: dict[str, Any]) -> None:
    operations = _operations(document)
    assert len(operations) >= 51
    for method, path, op in operations:
        success = [s for s in op["responses"] if s.startswith("2")]
        assert success, f"{method} {path} declares no success response"
        for status in success:
            schema = _json_schema(op["responses"][status])
            text = _text_schema(op["responses"][status])
            assert schema.get("$ref") or schema.get("properties") or text.get("type"), (
                f"{method} {path} {status}: empty response schema"
            )


def test_every_operation_declares_the_error_envelope(document: dict[str, Any]) -> None:
    for method, path, op in _operations(document):
        responses = op["responses"]
        assert "422" not in responses, f"{method} {path}: validation errors are 400s"
        errors = [s for s in responses if s.startswith(("4", "5")) or s == "default"]
        assert {"400", "500", "default"} <= set(errors), f"{method} {path}: {errors}"
        for status in errors:
            assert _json_schema(responses[status]) == {"$ref": ENVELOPE}, (method, path, status)
        if op.get("security"):
            assert {"401", "403"} <= set(responses), f"{method} {path} needs a token"
    envelope = document["components"]["schemas"]["ErrorEnvelope"]
    assert {"ok", "status", "code", "error"} <= set(envelope["required"])


def test_file_downloads_declare_their_media_types(document: dict[str, Any]) -> None:
    content = document["paths"]["/v1/jobs/{job_id}/outputs/{name}"]["get"]["responses"]["200"][
        "content"
    ]
    assert {
        "application/json",
        "text/csv; charset=utf-8",
        "application/vnd.apache.parquet",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    } <= set(content)
    for path in (
        "/v1/contracts",
        "/v1/jobs",
        "/v1/bills",
        "/v1/releases",
        "/v1/reports/usage",
        "/v1/reports/revenue",
    ):
        assert (
            "text/csv; charset=utf-8"
            in document["paths"][path]["get"]["responses"]["200"]["content"]
        ), path


@pytest.mark.parametrize(
    ("method", "path", "required"),
    [
        (
            "post",
            "/v1/contracts",
            {"datasets", "purpose", "purpose_class", "valid_from", "valid_to"},
        ),
        ("put", "/v1/contracts/{contract_id}", {"datasets", "purpose"}),
        ("post", "/v1/contracts/{contract_id}/amend", {"datasets", "purpose"}),
        ("post", "/v1/price-schedules", {"name", "effective_from", "items"}),
        ("post", "/v1/price-caps", {"name", "effective_from", "items"}),
    ],
)
def test_contract_and_price_bodies_have_schemas(
    document: dict[str, Any], method: str, path: str, required: set[str]
) -> None:
    ref = document["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"][
        "$ref"
    ]
    schema = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert required <= set(schema["required"]) <= set(schema["properties"])
    assert all("default" not in p for p in schema["properties"].values())


def _declared_model(
    document: dict[str, Any], method: str, url: str, status: int
) -> type[BaseModel]:
    """The model the document declares for `status` of the operation that `url` reaches."""
    path = url.split("?")[0]
    for template, item in document["paths"].items():
        if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path) and method in item:
            ref = _json_schema(item[method]["responses"][str(status)])["$ref"]
            return MODELS[ref.rsplit("/", 1)[1]]
    raise AssertionError(f"no operation for {method} {url}")


def _conforms(world: World, method: str, url: str, who: Any, **kwargs: Any) -> dict[str, Any]:
    """The response of a real call, checked against the route's declared model; dumping the
    validated model gives back exactly the body sent, so the model dropped and added nothing."""
    r = world.client.request(method, url, headers=world.h(who), **kwargs)
    assert r.status_code < 300, r.text
    model = _declared_model(
        world.client.app.openapi(),  # type: ignore[attr-defined]
        method.lower(),
        url,
        r.status_code,
    )
    body = r.json()
    assert model.model_validate(body).model_dump(mode="json", exclude_unset=True) == body
    return body  # type: ignore[no-any-return]


def test_real_responses_match_their_models(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()
    op, reg = w.operator, w.regulator
    _conforms(w, "GET", "/v1/health", w.bureau)
    _conforms(w, "GET", "/v1/me", op)
    _conforms(w, "GET", f"/v1/principals/{op['id']}", w.bureau)
    _conforms(w, "GET", f"/v1/principals/{op['id']}/keys", w.bureau)
    _conforms(w, "GET", "/v1/datasets", op)
    _conforms(w, "GET", "/v1/datasets/population", op)
    _conforms(w, "GET", "/v1/price-schedules/current", op)
    _conforms(w, "GET", f"/v1/contracts/{cid}", op)
    _conforms(w, "GET", "/v1/contracts", reg)
    _conforms(w, "GET", f"/v1/contracts/{cid}/budget", op)
    _conforms(w, "GET", f"/v1/contracts/{cid}/versions/1", op)
    _conforms(w, "POST", "/v1/quotes", op, json={"contract_id": cid, "code": CODE})
    job = _conforms(w, "POST", "/v1/jobs?wait=true", op, json={"contract_id": cid, "code": CODE})
    assert job["status"] == "succeeded", job
    assert set(job["outputs"]) == {"by_district", "share", "note"}
    for who in (op, reg):
        _conforms(w, "GET", f"/v1/jobs/{job['id']}", who)
        _conforms(w, "GET", "/v1/jobs", who)
    for name in job["outputs"]:
        _conforms(w, "GET", f"/v1/jobs/{job['id']}/outputs/{name}", op)
    period = job["finished_at"][:7]
    _conforms(w, "GET", f"/v1/bills?period={period}", op)
    _conforms(w, "GET", f"/v1/reports/revenue?period={period}", reg)
    _conforms(w, "GET", f"/v1/reports/usage?period={period}", reg)
    _conforms(w, "GET", f"/v1/releases?period={period}", reg)
    _conforms(w, "GET", "/v1/flags", reg)
    _conforms(w, "GET", "/v1/keys", op)
    checkpoint = _conforms(w, "GET", "/v1/ledger/checkpoint", reg)
    _conforms(w, "GET", "/v1/ledger/entries?start=0&end=3", reg)
    _conforms(w, "GET", f"/v1/ledger/proofs/inclusion?index=0&size={checkpoint['size']}", reg)
    _conforms(w, "GET", f"/v1/ledger/proofs/consistency?first=1&second={checkpoint['size']}", reg)


def test_errors_match_the_envelope(local_world: World) -> None:
    w = local_world
    cases = [
        w.client.get("/v1/me"),
        w.client.get("/v1/contracts/c-none", headers=w.h(w.operator)),
        w.client.post("/v1/jobs", json={"code": 1}, headers=w.h(w.operator)),
        w.client.get("/v1/ledger/checkpoint", headers=w.h(w.operator)),
    ]
    assert [r.status_code for r in cases] == [401, 404, 400, 403]
    for r in cases:
        envelope = ErrorEnvelope.model_validate(r.json())
        assert envelope.status == r.status_code and not envelope.ok


def test_domain_checks_of_typed_bodies_are_unchanged(local_world: World) -> None:
    """The contract and price body models check nothing themselves: the domain packages still
    refuse a bad body, with their own codes."""
    w = local_world
    r = w.client.post(
        "/v1/contracts", json={"purpose": "x", "colour": "red"}, headers=w.h(w.operator)
    )
    assert r.status_code == 400 and r.json()["code"] != "invalid_request", r.text
    r = w.client.post(
        "/v1/price-schedules", json={"name": 5, "items": "none"}, headers=w.h(w.bureau)
    )
    assert r.status_code == 400 and r.json()["code"] != "invalid_request", r.text
    r = w.client.post("/v1/price-caps", json=[], headers=w.h(w.bureau))
    assert r.status_code == 400 and r.json()["code"] == "invalid_request", r.text
