"""The contract lifecycle over HTTP: drafts, suspension and resumption, termination, expiry at
the end of term, and amendments as new versions that take over only once signed."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import pytest
from conftest import GRANTS, World
from factories import parquet_bytes
from fastapi.testclient import TestClient
from sqlalchemy import select

from contracts.canonical import canonical_bytes
from contracts.document import ContractDocument
from operators.keys import public_key_b64, sign, verify
from operators.submission import sign_submission
from sandbox.api.app import create_app
from sandbox.common import clock
from sandbox.records import agreements
from sandbox.store.models import Contract, ContractVersion

COUNT_CODE = 'emit("n", table("population").agg(n=count()).collect())'
INCOME_CODE = 'emit("m", table("population").agg(m=mean("income")).collect())'
APPLICATION = {
    "datasets": GRANTS,
    "purpose": "养老服务设施规划",
    "purpose_class": "commercial",
    "valid_from": "2026-01-01T00:00:00Z",
    "valid_to": "2030-01-01T00:00:00Z",
}
# GRANTS without `income`: an amendment that narrows the contract.
NARROW = {"population": {c: u for c, u in GRANTS["population"].items() if c != "income"}}
END_OF_TERM = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def events(w: World) -> list[dict[str, Any]]:
    r = w.client.get("/v1/ledger/entries", headers=w.h(w.regulator))
    return [e["event"] for e in r.json()["entries"]]


def events_of(w: World, cid: str) -> list[tuple[str, Any]]:
    return [(e["type"], e["data"].get("version")) for e in events(w) if e["subject"] == cid]


def contract(w: World, cid: str, who: str = "operator") -> dict[str, Any]:
    r = w.client.get(f"/v1/contracts/{cid}", headers=w.h(getattr(w, who)))
    assert r.status_code == 200, r.text
    return r.json()


def post(w: World, path: str, who: str, body: Any = None) -> Any:
    return w.client.post(path, json=body, headers=w.h(getattr(w, who)))


def refused(r: Any, status: int, code: str, *needles: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == code, body
    for needle in needles:
        assert needle in body["error"], (needle, body)
    return body


def sign_version(w: World, cid: str, version: int) -> Any:
    v = w.client.get(f"/v1/contracts/{cid}/versions/{version}", headers=w.h(w.operator)).json()
    signature = sign(w.operator_key, base64.b64decode(v["canonical"]))
    return post(w, f"/v1/contracts/{cid}/sign", "operator", {"signature": signature})


def statuses(history: list[dict[str, Any]]) -> list[str]:
    return [h["status"] for h in history]


# --- drafts --------------------------------------------------------------------------------


def test_a_draft_is_edited_then_submitted(local_world: World) -> None:
    w = local_world
    r = post(w, "/v1/contracts", "operator", {**APPLICATION, "draft": True})
    assert r.status_code == 201, r.text
    draft = r.json()
    cid = draft["id"]
    assert draft["status"] == "draft" and draft["version"] == 1
    assert statuses(draft["history"]) == ["draft"]
    assert draft["history"][0]["by"] == w.operator["id"]
    # A draft is the operator's own: providers neither see nor approve it.
    assert w.client.get(f"/v1/contracts/{cid}", headers=w.h(w.provider)).status_code == 404
    assert post(w, f"/v1/contracts/{cid}/approve", "provider").status_code == 404
    refused(
        post(w, "/v1/jobs", "operator", {"contract_id": cid, "code": COUNT_CODE}),
        403,
        "contract_inactive",
        "draft",
        f"/v1/contracts/{cid}/submit",
    )

    edited = w.client.put(
        f"/v1/contracts/{cid}",
        headers=w.h(w.operator),
        json={**APPLICATION, "purpose": "社区养老床位测算"},
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["document"]["purpose"] == "社区养老床位测算"
    assert edited.json()["status"] == "draft"
    refused(
        w.client.put(
            f"/v1/contracts/{cid}", headers=w.h(w.operator), json={**APPLICATION, "purpose": " "}
        ),
        400,
        "contract_invalid",
        "purpose",
    )
    refused(
        w.client.put(
            f"/v1/contracts/{cid}", headers=w.h(w.operator), json={**APPLICATION, "draft": True}
        ),
        400,
        "bad_request",
        "submit",
    )
    assert (
        w.client.put(
            f"/v1/contracts/{cid}", headers=w.h(w.other_operator), json=APPLICATION
        ).status_code
        == 404
    )

    submitted = post(w, f"/v1/contracts/{cid}/submit", "operator")
    assert submitted.status_code == 200, submitted.text
    body = submitted.json()
    assert body["status"] == "pending_approval"
    assert statuses(body["history"]) == ["draft", "pending_approval"]
    assert base64.b64decode(body["canonical"]) == canonical_bytes(
        ContractDocument.from_json(body["document"])
    )
    assert contract(w, cid, "provider")["document"]["purpose"] == "社区养老床位测算"

    refused(
        w.client.put(f"/v1/contracts/{cid}", headers=w.h(w.operator), json=APPLICATION),
        409,
        "contract_state",
        "'pending_approval'",
        "only a 'draft'",
        "/amend",
    )
    refused(
        post(w, f"/v1/contracts/{cid}/submit", "operator"), 409, "contract_state", "only a 'draft'"
    )
    assert [t for t, _ in events_of(w, cid)] == [
        "contract.drafted",
        "contract.draft_updated",
        "contract.submitted",
    ]


@pytest.mark.parametrize("flag", ["yes", 1, None])
def test_draft_flag_must_be_a_boolean(local_world: World, flag: Any) -> None:
    refused(
        post(local_world, "/v1/contracts", "operator", {**APPLICATION, "draft": flag}),
        400,
        "contract_invalid",
        "draft",
    )


def test_draft_false_applies_at_once(local_world: World) -> None:
    r = post(local_world, "/v1/contracts", "operator", {**APPLICATION, "draft": False})
    assert r.status_code == 201 and r.json()["status"] == "pending_approval"


def test_a_draft_whose_term_passed_is_refused_at_submission(
    local_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = local_world
    cid = post(w, "/v1/contracts", "operator", {**APPLICATION, "draft": True}).json()["id"]
    monkeypatch.setattr(clock, "now", lambda: END_OF_TERM + dt.timedelta(days=1))
    assert contract(w, cid)["status"] == "draft", "a draft does not expire"
    refused(post(w, f"/v1/contracts/{cid}/submit", "operator"), 400, "contract_invalid", "valid_to")
    assert contract(w, cid)["status"] == "draft"


# --- suspension and resumption -------------------------------------------------------------


def test_a_suspended_contract_refuses_jobs_until_the_regulator_resumes_it(
    local_world: World,
) -> None:
    w = local_world
    cid = w.active_contract()
    r = post(w, f"/v1/contracts/{cid}/suspend", "bureau", {"reason": "核查用途"})
    assert r.status_code == 200 and r.json()["status"] == "suspended"
    refused(
        post(w, "/v1/jobs", "operator", {"contract_id": cid, "code": COUNT_CODE}),
        403,
        "contract_inactive",
        "suspended",
        "regulator",
    )

    for who in ("bureau", "operator", "provider"):
        refused(
            post(w, f"/v1/contracts/{cid}/resume", who, {"reason": "已核实"}),
            403,
            "forbidden",
            "regulator",
        )
    refused(post(w, f"/v1/contracts/{cid}/resume", "regulator", {}), 400, "invalid_request")
    r = post(w, f"/v1/contracts/{cid}/resume", "regulator", {"reason": "已核实，恢复使用"})
    assert r.status_code == 200, r.text
    c = r.json()
    assert c["status"] == "active" and c["status_reason"] == "已核实，恢复使用"
    assert statuses(c["history"]) == [
        "pending_approval",
        "approved",
        "signed_by_bureau",
        "active",
        "suspended",
        "active",
    ]
    suspension, resumption = c["history"][-2:]
    assert (suspension["by"], suspension["reason"]) == (
        w.client.get("/v1/me", headers=w.h(w.bureau)).json()["id"],
        "核查用途",
    )
    assert (resumption["by"], resumption["reason"]) == (w.regulator["id"], "已核实，恢复使用")
    assert suspension["at"] <= resumption["at"] and resumption["at"].endswith("Z")
    assert w.run(cid, COUNT_CODE).json()["status"] == "succeeded"

    refused(
        post(w, f"/v1/contracts/{cid}/resume", "regulator", {"reason": "x"}),
        409,
        "contract_state",
        "'active'",
        "only a 'suspended'",
    )
    assert ("contract.resumed", 1) in events_of(w, cid)


def test_only_an_active_contract_is_suspended(local_world: World) -> None:
    w = local_world
    pending = post(w, "/v1/contracts", "operator", APPLICATION).json()["id"]
    refused(
        post(w, f"/v1/contracts/{pending}/suspend", "regulator", {"reason": "x"}),
        409,
        "contract_state",
        "'pending_approval'",
        "'active'",
    )


# --- termination ---------------------------------------------------------------------------


def test_termination_is_final(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()
    for who in ("regulator", "provider"):
        refused(post(w, f"/v1/contracts/{cid}/terminate", who, {"reason": "x"}), 403, "forbidden")
    assert (
        post(w, f"/v1/contracts/{cid}/terminate", "other_operator", {"reason": "x"}).status_code
        == 404
    )
    refused(post(w, f"/v1/contracts/{cid}/terminate", "operator", {}), 400, "invalid_request")

    r = post(w, f"/v1/contracts/{cid}/terminate", "operator", {"reason": "项目结束"})
    assert r.status_code == 200, r.text
    c = r.json()
    assert c["status"] == "terminated" and c["status_reason"] == "项目结束"
    assert c["history"][-1]["by"] == w.operator["id"]
    refused(
        post(w, "/v1/jobs", "operator", {"contract_id": cid, "code": COUNT_CODE}),
        403,
        "contract_inactive",
        "terminated",
    )
    for path, who in (("resume", "regulator"), ("suspend", "regulator"), ("terminate", "bureau")):
        refused(
            post(w, f"/v1/contracts/{cid}/{path}", who, {"reason": "x"}),
            409,
            "contract_state",
            "'terminated' is final",
        )
    refused(
        post(w, f"/v1/contracts/{cid}/amend", "operator", APPLICATION),
        409,
        "contract_state",
        "'terminated' is final",
    )
    assert ("contract.terminated", 1) in events_of(w, cid)


def test_the_bureau_terminates_a_contract_still_in_approval(local_world: World) -> None:
    w = local_world
    cid = post(w, "/v1/contracts", "operator", APPLICATION).json()["id"]
    r = post(w, f"/v1/contracts/{cid}/terminate", "bureau", {"reason": "申请材料不全"})
    assert r.status_code == 200 and r.json()["status"] == "terminated"
    refused(
        post(w, f"/v1/contracts/{cid}/approve", "provider"),
        409,
        "contract_state",
        "'terminated' is final",
    )


# --- expiry --------------------------------------------------------------------------------


def test_a_contract_read_after_its_term_is_expired_and_logged_once(
    local_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = local_world
    cid = w.active_contract()
    monkeypatch.setattr(clock, "now", lambda: END_OF_TERM - dt.timedelta(seconds=1))
    assert contract(w, cid)["status"] == "active"
    monkeypatch.setattr(clock, "now", lambda: END_OF_TERM)
    c = contract(w, cid)
    assert c["status"] == "expired"
    last = c["history"][-1]
    assert last["status"] == "expired" and last["by"] is None
    assert "2030-01-01T00:00:00Z" in last["reason"]
    assert contract(w, cid, "regulator")["status"] == "expired"
    expired = [e for e in events(w) if e["type"] == "contract.expired"]
    assert [(e["subject"], e["actor"]) for e in expired] == [(cid, None)]
    refused(
        post(w, f"/v1/contracts/{cid}/resume", "regulator", {"reason": "x"}),
        409,
        "contract_state",
        "'expired' is final",
    )


def test_a_contract_used_after_its_term_is_expired_and_logged(
    local_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = local_world
    cid = w.active_contract()
    spend = contract(w, cid)["spend"]
    monkeypatch.setattr(clock, "now", lambda: END_OF_TERM + dt.timedelta(hours=1))
    for path in ("/v1/quotes", "/v1/jobs"):
        refused(
            post(w, path, "operator", {"contract_id": cid, "code": COUNT_CODE}),
            403,
            "contract_inactive",
            "'expired'",
            "term is over",
        )
    # Recorded by the use itself, not by a later read.
    with w.ctx.reading() as s:
        assert s.get(Contract, cid).status == "expired"  # type: ignore[union-attr]
    assert events_of(w, cid)[-1] == ("contract.expired", 1)
    assert [t for t, _ in events_of(w, cid)].count("contract.expired") == 1
    assert contract(w, cid)["spend"] == spend


def test_a_suspended_contract_also_expires(
    local_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = local_world
    cid = w.active_contract()
    post(w, f"/v1/contracts/{cid}/suspend", "regulator", {"reason": "抽查"})
    monkeypatch.setattr(clock, "now", lambda: END_OF_TERM)
    assert statuses(contract(w, cid)["history"])[-2:] == ["suspended", "expired"]


def test_service_start_expires_every_contract_past_its_term(
    local_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = local_world
    ended = w.active_contract()
    later = w.active_contract(valid_to="2031-01-01T00:00:00Z")
    waiting = post(w, "/v1/contracts", "operator", APPLICATION).json()["id"]
    draft = post(w, "/v1/contracts", "operator", {**APPLICATION, "draft": True}).json()["id"]
    monkeypatch.setattr(clock, "now", lambda: END_OF_TERM + dt.timedelta(days=2))
    with TestClient(create_app(context=w.ctx)):
        pass
    with w.ctx.reading() as s:
        found = {
            cid: s.get(Contract, cid).status  # type: ignore[union-attr]
            for cid in (ended, later, waiting, draft)
        }
    assert found == {ended: "expired", later: "active", waiting: "expired", draft: "draft"}
    assert agreements.expire_due(w.ctx) == 0, "a second sweep finds nothing left to expire"


# --- amendments ----------------------------------------------------------------------------


def test_an_amendment_takes_over_only_once_signed_by_both(local_world: World) -> None:
    w = local_world
    cid = w.active_contract(spend_cap="5000.00")
    assert w.run(cid, INCOME_CODE).json()["status"] == "succeeded"
    v1 = contract(w, cid)
    spend = v1["spend"]

    r = post(
        w,
        f"/v1/contracts/{cid}/amend",
        "operator",
        {
            **APPLICATION,
            "datasets": NARROW,
            "purpose": "养老服务设施规划（第二期）",
            "spend_cap": "5000.00",
        },
    )
    assert r.status_code == 201, r.text
    c = r.json()
    assert (c["version"], c["status"]) == (1, "active")
    assert c["amendment"] == {"version": 2, "status": "pending_approval"}
    assert [(v["version"], v["status"]) for v in c["versions"]] == [
        (1, "active"),
        (2, "pending_approval"),
    ]
    assert c["document"] == v1["document"], "version 1 stays in force"
    refused(
        post(w, f"/v1/contracts/{cid}/amend", "operator", APPLICATION),
        409,
        "contract_state",
        "version 2",
        "'pending_approval'",
    )
    # Jobs still run under version 1, which grants income.
    assert w.run(cid, INCOME_CODE).json()["status"] == "succeeded"

    assert post(w, f"/v1/contracts/{cid}/approve", "provider").json()["amendment"] == {
        "version": 2,
        "status": "approved",
    }
    assert post(w, f"/v1/contracts/{cid}/sign", "bureau").json()["amendment"]["status"] == (
        "signed_by_bureau"
    )
    v2 = w.client.get(f"/v1/contracts/{cid}/versions/2", headers=w.h(w.operator)).json()
    assert v2["document"]["version"] == 2 and v2["document"]["id"] == cid
    assert v2["document"]["purpose"] == "养老服务设施规划（第二期）"
    assert base64.b64decode(v2["canonical"]) == canonical_bytes(
        ContractDocument.from_json(v2["document"])
    )
    assert contract(w, cid)["version"] == 1

    # The operator's signature must be over version 2's bytes, not version 1's.
    old_bytes = base64.b64decode(v1["canonical"])
    refused(
        post(
            w,
            f"/v1/contracts/{cid}/sign",
            "operator",
            {"signature": sign(w.operator_key, old_bytes)},
        ),
        400,
        "contract_signature",
        "version 2",
    )
    r = sign_version(w, cid, 2)
    assert r.status_code == 200, r.text
    c = r.json()
    assert (c["version"], c["status"], c["amendment"]) == (2, "active", None)
    assert c["document"] == v2["document"]
    assert [(v["version"], v["status"]) for v in c["versions"]] == [
        (1, "superseded"),
        (2, "active"),
    ]
    assert c["versions"][0]["history"][-1]["reason"] == "superseded by version 2"
    assert c["spend"] == {**spend, "spent_fen": c["spend"]["spent_fen"]}
    assert c["spend"]["spent_fen"] > spend["spent_fen"], "spend carries over across versions"

    # The superseded version stays readable, with signatures that still verify.
    old = w.client.get(f"/v1/contracts/{cid}/versions/1", headers=w.h(w.regulator)).json()
    assert old["status"] == "superseded" and old["document"] == v1["document"]
    bureau_key = w.client.get("/v1/keys").json()["bureau"]
    verify(bureau_key, old_bytes, old["signatures"]["bureau"])
    verify(public_key_b64(w.operator_key), old_bytes, old["signatures"]["operator"])
    assert (
        w.client.get(f"/v1/contracts/{cid}/versions/3", headers=w.h(w.operator)).status_code == 404
    )
    assert (
        w.client.get(f"/v1/contracts/{cid}/versions/1", headers=w.h(w.other_operator)).status_code
        == 404
    )

    # Version 2 no longer grants income.
    r = w.run(cid, INCOME_CODE)
    assert r.status_code == 403 and r.json()["code"] == "contract_scope", r.text
    assert w.run(cid, COUNT_CODE).json()["status"] == "succeeded"
    assert [e for e in events_of(w, cid) if e[0] != "contract.approved"][-5:] == [
        ("contract.amended", 2),
        ("contract.signed", 2),
        ("contract.signed", 2),
        ("contract.superseded", 1),
        ("contract.activated", 2),
    ]


def test_a_refused_amendment_leaves_the_contract_in_force(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()
    post(w, f"/v1/contracts/{cid}/amend", "operator", {**APPLICATION, "datasets": NARROW})
    r = post(w, f"/v1/contracts/{cid}/refuse", "provider", {"reason": "用途变更未说明"})
    assert r.status_code == 200, r.text
    c = r.json()
    assert (c["version"], c["status"], c["amendment"]) == (1, "active", None)
    assert c["versions"][1]["status"] == "refused"
    assert c["versions"][1]["status_reason"] == "用途变更未说明"
    assert w.run(cid, INCOME_CODE).json()["status"] == "succeeded"
    r = post(w, f"/v1/contracts/{cid}/amend", "operator", APPLICATION)
    assert r.json()["amendment"] == {"version": 3, "status": "pending_approval"}


def test_an_amendment_waits_while_the_contract_is_suspended(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()
    post(w, f"/v1/contracts/{cid}/amend", "operator", {**APPLICATION, "datasets": NARROW})
    post(w, f"/v1/contracts/{cid}/approve", "provider")
    post(w, f"/v1/contracts/{cid}/sign", "bureau")
    post(w, f"/v1/contracts/{cid}/suspend", "regulator", {"reason": "抽查"})
    refused(
        sign_version(w, cid, 2), 409, "contract_state", "'suspended'", "resumed by the regulator"
    )
    refused(
        post(w, f"/v1/contracts/{cid}/amend", "operator", APPLICATION),
        409,
        "contract_state",
        "'suspended'",
    )
    post(w, f"/v1/contracts/{cid}/resume", "regulator", {"reason": "正常"})
    c = sign_version(w, cid, 2).json()
    assert (c["version"], c["status"]) == (2, "active")


def test_terminating_a_contract_closes_its_amendment(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()
    post(w, f"/v1/contracts/{cid}/amend", "operator", {**APPLICATION, "datasets": NARROW})
    c = post(w, f"/v1/contracts/{cid}/terminate", "bureau", {"reason": "违约"}).json()
    assert [(v["version"], v["status"]) for v in c["versions"]] == [
        (1, "terminated"),
        (2, "terminated"),
    ]
    assert c["amendment"] is None


def test_only_the_operator_amends_an_active_contract(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()
    for who in ("bureau", "regulator", "provider"):
        refused(post(w, f"/v1/contracts/{cid}/amend", who, APPLICATION), 403, "forbidden")
    assert post(w, f"/v1/contracts/{cid}/amend", "other_operator", APPLICATION).status_code == 404
    refused(
        post(w, f"/v1/contracts/{cid}/amend", "operator", {**APPLICATION, "draft": True}),
        400,
        "bad_request",
        "draft",
    )
    refused(
        post(w, f"/v1/contracts/{cid}/amend", "operator", {**APPLICATION, "purpose": ""}),
        400,
        "contract_invalid",
        "purpose",
    )
    pending = post(w, "/v1/contracts", "operator", APPLICATION).json()["id"]
    refused(
        post(w, f"/v1/contracts/{pending}/amend", "operator", APPLICATION),
        409,
        "contract_state",
        "'pending_approval'",
        "only an 'active' contract is amended",
    )
    with w.ctx.reading() as s:
        assert (
            len(s.scalars(select(ContractVersion).where(ContractVersion.contract_id == cid)).all())
            == 1
        )


def test_a_provider_of_a_new_dataset_sees_the_amendment(local_world: World, city: Any) -> None:
    w = local_world
    second = post(
        w, "/v1/principals", "bureau", {"name": "市市场监管局", "role": "provider"}
    ).json()
    ent = city["enterprises"]
    meta = {
        "name": "enterprises",
        "title": ent.title,
        "provider_id": second["id"],
        "level": ent.level,
        "columns": ent.columns,
    }
    assert (
        w.client.post(
            "/v1/datasets",
            headers=w.h(w.bureau),
            files={"file": ("e.parquet", parquet_bytes(ent.table))},
            data={"meta": json.dumps(meta, ensure_ascii=False)},
        ).status_code
        == 201
    )
    cid = w.active_contract()
    headers = {"Authorization": f"Bearer {second['token']}"}
    assert w.client.get(f"/v1/contracts/{cid}", headers=headers).status_code == 404
    wider = {**GRANTS, "enterprises": {"industry": ["group_by"]}}
    c = post(w, f"/v1/contracts/{cid}/amend", "operator", {**APPLICATION, "datasets": wider})
    assert c.status_code == 201, c.text
    assert w.client.get(f"/v1/contracts/{cid}", headers=headers).status_code == 200
    r = w.client.post(f"/v1/contracts/{cid}/approve", headers=headers)
    assert r.json()["amendment"] == {"version": 2, "status": "pending_approval"}
    r = post(w, f"/v1/contracts/{cid}/approve", "provider")
    assert r.json()["amendment"] == {"version": 2, "status": "approved"}


def test_a_running_job_keeps_the_terms_of_the_version_it_was_quoted_under(
    local_world: World,
) -> None:
    """Version 2 (public interest, free) activates while a version-1 job runs: the job still
    runs and is billed under version 1."""
    w = local_world
    cid = w.active_contract(spend_cap="5000.00")
    slow = "x = 0\nfor i in range(2500000):\n    x += 1\n" + INCOME_CODE
    r = w.client.post("/v1/jobs", headers=w.h(w.operator), json={"contract_id": cid, "code": slow})
    assert r.status_code == 201 and r.json()["contract_version"] == 1
    post(
        w,
        f"/v1/contracts/{cid}/amend",
        "operator",
        {**APPLICATION, "datasets": NARROW, "purpose_class": "public_interest"},
    )
    post(w, f"/v1/contracts/{cid}/approve", "provider")
    post(w, f"/v1/contracts/{cid}/sign", "bureau")
    assert sign_version(w, cid, 2).json()["version"] == 2
    job = r.json()
    deadline = dt.datetime.now() + dt.timedelta(seconds=60)
    while job["status"] in ("queued", "running") and dt.datetime.now() < deadline:
        job = w.client.get(f"/v1/jobs/{job['id']}", headers=w.h(w.operator)).json()
    assert job["status"] == "succeeded", "version 1 granted income: " + str(job["error"])
    assert job["contract_version"] == 1
    assert job["charge"]["amount"] == job["charge"]["list_amount"] != "0.00", "billed as commercial"
    after = w.run(cid, COUNT_CODE).json()
    assert after["contract_version"] == 2 and after["charge"]["amount"] == "0.00"


def test_the_regulator_sees_which_key_signed_a_submission(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()
    job = w.run(cid, COUNT_CODE, **sign_submission(w.operator_key, cid, COUNT_CODE)).json()
    keys = w.client.get(f"/v1/principals/{w.operator['id']}/keys", headers=w.h(w.regulator)).json()
    current = [k["id"] for k in keys["keys"] if k["current"]]
    seen = w.client.get(f"/v1/jobs/{job['id']}", headers=w.h(w.regulator)).json()
    assert seen["signing_key_id"] == current[0] and seen["signature"]
    assert (
        "signing_key_id"
        not in w.client.get(f"/v1/jobs/{job['id']}", headers=w.h(w.operator)).json()
    )
    unsigned = w.client.get(
        f"/v1/jobs/{w.run(cid, COUNT_CODE).json()['id']}", headers=w.h(w.regulator)
    ).json()
    assert unsigned["signing_key_id"] is None and unsigned["signature"] is None
