"""Operators over HTTP: licences with an end date, key registration and rotation (old
signatures stay verifiable), token rotation and revocation, suspension of principals; and the
client SDK's methods for all of these and for the contract lifecycle."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import pytest
from conftest import GRANTS, World, auth
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from operators.client import SandboxAPIError, SandboxClient
from operators.errors import SignatureInvalid
from operators.keys import generate_private_key, public_key_b64, sign, verify
from operators.rotation import rotation_bytes
from operators.submission import sign_submission
from sandbox.common import clock
from sandbox.records import principals

COUNT_CODE = 'emit("n", table("population").agg(n=count()).collect())'
APPLICATION = {
    "datasets": GRANTS,
    "purpose": "养老服务设施规划",
    "purpose_class": "commercial",
    "valid_from": "2026-01-01T00:00:00Z",
    "valid_to": "2030-01-01T00:00:00Z",
}


def refused(r: Any, status: int, code: str, *needles: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == code, body
    for needle in needles:
        assert needle in body["error"], (needle, body)
    return body


def event_types(w: World, subject: str) -> list[str]:
    r = w.client.get("/v1/ledger/entries", headers=w.h(w.regulator))
    return [e["event"]["type"] for e in r.json()["entries"] if e["event"]["subject"] == subject]


def new_operator(w: World, key: Ed25519PrivateKey | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "新设运营公司", "role": "operator", **extra}
    if key is not None:
        body["public_key"] = public_key_b64(key)
    r = w.client.post("/v1/principals", json=body, headers=w.h(w.bureau))
    assert r.status_code == 201, r.text
    return r.json()


def activate(w: World, token: str, key: Ed25519PrivateKey) -> str:
    """Apply, approve, and sign by the bureau and by the operator holding ``token``."""
    cid = w.client.post("/v1/contracts", json=APPLICATION, headers=auth(token)).json()["id"]
    assert w.client.post(f"/v1/contracts/{cid}/approve", headers=w.h(w.provider)).is_success
    assert w.client.post(f"/v1/contracts/{cid}/sign", headers=w.h(w.bureau)).is_success
    canonical = base64.b64decode(
        w.client.get(f"/v1/contracts/{cid}", headers=auth(token)).json()["canonical"]
    )
    r = w.client.post(
        f"/v1/contracts/{cid}/sign", headers=auth(token), json={"signature": sign(key, canonical)}
    )
    assert r.json()["status"] == "active", r.text
    return cid


def signed_job(contract_id: str, key: Ed25519PrivateKey) -> dict[str, Any]:
    return {
        "contract_id": contract_id,
        "code": COUNT_CODE,
        **sign_submission(key, contract_id, COUNT_CODE),
    }


def keys_of(w: World, principal_id: str, who: str = "bureau") -> list[dict[str, Any]]:
    r = w.client.get(f"/v1/principals/{principal_id}/keys", headers=w.h(getattr(w, who)))
    assert r.status_code == 200, r.text
    return r.json()["keys"]


# --- licences ------------------------------------------------------------------------------


def test_an_expired_licence_blocks_applications_and_jobs_until_renewed(
    local_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = local_world
    key = generate_private_key()
    op = new_operator(
        w, key, license_no="授权运营-2026-009", license_valid_to="2027-01-01T00:00:00+08:00"
    )
    assert op["license_valid_to"] == "2026-12-31T16:00:00Z"
    cid = activate(w, op["token"], key)
    assert (
        w.client.post(
            "/v1/jobs?wait=true",
            json={"contract_id": cid, "code": COUNT_CODE},
            headers=auth(op["token"]),
        ).json()["status"]
        == "succeeded"
    )

    monkeypatch.setattr(clock, "now", lambda: dt.datetime(2027, 1, 2, tzinfo=dt.UTC))
    for path, body in (
        ("/v1/jobs", {"contract_id": cid, "code": COUNT_CODE}),
        ("/v1/quotes", {"contract_id": cid, "code": COUNT_CODE}),
        ("/v1/contracts", APPLICATION),
        (f"/v1/contracts/{cid}/amend", APPLICATION),
    ):
        refused(
            w.client.post(path, json=body, headers=auth(op["token"])),
            403,
            "license_expired",
            "授权运营-2026-009",
            "2026-12-31T16:00:00Z",
            f"/v1/principals/{op['id']}/license",
        )
    # Other operators are not affected.
    assert w.run(w.active_contract(), COUNT_CODE).json()["status"] == "succeeded"

    for who in ("operator", "regulator"):
        refused(
            w.client.post(
                f"/v1/principals/{op['id']}/license",
                headers=w.h(getattr(w, who)),
                json={"license_valid_to": "2028-01-01T00:00:00Z"},
            ),
            403,
            "forbidden",
        )
    r = w.client.post(
        f"/v1/principals/{op['id']}/license",
        headers=w.h(w.bureau),
        json={"license_no": "授权运营-2027-009", "license_valid_to": "2028-01-01T00:00:00Z"},
    )
    assert r.status_code == 200, r.text
    assert (r.json()["license_no"], r.json()["license_valid_to"]) == (
        "授权运营-2027-009",
        "2028-01-01T00:00:00Z",
    )
    assert (
        w.client.post(
            "/v1/jobs?wait=true",
            json={"contract_id": cid, "code": COUNT_CODE},
            headers=auth(op["token"]),
        ).json()["status"]
        == "succeeded"
    )
    assert "principal.license_updated" in event_types(w, op["id"])


@pytest.mark.parametrize(
    "valid_to,needle",
    [
        ("2020-01-01T00:00:00Z", "already past"),
        ("2030-01-01T00:00:00", "time zone"),
        ("明年年底", "ISO 8601"),
    ],
)
def test_invalid_licence_ends_are_refused(local_world: World, valid_to: str, needle: str) -> None:
    w = local_world
    refused(
        w.client.post(
            "/v1/principals",
            headers=w.h(w.bureau),
            json={"name": "x", "role": "operator", "license_valid_to": valid_to},
        ),
        400,
        "bad_request",
        needle,
    )


def test_a_licence_without_an_end_never_expires(
    local_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = local_world
    cid = w.active_contract()
    monkeypatch.setattr(clock, "now", lambda: dt.datetime(2029, 12, 31, tzinfo=dt.UTC))
    assert w.run(cid, COUNT_CODE).json()["status"] == "succeeded"


# --- keys ----------------------------------------------------------------------------------


def test_key_rotation_keeps_old_signatures_verifiable_and_new_ones_need_the_new_key(
    local_world: World,
) -> None:
    w = local_world
    op_id = w.operator["id"]
    cid = w.active_contract()
    (old,) = keys_of(w, op_id)
    assert old["public_key"] == public_key_b64(w.operator_key) and old["current"]
    assert (
        w.client.get(f"/v1/contracts/{cid}", headers=w.h(w.operator)).json()["operator_key_id"]
        == old["id"]
    )

    new_key = generate_private_key()
    new_public = public_key_b64(new_key)
    statement = rotation_bytes(op_id, new_public, old["id"])
    r = w.client.post(
        f"/v1/principals/{op_id}/keys",
        headers=w.h(w.operator),
        json={"public_key": new_public, "signature": sign(w.operator_key, statement)},
    )
    assert r.status_code == 201, r.text
    new = r.json()
    assert new["current"] and new["public_key"] == new_public and new["revoked_at"] is None

    listed = keys_of(w, op_id, "regulator")
    assert [k["id"] for k in listed] == [old["id"], new["id"]]
    assert listed[0]["revoked_at"] is not None and not listed[0]["current"]
    assert listed[0]["revoked_at"] <= listed[1]["valid_from"]
    assert keys_of(w, op_id, "operator") == listed

    # The contract signed before the rotation still verifies, against the key that signed it.
    c = w.client.get(f"/v1/contracts/{cid}", headers=w.h(w.regulator)).json()
    signer = next(k for k in listed if k["id"] == c["operator_key_id"])
    verify(signer["public_key"], base64.b64decode(c["canonical"]), c["signatures"]["operator"])
    with pytest.raises(SignatureInvalid):
        verify(new_public, base64.b64decode(c["canonical"]), c["signatures"]["operator"])
    with w.ctx.reading() as s:
        at_activation = dt.datetime.fromisoformat(c["history"][-1]["at"])
        assert principals.key_at(s, op_id, at_activation).id == old["id"]  # type: ignore[union-attr]
        assert principals.current_key(s, op_id).id == new["id"]  # type: ignore[union-attr]

    # New submissions need the new key; unsigned ones are still accepted.
    refused(
        w.client.post("/v1/jobs", json=signed_job(cid, w.operator_key), headers=w.h(w.operator)),
        400,
        "signature_invalid",
        new["id"],
    )
    submitted = signed_job(cid, new_key)
    r = w.client.post("/v1/jobs?wait=true", json=submitted, headers=w.h(w.operator))
    assert r.status_code == 201 and r.json()["status"] == "succeeded", r.text
    job = w.client.get(f"/v1/jobs/{r.json()['id']}", headers=w.h(w.regulator)).json()
    assert job["signature"] == submitted["signature"]
    assert job["signing_key_id"] == new["id"]
    unsigned = w.run(cid, COUNT_CODE).json()
    assert unsigned["status"] == "succeeded"
    assert (
        w.client.get(f"/v1/jobs/{unsigned['id']}", headers=w.h(w.regulator)).json()["signature"]
        is None
    )

    # A replayed rotation statement no longer matches the key in force.
    refused(
        w.client.post(
            f"/v1/principals/{op_id}/keys",
            headers=w.h(w.operator),
            json={
                "public_key": public_key_b64(generate_private_key()),
                "signature": sign(w.operator_key, statement),
            },
        ),
        400,
        "signature_invalid",
        "key rotation refused",
    )
    assert event_types(w, op_id).count("principal.key_registered") == 1


def test_a_contract_signed_after_rotation_records_the_new_key(local_world: World) -> None:
    w = local_world
    op_id = w.operator["id"]
    new_key = generate_private_key()
    r = w.client.post(
        f"/v1/principals/{op_id}/keys",
        headers=w.h(w.bureau),
        json={"public_key": public_key_b64(new_key), "reason": "密钥遗失"},
    )
    assert r.status_code == 201, r.text
    old = keys_of(w, op_id)[0]
    assert old["revoked_reason"] == "密钥遗失"
    cid = w.client.post("/v1/contracts", json=APPLICATION, headers=w.h(w.operator)).json()["id"]
    w.client.post(f"/v1/contracts/{cid}/approve", headers=w.h(w.provider))
    w.client.post(f"/v1/contracts/{cid}/sign", headers=w.h(w.bureau))
    canonical = base64.b64decode(
        w.client.get(f"/v1/contracts/{cid}", headers=w.h(w.operator)).json()["canonical"]
    )
    refused(
        w.client.post(
            f"/v1/contracts/{cid}/sign",
            headers=w.h(w.operator),
            json={"signature": sign(w.operator_key, canonical)},
        ),
        400,
        "contract_signature",
    )
    r = w.client.post(
        f"/v1/contracts/{cid}/sign",
        headers=w.h(w.operator),
        json={"signature": sign(new_key, canonical)},
    )
    assert (
        r.json()["status"] == "active" and r.json()["operator_key_id"] == keys_of(w, op_id)[1]["id"]
    )


def test_key_registration_refusals_change_nothing(local_world: World) -> None:
    w = local_world
    op_id = w.operator["id"]
    current = keys_of(w, op_id)[0]
    fresh = public_key_b64(generate_private_key())
    path = f"/v1/principals/{op_id}/keys"
    refused(
        w.client.post(path, headers=w.h(w.operator), json={"public_key": fresh}),
        400,
        "bad_request",
        "signature",
        current["id"],
    )
    # Signed by the new key itself rather than the key in force.
    other = generate_private_key()
    refused(
        w.client.post(
            path,
            headers=w.h(w.operator),
            json={
                "public_key": public_key_b64(other),
                "signature": sign(
                    other, rotation_bytes(op_id, public_key_b64(other), current["id"])
                ),
            },
        ),
        400,
        "signature_invalid",
    )
    refused(
        w.client.post(path, headers=w.h(w.other_operator), json={"public_key": fresh}),
        403,
        "forbidden",
    )
    refused(
        w.client.post(path, headers=w.h(w.regulator), json={"public_key": fresh}), 403, "forbidden"
    )
    refused(
        w.client.post(path, headers=w.h(w.bureau), json={"public_key": "abc"}),
        400,
        "invalid_public_key",
    )
    refused(
        w.client.post(path, headers=w.h(w.bureau), json={"public_key": current["public_key"]}),
        409,
        "conflict",
        current["id"],
    )
    assert (
        w.client.post(
            "/v1/principals/o-nobody/keys", headers=w.h(w.bureau), json={"public_key": fresh}
        ).status_code
        == 404
    )
    for who in ("other_operator", "provider"):
        refused(w.client.get(path, headers=w.h(getattr(w, who))), 403, "forbidden")
    assert keys_of(w, op_id) == [current]


def test_a_first_key_is_registered_by_the_bureau(local_world: World) -> None:
    w = local_world
    op = new_operator(w)
    key = generate_private_key()
    path = f"/v1/principals/{op['id']}/keys"
    refused(
        w.client.post(
            path,
            headers=auth(op["token"]),
            json={"public_key": public_key_b64(key), "signature": "AAAA"},
        ),
        403,
        "forbidden",
        "bureau registers",
    )
    assert (
        w.client.post(
            path, headers=w.h(w.bureau), json={"public_key": public_key_b64(key)}
        ).status_code
        == 201
    )
    assert activate(w, op["token"], key)


# --- tokens --------------------------------------------------------------------------------


def test_token_rotation_invalidates_the_old_token(local_world: World) -> None:
    w = local_world
    old = w.operator["token"]
    r = w.client.post("/v1/me/token", headers=auth(old))
    assert r.status_code == 200, r.text
    new = r.json()["token"]
    assert new != old and new.startswith("sbx_")
    refused(w.client.get("/v1/me", headers=auth(old)), 401, "token_revoked", "POST /v1/me/token")
    refused(w.client.get("/v1/datasets", headers=auth(old)), 401, "token_revoked")
    assert w.client.get("/v1/me", headers=auth(new)).json()["id"] == w.operator["id"]
    events = w.client.get("/v1/ledger/entries", headers=w.h(w.regulator)).json()["entries"]
    rotated = [e["event"] for e in events if e["event"]["type"] == "principal.token_rotated"]
    assert [e["subject"] for e in rotated] == [w.operator["id"]]
    assert old not in json.dumps(events) and new not in json.dumps(events)


def test_the_bureau_revokes_tokens_and_may_reissue_one(local_world: World) -> None:
    w = local_world
    op_id, token = w.operator["id"], w.operator["token"]
    path = f"/v1/principals/{op_id}/revoke-tokens"
    for who in ("operator", "regulator", "provider"):
        refused(
            w.client.post(path, headers=w.h(getattr(w, who)), json={"reason": "x"}),
            403,
            "forbidden",
        )
    refused(w.client.post(path, headers=w.h(w.bureau), json={}), 400, "invalid_request")
    me = w.client.get("/v1/me", headers=w.h(w.bureau)).json()["id"]
    refused(
        w.client.post(
            f"/v1/principals/{me}/revoke-tokens", headers=w.h(w.bureau), json={"reason": "x"}
        ),
        403,
        "forbidden",
        "/v1/me/token",
    )

    r = w.client.post(path, headers=w.h(w.bureau), json={"reason": "令牌泄露"})
    assert r.status_code == 200 and r.json()["token"] is None, r.text
    refused(w.client.get("/v1/me", headers=auth(token)), 401, "token_revoked", "令牌泄露")
    r = w.client.post(path, headers=w.h(w.bureau), json={"reason": "重新发放", "reissue": True})
    reissued = r.json()["token"]
    assert w.client.get("/v1/me", headers=auth(reissued)).json()["id"] == op_id
    refused(w.client.get("/v1/me", headers=auth(token)), 401, "token_revoked")
    assert event_types(w, op_id)[-2:] == ["principal.tokens_revoked", "principal.tokens_revoked"]


# --- suspension of principals --------------------------------------------------------------


def test_a_suspended_operator_is_refused_everywhere_but_me(local_world: World) -> None:
    w = local_world
    op_id = w.operator["id"]
    cid = w.active_contract()
    for who in ("operator", "provider", "other_operator"):
        refused(
            w.client.post(
                f"/v1/principals/{op_id}/suspend",
                headers=w.h(getattr(w, who)),
                json={"reason": "x"},
            ),
            403,
            "forbidden",
        )
    r = w.client.post(
        f"/v1/principals/{op_id}/suspend", headers=w.h(w.regulator), json={"reason": "涉嫌违规查询"}
    )
    assert r.status_code == 200 and r.json()["status"] == "suspended", r.text

    me = w.client.get("/v1/me", headers=w.h(w.operator))
    assert me.status_code == 200
    assert me.json() == {
        "id": op_id,
        "name": w.operator["name"],
        "role": "operator",
        "status": "suspended",
        "status_reason": "涉嫌违规查询",
    }
    for method, path, body in (
        ("GET", "/v1/datasets", None),
        ("GET", f"/v1/contracts/{cid}", None),
        ("POST", "/v1/jobs", {"contract_id": cid, "code": COUNT_CODE}),
        ("POST", "/v1/contracts", APPLICATION),
        ("POST", "/v1/me/token", None),
        ("GET", f"/v1/principals/{op_id}", None),
        ("GET", "/v1/bills?period=2026-01", None),
    ):
        r = w.client.request(method, path, json=body, headers=w.h(w.operator))
        refused(r, 403, "principal_suspended", "涉嫌违规查询", "GET /v1/me")

    refused(
        w.client.post(
            f"/v1/principals/{op_id}/suspend", headers=w.h(w.bureau), json={"reason": "again"}
        ),
        409,
        "conflict",
    )
    refused(
        w.client.post(
            f"/v1/principals/{op_id}/resume", headers=w.h(w.bureau), json={"reason": "x"}
        ),
        403,
        "forbidden",
        "only the regulator",
    )
    r = w.client.post(
        f"/v1/principals/{op_id}/resume", headers=w.h(w.regulator), json={"reason": "核查无误"}
    )
    assert r.status_code == 200 and r.json()["status"] == "active"
    assert [(h["status"], h["reason"]) for h in r.json()["history"]] == [
        ("active", "created"),
        ("suspended", "涉嫌违规查询"),
        ("active", "核查无误"),
    ]
    assert w.run(cid, COUNT_CODE).json()["status"] == "succeeded"
    assert w.client.get("/v1/me", headers=w.h(w.operator)).json() == {
        "id": op_id,
        "name": w.operator["name"],
        "role": "operator",
    }
    refused(
        w.client.post(
            f"/v1/principals/{op_id}/resume", headers=w.h(w.regulator), json={"reason": "x"}
        ),
        409,
        "conflict",
    )
    assert event_types(w, op_id)[-2:] == ["principal.suspended", "principal.resumed"]


def test_the_bureau_resumes_a_provider_it_suspended(local_world: World) -> None:
    w = local_world
    pid = w.provider["id"]
    cid = w.client.post("/v1/contracts", json=APPLICATION, headers=w.h(w.operator)).json()["id"]
    w.client.post(
        f"/v1/principals/{pid}/suspend", headers=w.h(w.bureau), json={"reason": "人员变动"}
    )
    refused(
        w.client.post(f"/v1/contracts/{cid}/approve", headers=w.h(w.provider)),
        403,
        "principal_suspended",
    )
    r = w.client.post(
        f"/v1/principals/{pid}/resume", headers=w.h(w.bureau), json={"reason": "已交接"}
    )
    assert r.status_code == 200, r.text
    assert (
        w.client.post(f"/v1/contracts/{cid}/approve", headers=w.h(w.provider)).json()["status"]
        == "approved"
    )


def test_the_bureau_and_the_regulator_cannot_be_suspended(local_world: World) -> None:
    w = local_world
    bureau_id = w.client.get("/v1/me", headers=w.h(w.bureau)).json()["id"]
    refused(
        w.client.post(
            f"/v1/principals/{bureau_id}/suspend", headers=w.h(w.regulator), json={"reason": "x"}
        ),
        403,
        "forbidden",
        "operators and providers",
    )
    refused(
        w.client.post(
            f"/v1/principals/{w.regulator['id']}/suspend",
            headers=w.h(w.bureau),
            json={"reason": "x"},
        ),
        403,
        "forbidden",
    )
    assert w.client.get("/v1/me", headers=w.h(w.bureau)).status_code == 200


def test_principals_are_read_by_themselves_and_overseers(local_world: World) -> None:
    w = local_world
    op_id = w.operator["id"]
    for who in ("operator", "bureau", "regulator"):
        r = w.client.get(f"/v1/principals/{op_id}", headers=w.h(getattr(w, who)))
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["id"], body["status"], body["license_no"]) == (
            op_id,
            "active",
            "授权运营-2026-001",
        )
        assert body["key_id"] == keys_of(w, op_id)[0]["id"]
    for who in ("other_operator", "provider"):
        refused(
            w.client.get(f"/v1/principals/{op_id}", headers=w.h(getattr(w, who))), 403, "forbidden"
        )
    assert w.client.get("/v1/principals/o-nobody", headers=w.h(w.bureau)).status_code == 404


# --- the client SDK ------------------------------------------------------------------------


def sdk(w: World, token: str, key: Ed25519PrivateKey | None = None) -> SandboxClient:
    return SandboxClient("http://testserver", token=token, signing_key=key, http_client=w.client)


def test_the_client_drives_the_whole_lifecycle(local_world: World) -> None:
    w = local_world
    bureau, regulator = sdk(w, w.bureau), sdk(w, w.regulator["token"])
    provider = sdk(w, w.provider["token"])
    key = generate_private_key()
    made = bureau.create_principal(
        "客户端运营公司",
        "operator",
        license_no="授权运营-2026-020",
        public_key=key.public_key(),
        license_valid_to=dt.datetime(2029, 1, 1, tzinfo=dt.UTC),
    )
    assert made["license_valid_to"] == "2029-01-01T00:00:00Z" and made["key_id"]
    op = sdk(w, made["token"], key)

    draft = op.apply_contract(
        GRANTS, "初稿", "commercial", "2026-01-01T00:00:00Z", "2030-01-01T00:00:00Z", draft=True
    )
    cid = draft["id"]
    assert draft["status"] == "draft"
    edited = op.edit_contract(
        cid,
        GRANTS,
        "养老规划",
        "public_interest",
        "2026-01-01T00:00:00Z",
        "2030-01-01T00:00:00Z",
        quotas={"jobs_per_day": 50},
    )
    assert edited["document"]["purpose_class"] == "public_interest"
    assert op.submit_contract(cid)["status"] == "pending_approval"
    provider.approve_contract(cid)
    bureau.sign_contract(cid)
    assert op.sign_contract(cid)["status"] == "active"

    amended = op.amend_contract(
        cid,
        GRANTS,
        "养老规划（扩展）",
        "public_interest",
        "2026-01-01T00:00:00Z",
        "2031-01-01T00:00:00Z",
    )
    assert amended["amendment"] == {"version": 2, "status": "pending_approval"}
    provider.approve_contract(cid)
    bureau.sign_contract(cid)
    activated = op.sign_contract(cid)  # signs the amendment in progress
    assert (activated["version"], activated["document"]["valid_to"]) == (2, "2031-01-01T00:00:00Z")
    assert op.contract_version(cid, 1)["status"] == "superseded"

    new_key = generate_private_key()
    rotated = op.rotate_key(new_key)
    assert [k["id"] for k in op.principal_keys(made["id"]) if k["current"]] == [rotated["id"]]
    assert op.submit(cid, COUNT_CODE, wait=True).status == "succeeded"  # signed with new_key
    old_token = made["token"]
    new_token = op.rotate_token()
    assert new_token != old_token and op.me()["id"] == made["id"]
    with pytest.raises(SandboxAPIError) as info:
        sdk(w, old_token).me()
    assert (info.value.status, info.value.code) == (401, "token_revoked")

    assert regulator.suspend_contract(cid, "抽查")["status"] == "suspended"
    assert regulator.resume_contract(cid, "正常")["status"] == "active"
    assert (
        bureau.update_license(made["id"], "授权运营-2027-020", "2030-06-30T00:00:00Z")["license_no"]
        == "授权运营-2027-020"
    )
    assert regulator.suspend_principal(made["id"], "核查")["status"] == "suspended"
    assert op.me()["status"] == "suspended"
    assert regulator.resume_principal(made["id"], "核查完毕")["status"] == "active"
    third = generate_private_key()
    assert bureau.register_key(made["id"], third.public_key(), reason="换发")["current"]
    assert bureau.principal(made["id"])["key_id"] == op.principal_keys(made["id"])[-1]["id"]
    reissued = bureau.revoke_tokens(made["id"], "例行更换", reissue=True)["token"]
    assert sdk(w, reissued).me()["id"] == made["id"]
    with pytest.raises(SandboxAPIError) as info:
        op.terminate_contract(cid, "项目结束")  # the rotated token was revoked just now
    assert info.value.code == "token_revoked"
    assert sdk(w, reissued).terminate_contract(cid, "项目结束")["status"] == "terminated"
