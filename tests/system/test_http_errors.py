"""The one JSON error envelope, walked over many bad requests; and the served API docs."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import SCHEDULE, World, make_world
from httpx import Response

from operators.submission import now_text

ENVELOPE = {"ok", "status", "code", "error"}
EXTRAS = {"job_id", "line"}
COUNT_CODE = 'emit("n", table("population").agg(n=count()).collect())'


def assert_error(r: Response, status: int, code: str | None = None) -> dict[str, Any]:
    """`r` is an error in the one envelope, with `status` both as HTTP status and in the body."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert ENVELOPE <= set(body), body
    assert set(body) - ENVELOPE <= EXTRAS, body
    assert body["ok"] is False
    assert body["status"] == status
    assert re.fullmatch(r"[a-z][a-z0-9_]*", body["code"]), body
    assert isinstance(body["error"], str) and body["error"].strip(), body
    if code is not None:
        assert body["code"] == code, body
    return body


@dataclass
class Setup:
    world: World
    active: str  # an active contract of `operator`
    capped: str  # an active contract whose spend cap is below any quote
    job: str  # a finished job of `operator`


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, city: dict[str, Any]) -> Iterator[Setup]:
    for w in make_world(tmp_path_factory.mktemp("errors"), city, "local"):
        active = w.active_contract()
        capped = w.active_contract(spend_cap="1.00")
        job = w.run(active, COUNT_CODE).json()["id"]
        yield Setup(w, active, capped, job)


Call = Callable[[Setup], Response]


def _get(path: str, who: str | None = "operator", **headers: str) -> Call:
    def call(s: Setup) -> Response:
        h = s.world.h(getattr(s.world, who)) if who else {}
        return s.world.client.get(path.format(s=s), headers={**h, **headers})

    return call


def _post(path: str, who: str = "operator", body: Any = None, raw: bytes | None = None) -> Call:
    def call(s: Setup) -> Response:
        h = s.world.h(getattr(s.world, who))
        if raw is not None:
            return s.world.client.post(
                path.format(s=s), content=raw, headers={**h, "Content-Type": "application/json"}
            )
        filled = (
            json.loads(
                json.dumps(body)
                .replace("{active}", s.active)
                .replace("{capped}", s.capped)
                .replace("{now}", now_text())
            )
            if body is not None
            else None
        )
        return s.world.client.post(path.format(s=s), json=filled, headers=h)

    return call


def _upload(meta: dict[str, Any], data: bytes, filename: str = "x.csv") -> Call:
    def call(s: Setup) -> Response:
        full = {"title": "表", "provider_id": s.world.provider["id"], "level": "L2", **meta}
        return s.world.client.post(
            "/v1/datasets",
            headers=s.world.h(s.world.bureau),
            files={"file": (filename, data)},
            data={"meta": json.dumps(full, ensure_ascii=False)},
        )

    return call


APPLICATION = {
    "datasets": {"population": {"district": ["group_by"]}},
    "purpose": "规划",
    "purpose_class": "commercial",
    "valid_from": "2026-01-01T00:00:00Z",
    "valid_to": "2030-01-01T00:00:00Z",
}

BAD_REQUESTS: list[tuple[str, Call, int, str]] = [
    # 401: no token, unknown token, wrong scheme
    ("no-token", _get("/v1/me", who=None), 401, "unauthenticated"),
    (
        "unknown-token",
        _get("/v1/me", who=None, Authorization="Bearer not-a-token"),
        401,
        "unauthenticated",
    ),
    (
        "basic-scheme",
        _get("/v1/datasets", who=None, Authorization="Basic dXNlcjpwdw=="),
        401,
        "unauthenticated",
    ),
    (
        "no-token-on-post",
        lambda s: s.world.client.post("/v1/jobs", json={}),
        401,
        "unauthenticated",
    ),
    # 403: wrong role
    (
        "operator-creates-principal",
        _post("/v1/principals", body={"name": "x", "role": "operator"}),
        403,
        "forbidden",
    ),
    ("provider-reads-ledger", _get("/v1/ledger/checkpoint", who="provider"), 403, "forbidden"),
    (
        "regulator-submits-job",
        _post("/v1/jobs", who="regulator", body={"contract_id": "{active}", "code": COUNT_CODE}),
        403,
        "forbidden",
    ),
    # 404: unknown ids and routes
    ("unknown-route", _get("/v1/nowhere"), 404, "not_found"),
    ("unknown-root-route", _get("/nowhere"), 404, "not_found"),
    ("unknown-job", _get("/v1/jobs/j-000000000000"), 404, "not_found"),
    ("unknown-output", _get("/v1/jobs/{s.job}/outputs/nothing"), 404, "not_found"),
    ("unknown-contract", _get("/v1/contracts/c-000000000000"), 404, "not_found"),
    ("unknown-dataset", _get("/v1/datasets/不存在"), 404, "not_found"),
    (
        "job-on-unknown-contract",
        _post("/v1/jobs", body={"contract_id": "c-nope", "code": "x=1"}),
        404,
        "not_found",
    ),
    (
        "approve-unknown-contract",
        _post("/v1/contracts/c-nope/approve", who="provider"),
        404,
        "not_found",
    ),
    # 405
    (
        "wrong-method",
        lambda s: s.world.client.delete("/v1/datasets", headers=s.world.h(s.world.bureau)),
        405,
        "method_not_allowed",
    ),
    # 400: malformed JSON, wrong types, missing and unknown fields, bad query parameters
    (
        "malformed-json-principal",
        _post("/v1/principals", who="bureau", raw=b'{"name": '),
        400,
        "invalid_request",
    ),
    ("malformed-json-job", _post("/v1/jobs", raw=b"{contract_id: 1}"), 400, "invalid_request"),
    ("malformed-json-contract", _post("/v1/contracts", raw=b"[1, 2"), 400, "invalid_request"),
    (
        "malformed-json-schedule",
        _post("/v1/price-schedules", who="bureau", raw=b"{"),
        400,
        "invalid_request",
    ),
    (
        "principal-name-wrong-type",
        _post("/v1/principals", who="bureau", body={"name": 5, "role": "operator"}),
        400,
        "invalid_request",
    ),
    (
        "principal-unknown-field",
        _post(
            "/v1/principals", who="bureau", body={"name": "x", "role": "operator", "admin": True}
        ),
        400,
        "invalid_request",
    ),
    (
        "principal-unknown-role",
        _post("/v1/principals", who="bureau", body={"name": "x", "role": "king"}),
        400,
        "bad_request",
    ),
    (
        "principal-bad-key",
        _post(
            "/v1/principals",
            who="bureau",
            body={"name": "x", "role": "operator", "public_key": "abc"},
        ),
        400,
        "invalid_public_key",
    ),
    (
        "job-code-wrong-type",
        _post("/v1/jobs", body={"contract_id": "{active}", "code": 123}),
        400,
        "invalid_request",
    ),
    ("job-missing-contract", _post("/v1/jobs", body={"code": "x = 1"}), 400, "invalid_request"),
    (
        "job-params-wrong-type",
        _post("/v1/jobs", body={"contract_id": "{active}", "code": "x = 1", "params": [1]}),
        400,
        "invalid_request",
    ),
    (
        "job-wait-not-bool",
        _post("/v1/jobs?wait=perhaps", body={"contract_id": "{active}", "code": "x = 1"}),
        400,
        "invalid_request",
    ),
    (
        "quote-unknown-field",
        _post("/v1/quotes", body={"contract_id": "{active}", "code": "x=1", "priority": "high"}),
        400,
        "invalid_request",
    ),
    ("contract-body-is-list", _post("/v1/contracts", body=[APPLICATION]), 400, "invalid_request"),
    (
        "contract-unknown-dataset",
        _post("/v1/contracts", body={**APPLICATION, "datasets": {"无此数据": {"x": ["filter"]}}}),
        400,
        "contract_invalid",
    ),
    (
        "contract-float-cap",
        _post("/v1/contracts", body={**APPLICATION, "spend_cap": 10.5}),
        400,
        "contract_invalid",
    ),
    (
        "sign-signature-wrong-type",
        _post("/v1/contracts/{s.active}/sign", body={"signature": 5}),
        400,
        "invalid_request",
    ),
    (
        "suspend-without-reason",
        _post("/v1/contracts/{s.active}/suspend", who="regulator", body={}),
        400,
        "invalid_request",
    ),
    ("bills-bad-period", _get("/v1/bills?period=2026-13"), 400, "bad_request"),
    ("bills-missing-period", _get("/v1/bills"), 400, "invalid_request"),
    ("output-bad-format", _get("/v1/jobs/{s.job}/outputs/n?format=xml"), 400, "invalid_request"),
    (
        "entries-start-not-int",
        _get("/v1/ledger/entries?start=first", who="regulator"),
        400,
        "invalid_request",
    ),
    (
        "entries-reversed",
        _get("/v1/ledger/entries?start=5&end=2", who="regulator"),
        400,
        "bad_request",
    ),
    (
        "inclusion-beyond-log",
        _get("/v1/ledger/proofs/inclusion?index=100000&size=100001", who="regulator"),
        400,
        "bad_request",
    ),
    (
        "consistency-from-zero",
        _get("/v1/ledger/proofs/consistency?first=0&second=1", who="regulator"),
        400,
        "bad_request",
    ),
    (
        "schedule-bad-item",
        _post(
            "/v1/price-schedules",
            who="bureau",
            body={**SCHEDULE, "items": [{"unit": "call", "price": "-1"}]},
        ),
        400,
        "invalid_price_schedule",
    ),
    (
        "dataset-meta-not-json",
        lambda s: s.world.client.post(
            "/v1/datasets",
            headers=s.world.h(s.world.bureau),
            files={"file": ("a.csv", b"a\n1\n")},
            data={"meta": "{name"},
        ),
        400,
        "ingest_failed",
    ),
    (
        "dataset-without-file",
        lambda s: s.world.client.post(
            "/v1/datasets", headers=s.world.h(s.world.bureau), data={"meta": "{}"}
        ),
        400,
        "invalid_request",
    ),
    (
        "dataset-bad-level",
        _upload({"name": "t1", "level": "L9", "columns": {"a": {"role": "attribute"}}}, b"a\n1\n"),
        400,
        "ingest_failed",
    ),
    (
        "code-rejected",
        _post("/v1/jobs", body={"contract_id": "{active}", "code": "import pandas"}),
        400,
        "code_rejected",
    ),
    (
        "bad-submission-signature",
        _post(
            "/v1/jobs",
            body={
                "contract_id": "{active}",
                "code": COUNT_CODE,
                "signature": "AAAA",
                "signed_at": "{now}",
            },
        ),
        400,
        "signature_invalid",
    ),
    # 409: duplicate name, wrong contract state
    (
        "duplicate-dataset",
        lambda s: s.world.ingest("population", _tiny_table(), "L2", {"a": {"role": "attribute"}}),
        409,
        "conflict",
    ),
    (
        "sign-active-contract",
        _post("/v1/contracts/{s.active}/sign", who="bureau"),
        409,
        "contract_state",
    ),
    (
        "approve-active-contract",
        _post("/v1/contracts/{s.active}/approve", who="provider"),
        409,
        "contract_state",
    ),
    # 403 from the contract
    (
        "scope-dataset",
        _post(
            "/v1/jobs",
            body={
                "contract_id": "{active}",
                "code": 'emit("n", table("enterprises").agg(n=count()).collect())',
            },
        ),
        403,
        "contract_scope",
    ),
    (
        "scope-column",
        _post(
            "/v1/quotes",
            body={
                "contract_id": "{active}",
                "code": 'emit("n", table("population").group_by("name").agg(n=count()).collect())',
            },
        ),
        403,
        "contract_scope",
    ),
    # 429: spend cap
    (
        "spend-cap",
        _post("/v1/jobs", body={"contract_id": "{capped}", "code": COUNT_CODE}),
        429,
        "quota_exceeded",
    ),
]


def _tiny_table() -> Any:
    import pyarrow as pa

    return pa.table({"a": [1, 2, 3]})


@pytest.mark.parametrize(
    "call,status,code", [b[1:] for b in BAD_REQUESTS], ids=[b[0] for b in BAD_REQUESTS]
)
def test_every_error_has_the_one_envelope(setup: Setup, call: Call, status: int, code: str) -> None:
    assert_error(call(setup), status, code)


def test_rejected_submission_envelope_names_job_and_line(setup: Setup) -> None:
    w = setup.world
    r = w.client.post(
        "/v1/jobs",
        headers=w.h(w.operator),
        json={"contract_id": setup.active, "code": "x = 1\nimport pandas\n"},
    )
    body = assert_error(r, 400, "code_rejected")
    assert body["line"] == 2
    assert "line 2" in body["error"]
    assert body["job_id"].startswith("j-")


def test_errors_carry_no_data_values(setup: Setup) -> None:
    """A scope error names columns and grants, never a value of the data."""
    w = setup.world
    code = 'emit("n", table("population").filter(col("name") == "王伟").agg(n=count()).collect())'
    body = assert_error(
        w.client.post(
            "/v1/jobs", headers=w.h(w.operator), json={"contract_id": setup.active, "code": code}
        ),
        403,
        "contract_scope",
    )
    assert "'name'" in body["error"]
    assert "王伟" not in body["error"]


def test_success_bodies_are_not_envelopes(setup: Setup) -> None:
    w = setup.world
    assert w.client.get("/v1/health").json() == {
        "ok": True,
        "jail": {"seccomp": True, "jobs_run": True},
    }
    me = w.client.get("/v1/me", headers=w.h(w.operator)).json()
    assert me == {"id": w.operator["id"], "name": w.operator["name"], "role": "operator"}


def test_openapi_and_docs_are_served(setup: Setup) -> None:
    client = setup.world.client
    spec = client.get("/openapi.json")
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    for path in (
        "/v1/jobs",
        "/v1/contracts/{contract_id}/sign",
        "/v1/price-schedules/current",
        "/v1/ledger/proofs/consistency",
        "/v1/datasets",
        "/v1/bills",
        "/v1/keys",
    ):
        assert path in paths, path
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "text/html" in docs.headers["content-type"]
    assert "openapi.json" in docs.text
