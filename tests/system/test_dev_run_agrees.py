"""A job run locally on dummy data (`sandbox dev run`) is accepted or refused as the service
accepts or refuses it on the real data, with the same error code."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import World, make_world

from contracts.errors import ContractError
from operators.errors import OperatorError
from sandbox.errors import SandboxError
from sandbox.pipeline.local import LocalContract, LocalData, run_locally

# The contract grants neither hukou_type nor any identifier.
CORPUS_GRANTS = {
    "population": {
        "district": ["group_by", "filter"],
        "gender": ["group_by", "filter"],
        "birth_date": ["group_by", "filter"],
        "income": ["aggregate", "filter"],
    },
}

# Identifiers granted: what then refuses an identifier is the disclosure rules, not the contract.
WIDE_GRANTS = {
    "population": {
        "resident_id": ["group_by", "join", "aggregate", "filter"],
        "district": ["group_by", "filter"],
        "income": ["aggregate"],
    },
}

GROUPED = """
t = table("population").group_by("district").agg(n=count(), avg=mean("income"))
emit("by_district", t.collect())
"""
FILTERED = """
rich = table("population").filter(col("income") >= params["min_income"])
emit("n", rich.group_by("gender").agg(n=count()).collect())
"""
COMPUTED_NAME = """
name = "popu" + "lation"
emit("n", table(name).agg(n=count()).collect())
"""
TYPO = """
emit("n", table("population").agg(n=count()).colect())
"""
NOT_GRANTED = """
emit("t", table("population").group_by("hukou_type").agg(n=count()).collect())
"""
IDENTIFIER = """
emit("t", table("population").group_by("resident_id").agg(n=count()).collect())
"""
ROWS = """
emit("t", table("population").select("district", "income").collect())
"""
OTHER_DATASET = """
emit("t", table("enterprises").agg(n=count()).collect())
"""
RAW_QUASI = """
emit("t", table("population").group_by("birth_date").agg(n=count()).collect())
"""
MISSING_PARAM = """
emit("n", table("population").filter(col("income") > params["floor"]).agg(n=count()).collect())
"""
SYNTAX = """
emit("n", table("population").agg(n=count()).collect(
"""
IMPORT = """
import os
emit("n", 1)
"""

JOINED_GRANTS = {
    "population": {"resident_id": ["join"], "district": ["group_by"]},
    "social_insurance": {"resident_id": ["join"], "contribution_base": ["aggregate"]},
}
JOINED = """
people = table("population")
insured = table("social_insurance")
t = people.join(insured, on="resident_id").group_by("district")
emit("t", t.agg(n=count(), base=mean("contribution_base")).collect())
"""
JOINED_NOT_GRANTED = """
people = table("population")
insured = table("social_insurance")
t = people.join(insured, on="resident_id").group_by("gender")
emit("t", t.agg(n=count()).collect())
"""
LEFT_JOINED = """
people = table("population")
insured = table("social_insurance").select("resident_id", "contribution_base")
t = people.join(insured, on="resident_id", how="left").group_by("district")
emit("t", t.agg(n=count(), base=mean("contribution_base")).collect())
"""
# A left join whose right side is itself a join (which could repeat its rows): refused.
LEFT_JOINED_ONTO_A_JOIN = """
people = table("population").select("resident_id", "district")
insured = table("social_insurance")
t = insured.join(people, on="resident_id").join(people.select("resident_id"), on="resident_id")
emit("t", people.join(t.select("resident_id"), on="resident_id", how="left").agg(n=count()).collect())
"""
ANTI_JOINED = """
people = table("population")
insured = table("social_insurance").select("resident_id")
t = people.join(insured, on="resident_id", how="anti").group_by("district")
emit("t", t.agg(n=count()).collect())
"""
JOINED_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "joined": (JOINED, {}),
    "joined_not_granted": (JOINED_NOT_GRANTED, {}),
    "left_joined": (LEFT_JOINED, {}),
    "left_joined_onto_a_join": (LEFT_JOINED_ONTO_A_JOIN, {}),
    "anti_joined": (ANTI_JOINED, {}),
}

# A budget for every case: what earlier jobs spent is the service's state, which a local run
# cannot know.
PRIVATE = {"population": {"epsilon": "5", "per_job_epsilon": "0.2"}}
TWO_COLLECTS = """
a = table("population").group_by("district").agg(n=count()).collect()
b = table("population").group_by("gender").agg(avg=mean("income")).collect()
emit("a", a)
emit("b", b)
"""
PRIVATE_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "private_grouped": (GROUPED, {}),
    "private_two_collects": (TWO_COLLECTS, {}),
    "private_rows": (ROWS, {}),
    "private_computed_name": (COMPUTED_NAME, {}),
}

GROUP_BY_IDENTIFIER = """
emit("t", table("population").group_by("resident_id").agg(n=count()).collect())
"""
SUM_OF_IDENTIFIER = """
emit("t", table("population").agg(s=sum("resident_id")).collect())
"""
PEOPLE = """
emit("t", table("population").group_by("district").agg(p=count_distinct("resident_id")).collect())
"""
SELF_JOIN = """
a = table("population")
b = table("population").select("resident_id", "income")
emit("t", a.join(b, on="resident_id").group_by("district").agg(n=count()).collect())
"""
LOOPED = """
for d in params["districts"]:
    emit(d, table("population").filter(col("district") == d).agg(n=count()).collect())
"""
WIDE_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "group_by_identifier": (GROUP_BY_IDENTIFIER, {}),
    "sum_of_identifier": (SUM_OF_IDENTIFIER, {}),
    "people": (PEOPLE, {}),
    "self_join": (SELF_JOIN, {}),
    "looped": (LOOPED, {"districts": ["a", "b", "c"]}),
}

CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "grouped": (GROUPED, {}),
    "filtered": (FILTERED, {"min_income": 3000}),
    "computed_name": (COMPUTED_NAME, {}),
    "typo": (TYPO, {}),
    "not_granted": (NOT_GRANTED, {}),
    "identifier": (IDENTIFIER, {}),
    "rows": (ROWS, {}),
    "other_dataset": (OTHER_DATASET, {}),
    "raw_quasi": (RAW_QUASI, {}),
    "missing_param": (MISSING_PARAM, {}),
    "bad_params": (GROUPED, {"big": 2**60}),
    "syntax": (SYNTAX, {}),
    "import": (IMPORT, {}),
}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, city: dict[str, Any]) -> Iterator[World]:
    # Refusals on purpose, one after another: the regulator's automatic suspension would end
    # the corpus part-way.
    for world in make_world(
        tmp_path_factory.mktemp("service"), city, "local", flag_suspend_score=0
    ):
        si = city["social_insurance"]
        assert world.ingest(si.name, si.table, si.level, si.columns, si.title).status_code == 201
        yield world


@pytest.fixture(scope="module")
def contract_id(service: World) -> str:
    return service.active_contract(CORPUS_GRANTS)


@pytest.fixture(scope="module")
def local(
    service: World, contract_id: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[LocalContract, LocalData]:
    """What the operator downloads: the contract document, the dummy table and its catalog."""
    h = service.h(service.operator)
    data = tmp_path_factory.mktemp("dummy")
    table = service.client.get("/v1/datasets/population/dummy?rows=2000", headers=h)
    assert table.status_code == 200, table.text
    (data / "population.parquet").write_bytes(table.content)
    described = service.client.get("/v1/datasets/population/dummy/catalog", headers=h)
    assert described.status_code == 200, described.text
    (data / "population.json").write_text(described.text, encoding="utf-8")
    contract = service.client.get(f"/v1/contracts/{contract_id}", headers=h).json()
    return LocalContract.from_json(contract), LocalData.load(Path(data))


@pytest.fixture(scope="module")
def wide_contract_id(service: World) -> str:
    return service.active_contract(WIDE_GRANTS)


@pytest.fixture(scope="module")
def wide_contract(service: World, wide_contract_id: str) -> LocalContract:
    h = service.h(service.operator)
    return LocalContract.from_json(
        service.client.get(f"/v1/contracts/{wide_contract_id}", headers=h).json()
    )


@pytest.fixture(scope="module")
def joined(
    service: World, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, LocalContract, LocalData]:
    cid = service.active_contract(JOINED_GRANTS)
    h = service.h(service.operator)
    data = tmp_path_factory.mktemp("joined")
    for name in JOINED_GRANTS:
        table = service.client.get(f"/v1/datasets/{name}/dummy", headers=h)
        assert table.status_code == 200, table.text
        (data / f"{name}.parquet").write_bytes(table.content)
    contract = service.client.get(f"/v1/contracts/{cid}", headers=h).json()
    return cid, LocalContract.from_json(contract), LocalData.load(data)


@pytest.fixture(scope="module")
def private(service: World, local: tuple[LocalContract, LocalData]) -> tuple[str, LocalContract]:
    cid = service.active_contract(CORPUS_GRANTS, privacy=PRIVATE)
    h = service.h(service.operator)
    contract = service.client.get(f"/v1/contracts/{cid}", headers=h).json()
    return cid, LocalContract.from_json(contract)


def on_service(service: World, contract_id: str, code: str, params: Any) -> tuple[str, str | None]:
    r = service.run(contract_id, code, params=params)
    body = r.json()
    if r.status_code != 201:
        return "rejected", body["code"]
    job = service.wait_for_job(body["id"])
    return job["status"], (job.get("error") or {}).get("code")


def locally(
    contract: LocalContract, data: LocalData, code: str, params: Any
) -> tuple[str, str | None]:
    try:
        result = run_locally(code, params, contract, data).result
    except (SandboxError, ContractError, OperatorError) as exc:
        return "rejected", exc.code
    return str(result.status), result.error.code if result.error else None


@pytest.mark.parametrize("case", sorted(CASES))
def test_local_run_agrees_with_the_service(
    case: str, service: World, contract_id: str, local: tuple[LocalContract, LocalData]
) -> None:
    code, params = CASES[case]
    there = on_service(service, contract_id, code, params)
    here = locally(*local, code, params)
    assert here == there, f"{case}: locally {here}, on the service {there}"


@pytest.mark.parametrize("case", sorted(WIDE_CASES))
def test_with_identifiers_granted_both_sides_agree(
    case: str,
    service: World,
    wide_contract_id: str,
    wide_contract: LocalContract,
    local: tuple[LocalContract, LocalData],
) -> None:
    code, params = WIDE_CASES[case]
    there = on_service(service, wide_contract_id, code, params)
    here = locally(wide_contract, local[1], code, params)
    assert here == there, f"{case}: locally {here}, on the service {there}"


@pytest.mark.parametrize("case", sorted(JOINED_CASES))
def test_joins_agree(
    case: str, service: World, joined: tuple[str, LocalContract, LocalData]
) -> None:
    cid, contract, data = joined
    code, params = JOINED_CASES[case]
    assert locally(contract, data, code, params) == on_service(service, cid, code, params)


def test_identifiers_of_the_same_name_join_in_dummy_data(
    joined: tuple[str, LocalContract, LocalData],
) -> None:
    _, contract, data = joined
    result = run_locally(JOINED, {}, contract, data).result
    assert str(result.status) == "succeeded", result.error
    assert sum(row[1] for row in result.outputs["t"]["rows"] if row[1] is not None) > 0


@pytest.mark.parametrize("case", sorted(PRIVATE_CASES))
def test_under_differential_privacy_both_sides_agree(
    case: str,
    service: World,
    private: tuple[str, LocalContract],
    local: tuple[LocalContract, LocalData],
) -> None:
    cid, contract = private
    code, params = PRIVATE_CASES[case]
    there = on_service(service, cid, code, params)
    here = locally(contract, local[1], code, params)
    assert here == there, f"{case}: locally {here}, on the service {there}"


def test_the_corpus_holds_both_kinds(
    service: World, contract_id: str, local: tuple[LocalContract, LocalData]
) -> None:
    outcomes = {case: locally(*local, *CASES[case]) for case in CASES}
    assert outcomes["grouped"] == ("succeeded", None)
    assert outcomes["filtered"] == ("succeeded", None)
    refused = {code for status, code in outcomes.values() if status != "succeeded"}
    assert {
        "code_rejected",
        "contract_scope",
        "plan_invalid",
        "invalid_request",
        "disclosure_refused",
        "job_code_error",
    } <= refused


def test_the_parquet_download_alone_is_enough(
    service: World, local: tuple[LocalContract, LocalData], tmp_path: Path
) -> None:
    h = service.h(service.operator)
    table = service.client.get("/v1/datasets/population/dummy?rows=2000", headers=h)
    (tmp_path / "population.parquet").write_bytes(table.content)
    alone = LocalData.load(tmp_path)
    downloaded = local[1].datasets["population"]
    assert alone.rules == local[1].rules
    assert alone.datasets["population"] == dataclasses.replace(
        downloaded, partitions=(str((tmp_path / "population.parquet").resolve()),)
    )
    assert locally(local[0], alone, *CASES["grouped"]) == ("succeeded", None)
