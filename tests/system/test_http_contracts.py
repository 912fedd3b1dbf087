"""Contracts over HTTP: application, approval by each provider, bureau then operator
signatures (verifiable offline), suspension, and the scope a contract grants to jobs."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from conftest import GRANTS, World, auth
from factories import parquet_bytes

from contracts.canonical import canonical_bytes
from contracts.document import ContractDocument
from operators.errors import SignatureInvalid
from operators.keys import generate_private_key, public_key_b64, sign, verify

COUNT_CODE = 'emit("n", table("population").agg(n=count()).collect())'
APPLICATION = {
    "datasets": GRANTS,
    "purpose": "养老服务设施规划",
    "purpose_class": "commercial",
    "valid_from": "2026-01-01T00:00:00Z",
    "valid_to": "2030-01-01T00:00:00Z",
}


def ledger_types(w: World) -> list[str]:
    entries = w.client.get("/v1/ledger/entries", headers=w.h(w.regulator)).json()["entries"]
    return [e["event"]["type"] for e in entries]


def apply(w: World, body: dict[str, Any] | None = None, who: str = "operator") -> Any:
    return w.client.post("/v1/contracts", json=body or APPLICATION, headers=w.h(getattr(w, who)))


def contract(w: World, cid: str, token: str | None = None) -> dict[str, Any]:
    r = w.client.get(f"/v1/contracts/{cid}", headers=auth(token or w.operator["token"]))
    assert r.status_code == 200, r.text
    return r.json()


def without(key: str) -> dict[str, Any]:
    return {k: v for k, v in APPLICATION.items() if k != key}


BAD_APPLICATIONS = [
    ("missing purpose", without("purpose"), "purpose"),
    ("missing datasets", without("datasets"), "datasets"),
    ("unknown field", {**APPLICATION, "price": "0"}, "price"),
    (
        "unknown dataset",
        {**APPLICATION, "datasets": {"户籍底册": {"district": ["filter"]}}},
        "户籍底册",
    ),
    ("unknown column", {**APPLICATION, "datasets": {"population": {"学历": ["group_by"]}}}, "学历"),
    (
        "invalid use",
        {**APPLICATION, "datasets": {"population": {"district": ["download"]}}},
        "download",
    ),
    (
        "uses as a string",
        {**APPLICATION, "datasets": {"population": {"district": "group_by"}}},
        "district",
    ),
    ("no datasets", {**APPLICATION, "datasets": {}}, "datasets"),
    ("no columns", {**APPLICATION, "datasets": {"population": {}}}, "population"),
    ("blank purpose", {**APPLICATION, "purpose": "  "}, "purpose"),
    ("bad purpose class", {**APPLICATION, "purpose_class": "charity"}, "charity"),
    (
        "term backwards",
        {**APPLICATION, "valid_from": "2029-01-01T00:00:00Z", "valid_to": "2028-01-01T00:00:00Z"},
        "valid_to",
    ),
    (
        "term over",
        {**APPLICATION, "valid_from": "2020-01-01T00:00:00Z", "valid_to": "2021-01-01T00:00:00Z"},
        "valid_to",
    ),
    ("no time zone", {**APPLICATION, "valid_from": "2026-01-01T00:00:00"}, "time zone"),
    ("not a date", {**APPLICATION, "valid_to": "明年"}, "valid_to"),
    ("float cap", {**APPLICATION, "spend_cap": 99.9}, "spend_cap"),
    ("negative cap", {**APPLICATION, "spend_cap": "-5"}, "spend_cap"),
    ("cap below a fen", {**APPLICATION, "spend_cap": "1.001"}, "spend_cap"),
    ("negative quota", {**APPLICATION, "quotas": {"jobs_per_day": -1}}, "jobs_per_day"),
]


def test_invalid_applications_are_refused_and_not_recorded(local_world: World) -> None:
    w = local_world
    before = ledger_types(w)
    for what, body, needle in BAD_APPLICATIONS:
        r = apply(w, body)
        assert r.status_code == 400, (what, r.text)
        err = r.json()
        assert err["code"] == "contract_invalid", (what, err)
        assert needle in err["error"], (what, err)
    assert ledger_types(w) == before


def test_application_is_recorded_as_applied(local_world: World) -> None:
    w = local_world
    r = apply(w, {**APPLICATION, "spend_cap": "500", "quotas": {"jobs_per_day": 100}})
    assert r.status_code == 201, r.text
    c = r.json()
    assert c["status"] == "pending_approval"
    assert c["approvals"] == {"required": [w.provider["id"]], "given": []}
    doc = c["document"]
    assert doc["operator_id"] == w.operator["id"] and doc["version"] == 1
    assert doc["spend_cap"] == "500.00" and doc["quotas"] == {"jobs_per_day": 100}
    assert doc["datasets"]["population"]["district"] == ["filter", "group_by"]
    assert c["signatures"] == {"bureau": None, "operator": None}
    # The canonical bytes are exactly those of the document, rebuildable by any party.
    assert base64.b64decode(c["canonical"]) == canonical_bytes(ContractDocument.from_json(doc))
    for token in (w.provider["token"], w.bureau, w.regulator["token"]):
        assert contract(w, c["id"], token)["document"] == doc


def test_approval_needs_every_provider_and_only_them(local_world: World, city: Any) -> None:
    w = local_world
    r = w.client.post(
        "/v1/principals", headers=w.h(w.bureau), json={"name": "市市场监管局", "role": "provider"}
    )
    second = r.json()
    ent = city["enterprises"]
    meta = {
        "name": "enterprises",
        "title": ent.title,
        "provider_id": second["id"],
        "level": ent.level,
        "columns": ent.columns,
    }
    r = w.client.post(
        "/v1/datasets",
        headers=w.h(w.bureau),
        files={"file": ("e.parquet", parquet_bytes(ent.table))},
        data={"meta": json.dumps(meta, ensure_ascii=False)},
    )
    assert r.status_code == 201, r.text
    body = {**APPLICATION, "datasets": {**GRANTS, "enterprises": {"industry": ["group_by"]}}}
    cid = apply(w, body).json()["id"]
    assert sorted(contract(w, cid)["approvals"]["required"]) == sorted(
        [w.provider["id"], second["id"]]
    )

    # Neither the operator nor the bureau approves; they have the wrong role.
    for token in (w.operator["token"], w.bureau):
        r = w.client.post(f"/v1/contracts/{cid}/approve", headers=auth(token))
        assert r.status_code == 403 and r.json()["code"] == "forbidden"
    # A provider of neither dataset does not even see the contract.
    stranger = w.client.post(
        "/v1/principals", headers=w.h(w.bureau), json={"name": "市气象局", "role": "provider"}
    ).json()
    r = w.client.post(f"/v1/contracts/{cid}/approve", headers=auth(stranger["token"]))
    assert r.status_code == 404

    r = w.client.post(f"/v1/contracts/{cid}/approve", headers=w.h(w.provider))
    assert r.status_code == 200 and r.json()["status"] == "pending_approval"
    assert r.json()["approvals"]["given"] == [w.provider["id"]]
    r = w.client.post(f"/v1/contracts/{cid}/approve", headers=w.h(w.provider))
    assert r.status_code == 409 and r.json()["code"] == "contract_state"
    r = w.client.post(f"/v1/contracts/{cid}/sign", headers=w.h(w.bureau))
    assert r.status_code == 409, "the bureau signs only after every provider approved"
    r = w.client.post(f"/v1/contracts/{cid}/approve", headers=auth(second["token"]))
    assert r.status_code == 200 and r.json()["status"] == "approved"


def test_bureau_then_operator_sign_and_signatures_verify_offline(local_world: World) -> None:
    w = local_world
    cid = apply(w).json()["id"]
    canonical = base64.b64decode(contract(w, cid)["canonical"])
    good = sign(w.operator_key, canonical)

    # Nobody signs before approval; the operator never signs before the bureau.
    r = w.client.post(f"/v1/contracts/{cid}/sign", headers=w.h(w.bureau))
    assert r.status_code == 409 and r.json()["code"] == "contract_state"
    assert (
        w.client.post(f"/v1/contracts/{cid}/approve", headers=w.h(w.provider)).json()["status"]
        == "approved"
    )
    r = w.client.post(
        f"/v1/contracts/{cid}/sign", json={"signature": good}, headers=w.h(w.operator)
    )
    assert r.status_code == 409 and r.json()["code"] == "contract_state"

    r = w.client.post(f"/v1/contracts/{cid}/sign", headers=w.h(w.bureau))
    assert r.status_code == 200 and r.json()["status"] == "signed_by_bureau"
    assert contract(w, cid)["canonical"] == base64.b64encode(canonical).decode()

    # Wrong signatures are refused and leave the contract waiting for the operator.
    stranger_key = generate_private_key()
    tampered = canonical.replace(b"commercial", b"public_interest")
    for bad in (
        sign(stranger_key, canonical),
        sign(w.operator_key, tampered),
        sign(w.operator_key, canonical[len(b"public-data-sandbox/contract/v1\n") :]),
    ):
        r = w.client.post(
            f"/v1/contracts/{cid}/sign", json={"signature": bad}, headers=w.h(w.operator)
        )
        assert r.status_code == 400, r.text
        assert r.json()["code"] == "contract_signature"
        assert contract(w, cid)["status"] == "signed_by_bureau"
    r = w.client.post(
        f"/v1/contracts/{cid}/sign",
        json={"signature": "bm90IGEgc2lnbmF0dXJl"},
        headers=w.h(w.operator),
    )
    assert r.status_code == 400 and contract(w, cid)["signatures"]["operator"] is None
    r = w.client.post(f"/v1/contracts/{cid}/sign", headers=w.h(w.operator))
    assert r.status_code == 400 and "signature" in r.json()["error"]
    assert (
        w.client.post(
            "/v1/jobs", json={"contract_id": cid, "code": COUNT_CODE}, headers=w.h(w.operator)
        ).json()["code"]
        == "contract_inactive"
    )

    r = w.client.post(
        f"/v1/contracts/{cid}/sign", json={"signature": good}, headers=w.h(w.operator)
    )
    assert r.status_code == 200 and r.json()["status"] == "active"
    signed = contract(w, cid, w.regulator["token"])
    assert signed["signatures"]["operator"] == good

    # Offline: the bureau key from /v1/keys and the operator's registered key.
    bureau_key = w.client.get("/v1/keys").json()["bureau"]
    verify(bureau_key, canonical, signed["signatures"]["bureau"])
    verify(public_key_b64(w.operator_key), canonical, signed["signatures"]["operator"])
    with pytest.raises(SignatureInvalid):
        verify(bureau_key, tampered, signed["signatures"]["bureau"])
    with pytest.raises(SignatureInvalid):
        verify(bureau_key, canonical, signed["signatures"]["operator"])

    r = w.client.post(
        f"/v1/contracts/{cid}/sign", json={"signature": good}, headers=w.h(w.operator)
    )
    assert r.status_code == 409, "an active contract is not signed again"


def test_operator_without_key_cannot_sign(local_world: World) -> None:
    w = local_world
    r = w.client.post(
        "/v1/principals", headers=w.h(w.bureau), json={"name": "无密钥公司", "role": "operator"}
    )
    keyless = r.json()
    r = w.client.post("/v1/contracts", json=APPLICATION, headers=auth(keyless["token"]))
    cid = r.json()["id"]
    w.client.post(f"/v1/contracts/{cid}/approve", headers=w.h(w.provider))
    w.client.post(f"/v1/contracts/{cid}/sign", headers=w.h(w.bureau))
    r = w.client.post(
        f"/v1/contracts/{cid}/sign",
        headers=auth(keyless["token"]),
        json={"signature": sign(generate_private_key(), b"x")},
    )
    assert r.status_code == 400
    assert "public key" in r.json()["error"]
    assert contract(w, cid, keyless["token"])["status"] == "signed_by_bureau"


def test_suspended_contract_refuses_jobs_and_quotes(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()
    assert w.run(cid, COUNT_CODE).json()["status"] == "succeeded"
    for who in ("operator", "provider"):
        r = w.client.post(
            f"/v1/contracts/{cid}/suspend", json={"reason": "x"}, headers=w.h(getattr(w, who))
        )
        assert r.status_code == 403
    r = w.client.post(
        f"/v1/contracts/{cid}/suspend", json={"reason": "发现异常查询"}, headers=w.h(w.regulator)
    )
    assert r.status_code == 200 and r.json()["status"] == "suspended"
    assert r.json()["status_reason"] == "发现异常查询"
    spend = contract(w, cid)["spend"]
    for path in ("/v1/jobs?wait=true", "/v1/quotes"):
        r = w.client.post(
            path, json={"contract_id": cid, "code": COUNT_CODE}, headers=w.h(w.operator)
        )
        assert r.status_code == 403, r.text
        assert r.json()["code"] == "contract_inactive"
        assert "suspended" in r.json()["error"]
    assert contract(w, cid)["spend"] == spend
    r = w.client.post(
        f"/v1/contracts/{cid}/suspend", json={"reason": "again"}, headers=w.h(w.bureau)
    )
    assert r.status_code == 409 and r.json()["code"] == "contract_state"


@pytest.mark.parametrize(
    "code,missing",
    [
        ('emit("n", table("enterprises").agg(n=count()).collect())', "'enterprises'"),
        ('emit("n", table("population").group_by("name").agg(n=count()).collect())', "'name'"),
        (
            'emit("n", table("population").filter(col("resident_id") == "x").agg(n=count())'
            ".collect())",
            "'resident_id'",
        ),
        ('emit("n", table("population").agg(s=sum("name")).collect())', "'name'"),
    ],
)
def test_job_outside_scope_is_refused_and_recorded(
    local_world: World, code: str, missing: str
) -> None:
    w = local_world
    cid = w.active_contract()
    spend = contract(w, cid)["spend"]
    r = w.client.post("/v1/jobs", json={"contract_id": cid, "code": code}, headers=w.h(w.operator))
    assert r.status_code == 403, r.text
    err = r.json()
    assert err["code"] == "contract_scope" and missing in err["error"]
    assert cid in err["error"]
    job = w.client.get(f"/v1/jobs/{err['job_id']}", headers=w.h(w.operator))
    assert job.status_code == 200
    assert job.json()["status"] == "rejected"
    assert job.json()["error"]["code"] == "contract_scope"
    assert job.json()["outputs"] == {} and job.json()["charge"] is None
    assert contract(w, cid)["spend"] == spend
    assert "job.rejected" in ledger_types(w)
    seen = w.client.get(f"/v1/jobs/{err['job_id']}", headers=w.h(w.regulator)).json()
    assert seen["code"] == code


def test_use_outside_scope_is_rejected_and_not_charged(local_world: World) -> None:
    """`income` is granted for aggregate only; grouping by it is refused, naming the use."""
    w = local_world
    cid = w.active_contract()
    r = w.run(cid, 'emit("n", table("population").group_by("income").agg(n=count()).collect())')
    job = r.json()
    if r.status_code == 403:  # refused before running
        assert job["code"] == "contract_scope"
        message, job = (
            job["error"],
            w.client.get(f"/v1/jobs/{job['job_id']}", headers=w.h(w.operator)).json(),
        )
    else:  # refused when its plan reached the driver
        assert r.status_code == 201, r.text
        message = job["error"]["message"]
    assert job["status"] == "rejected" and job["error"]["code"] == "contract_scope"
    assert "'income'" in message and "group_by" in message and "aggregate" in message
    assert job["outputs"] == {}
    assert job["charge"] is None or job["charge"]["amount"] == "0.00"
    assert contract(w, cid)["spend"]["spent_fen"] == 0


def test_contract_is_read_by_parties_and_overseers_only(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()
    for token in (w.operator["token"], w.provider["token"], w.bureau, w.regulator["token"]):
        assert contract(w, cid, token)["status"] == "active"
    r = w.client.get(f"/v1/contracts/{cid}", headers=w.h(w.other_operator))
    assert r.status_code == 404
