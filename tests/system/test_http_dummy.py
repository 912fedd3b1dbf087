"""`GET /v1/datasets/{name}/dummy` and `…/dummy/catalog` over real HTTP: who may download
dummy data, in which formats, and that nothing in it comes from the data."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from conftest import World, make_world


@pytest.fixture
def world(tmp_path: Path, city: dict[str, Any]) -> Iterator[World]:
    yield from make_world(tmp_path, city, "local")


@pytest.fixture
def open_world(tmp_path: Path, city: dict[str, Any]) -> Iterator[World]:
    yield from make_world(tmp_path, city, "local", dummy_needs_contract=False)


def envelope(r: Any, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["ok"] is False and body["status"] == status and body["code"] == code


def test_an_operator_needs_a_contract_covering_the_dataset(world: World) -> None:
    h = world.h(world.operator)
    refused = world.client.get("/v1/datasets/population/dummy", headers=h)
    envelope(refused, 403, "forbidden")
    assert "contract" in refused.json()["error"]
    envelope(world.client.get("/v1/datasets/population/dummy/catalog", headers=h), 403, "forbidden")
    world.active_contract()
    r = world.client.get("/v1/datasets/population/dummy?rows=50", headers=h)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/vnd.apache.parquet"
    assert "population.dummy.parquet" in r.headers["content-disposition"]
    table = pq.read_table(io.BytesIO(r.content))
    assert table.num_rows == 50
    columns = world.client.get("/v1/datasets/population", headers=h).json()["columns"]
    assert table.column_names == [c["name"] for c in columns]
    assert [str(f.type) for f in table.schema] == [c["type"] for c in columns]
    described = json.loads(table.schema.metadata[b"sandbox.dummy_catalog"])
    assert described == world.client.get("/v1/datasets/population/dummy/catalog", headers=h).json()


def test_another_operators_contract_does_not_count(world: World) -> None:
    world.active_contract()
    r = world.client.get("/v1/datasets/population/dummy", headers=world.h(world.other_operator))
    envelope(r, 403, "forbidden")


def test_the_setting_off_lets_any_operator_download(open_world: World) -> None:
    r = open_world.client.get(
        "/v1/datasets/population/dummy?format=csv&rows=20",
        headers=open_world.h(open_world.operator),
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    text = r.content.decode("utf-8")
    assert text.startswith("\ufeff") and len(text.strip().splitlines()) == 21


def test_other_roles_read_it_without_a_contract(world: World) -> None:
    for who in (world.bureau, world.provider, world.regulator):
        assert (
            world.client.get("/v1/datasets/population/dummy", headers=world.h(who)).status_code
            == 200
        )


def test_nothing_in_it_comes_from_the_data(world: World, city: dict[str, Any]) -> None:
    r = world.client.get(
        "/v1/datasets/population/dummy?format=csv&rows=2000", headers=world.h(world.bureau)
    )
    text = r.content.decode("utf-8")
    real = city["population"].table
    for column in ("district", "hukou_type", "name", "resident_id"):
        for value in set(real.column(column).to_pylist()[:200]):
            assert str(value) not in text, column
    catalog = world.client.get(
        "/v1/datasets/population/dummy/catalog", headers=world.h(world.bureau)
    ).json()
    assert catalog["disclosure"]["thresholds"]["L1"] >= 1
    assert "distinct" not in json.dumps(catalog)
    assert "no real value" in catalog["notice"]


def test_errors_use_the_one_envelope(world: World) -> None:
    h = world.h(world.bureau)
    envelope(world.client.get("/v1/datasets/nowhere/dummy", headers=h), 404, "not_found")
    envelope(
        world.client.get("/v1/datasets/population/dummy?rows=100001", headers=h),
        400,
        "invalid_request",
    )
    envelope(
        world.client.get("/v1/datasets/population/dummy?format=json", headers=h),
        400,
        "invalid_request",
    )
    envelope(world.client.get("/v1/datasets/population/dummy"), 401, "unauthenticated")
