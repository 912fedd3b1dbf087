"""Every route checks the caller's role; public routes need no token."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import SCHEDULE, World, auth, make_world
from factories import parquet_bytes
from httpx import Response

ROLES = ("bureau", "provider", "operator", "regulator")
COUNT_CODE = 'emit("n", table("population").agg(n=count()).collect())'


@dataclass
class Setup:
    world: World
    pending: str  # a contract waiting for approval
    active: str  # an active contract of `operator`

    def who(self, role: str) -> str:
        w = self.world
        return {
            "bureau": w.bureau,
            "provider": w.provider["token"],
            "operator": w.operator["token"],
            "regulator": w.regulator["token"],
        }[role]

    def ledger_size(self) -> int:
        r = self.world.client.get("/v1/ledger/checkpoint", headers=auth(self.world.bureau))
        return int(r.json()["size"])


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, city: dict[str, Any]) -> Iterator[Setup]:
    for w in make_world(tmp_path_factory.mktemp("roles"), city, "local"):
        active = w.active_contract()
        r = w.client.post(
            "/v1/contracts",
            headers=w.h(w.operator),
            json={
                "datasets": {"population": {"district": ["group_by"]}},
                "purpose": "人口结构研究",
                "purpose_class": "public_interest",
                "valid_from": "2026-01-01T00:00:00Z",
                "valid_to": "2030-01-01T00:00:00Z",
            },
        )
        assert r.status_code == 201, r.text
        yield Setup(w, r.json()["id"], active)


def _dataset_upload(s: Setup, token: str) -> Response:
    import pyarrow as pa

    meta = {
        "name": "角色测试",
        "title": "角色测试",
        "provider_id": s.world.provider["id"],
        "level": "L1",
        "columns": {"a": {"role": "attribute"}},
    }
    return s.world.client.post(
        "/v1/datasets",
        headers=auth(token),
        files={"file": ("t.parquet", parquet_bytes(pa.table({"a": [1]})))},
        data={"meta": json.dumps(meta, ensure_ascii=False)},
    )


# route name → (allowed roles, request made with a token)
ROUTES: dict[str, tuple[set[str], Any]] = {
    "create principal": (
        {"bureau"},
        lambda s, t: s.world.client.post(
            "/v1/principals", headers=auth(t), json={"name": "新单位", "role": "operator"}
        ),
    ),
    "ingest dataset": ({"bureau"}, _dataset_upload),
    "publish prices": (
        {"bureau"},
        lambda s, t: s.world.client.post("/v1/price-schedules", headers=auth(t), json=SCHEDULE),
    ),
    "apply for contract": (
        {"operator"},
        lambda s, t: s.world.client.post(
            "/v1/contracts",
            headers=auth(t),
            json={
                "datasets": {"population": {"district": ["group_by"]}},
                "purpose": "研究",
                "purpose_class": "commercial",
                "valid_from": "2026-01-01T00:00:00Z",
                "valid_to": "2030-01-01T00:00:00Z",
            },
        ),
    ),
    "approve contract": (
        {"provider"},
        lambda s, t: s.world.client.post(f"/v1/contracts/{s.pending}/approve", headers=auth(t)),
    ),
    "refuse contract": (
        {"provider"},
        lambda s, t: s.world.client.post(
            f"/v1/contracts/{s.pending}/refuse", headers=auth(t), json={"reason": "用途不明"}
        ),
    ),
    "sign contract": (
        {"bureau", "operator"},
        lambda s, t: s.world.client.post(f"/v1/contracts/{s.pending}/sign", headers=auth(t)),
    ),
    "suspend contract": (
        {"bureau", "regulator"},
        lambda s, t: s.world.client.post(
            f"/v1/contracts/{s.active}/suspend", headers=auth(t), json={"reason": "检查"}
        ),
    ),
    "quote": (
        {"operator"},
        lambda s, t: s.world.client.post(
            "/v1/quotes", headers=auth(t), json={"contract_id": s.active, "code": COUNT_CODE}
        ),
    ),
    "submit job": (
        {"operator"},
        lambda s, t: s.world.client.post(
            "/v1/jobs", headers=auth(t), json={"contract_id": s.active, "code": COUNT_CODE}
        ),
    ),
    "bills": (
        {"operator", "bureau", "regulator"},
        lambda s, t: s.world.client.get("/v1/bills?period=2026-01", headers=auth(t)),
    ),
    "ledger checkpoint": (
        {"regulator", "bureau"},
        lambda s, t: s.world.client.get("/v1/ledger/checkpoint", headers=auth(t)),
    ),
    "ledger entries": (
        {"regulator", "bureau"},
        lambda s, t: s.world.client.get("/v1/ledger/entries?start=0&end=2", headers=auth(t)),
    ),
    "inclusion proof": (
        {"regulator", "bureau"},
        lambda s, t: s.world.client.get(
            "/v1/ledger/proofs/inclusion?index=0&size=2", headers=auth(t)
        ),
    ),
    "consistency proof": (
        {"regulator", "bureau"},
        lambda s, t: s.world.client.get(
            "/v1/ledger/proofs/consistency?first=1&second=2", headers=auth(t)
        ),
    ),
}

FORBIDDEN = [
    (route, role) for route, (allowed, _) in ROUTES.items() for role in ROLES if role not in allowed
]


@pytest.mark.parametrize("route,role", FORBIDDEN, ids=[f"{r}-{o}" for r, o in FORBIDDEN])
def test_wrong_role_is_refused_and_changes_nothing(setup: Setup, route: str, role: str) -> None:
    before = setup.ledger_size()
    r = ROUTES[route][1](setup, setup.who(role))
    assert r.status_code == 403, r.text
    body = r.json()
    assert body == {"ok": False, "status": 403, "code": "forbidden", "error": body["error"]}
    assert role in body["error"]  # says who the caller is, and what role is needed
    assert setup.ledger_size() == before


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_no_token_is_refused(setup: Setup, route: str) -> None:
    r = ROUTES[route][1](setup, "")
    assert r.status_code == 401, r.text
    assert r.json()["code"] == "unauthenticated"


@pytest.mark.parametrize(
    "route",
    [
        "bills",
        "ledger checkpoint",
        "ledger entries",
        "inclusion proof",
        "consistency proof",
        "quote",
    ],
)
def test_allowed_roles_are_served(setup: Setup, route: str) -> None:
    allowed, call = ROUTES[route]
    for role in sorted(allowed):
        r = call(setup, setup.who(role))
        assert r.status_code == 200, (role, r.text)


def test_the_allowed_roles_change_state(local_world: World) -> None:
    """Each state-changing route succeeds for its role (the forbidden matrix' counterpart)."""
    w = local_world
    made = w.client.post(
        "/v1/principals", headers=w.h(w.bureau), json={"name": "市人社局", "role": "provider"}
    )
    assert made.status_code == 201 and made.json()["role"] == "provider"
    assert made.json()["token"]
    assert (
        w.client.post("/v1/price-schedules", headers=w.h(w.bureau), json=SCHEDULE).status_code
        == 201
    )
    cid = w.active_contract()  # operator applies, provider approves, bureau and operator sign
    assert w.run(cid, COUNT_CODE).json()["status"] == "succeeded"
    r = w.client.post(
        f"/v1/contracts/{cid}/suspend", headers=w.h(w.regulator), json={"reason": "例行检查"}
    )
    assert r.status_code == 200 and r.json()["status"] == "suspended"
    other = w.active_contract()
    r = w.client.post(
        f"/v1/contracts/{other}/suspend", headers=w.h(w.bureau), json={"reason": "例行检查"}
    )
    assert r.status_code == 200 and r.json()["status"] == "suspended"


def test_refusal_by_the_provider(local_world: World) -> None:
    w = local_world
    r = w.client.post(
        "/v1/contracts",
        headers=w.h(w.operator),
        json={
            "datasets": {"population": {"district": ["group_by"]}},
            "purpose": "研究",
            "purpose_class": "commercial",
            "valid_from": "2026-01-01T00:00:00Z",
            "valid_to": "2030-01-01T00:00:00Z",
        },
    )
    cid = r.json()["id"]
    r = w.client.post(
        f"/v1/contracts/{cid}/refuse", headers=w.h(w.provider), json={"reason": "用途与数据不符"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "refused"
    assert r.json()["status_reason"] == "用途与数据不符"
    r = w.client.post(f"/v1/contracts/{cid}/approve", headers=w.h(w.provider))
    assert r.status_code == 409 and r.json()["code"] == "contract_state"


@pytest.mark.parametrize(
    "path,key",
    [("/v1/health", "ok"), ("/v1/keys", "bureau"), ("/v1/price-schedules/current", "items")],
)
def test_public_routes_need_no_token(setup: Setup, path: str, key: str) -> None:
    r = setup.world.client.get(path)
    assert r.status_code == 200, r.text
    assert r.json()[key]


@pytest.mark.parametrize("path", ["/v1/me", "/v1/datasets", "/v1/datasets/population"])
def test_any_principal_reads_catalog_and_self(setup: Setup, path: str) -> None:
    for role in ROLES:
        r = setup.world.client.get(path, headers=auth(setup.who(role)))
        assert r.status_code == 200, (role, r.text)
    assert setup.world.client.get(path).status_code == 401


def test_me_reports_each_role(setup: Setup) -> None:
    for role in ROLES:
        me = setup.world.client.get("/v1/me", headers=auth(setup.who(role))).json()
        assert me["role"] == role
