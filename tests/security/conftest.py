"""Fixtures for the attack suite: instances with short job limits, and the checks every attack
outcome must pass (ended as rejected or failed, explained, nothing leaked)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import World, make_world

# Short limits so that every bomb ends within seconds. Escapes run with roomier limits, so
# that each attack reaches the step it attacks instead of a time limit, and so that the
# isolation test's bomb is still running while the other operator's job completes.
SHORT_WALL_SECONDS = 3.0
SHORT_CPU_SECONDS = 1
SHORT_MEMORY_MB = 256
ROOMY_WALL_SECONDS = 6.0
ROOMY_CPU_SECONDS = 4

# A lax contract: every use of every column, identifiers included. The contract check then
# stops nothing, so what stops an attack is the jail, the language or the disclosure rules,
# which must hold whatever a contract grants.
LAX_GRANTS = {
    "population": {
        c: ["group_by", "filter", "aggregate"]
        for c in ("resident_id", "name", "gender", "birth_date", "district", "hukou_type", "income")
    }
}

# What must never reach an operator: host paths and Python host tracebacks.
HOST_MARKERS = (
    "/work",
    "site-packages",
    '.py"',
    ".py'",
    "Traceback (most recent call last)",
    "/usr/lib",
    "/root",
    'File "',
)
RESIDENT_ID = re.compile(r"\d{17}[\dX]")
CJK_RUN = re.compile(r"[\u4e00-\u9fff]{2,}")


@dataclass
class Attacked:
    """An instance under attack, with what it must never reveal."""

    world: World
    data_dir: Path
    wall_seconds: float
    resident_ids: frozenset[str]
    names: frozenset[str]


@dataclass(frozen=True)
class Outcome:
    """How one submission ended, as the operator saw it."""

    status: str  # rejected | failed | succeeded | queued | running | http_<n>
    stage: str  # submission (refused before running) | run
    code: str
    message: str
    outputs: dict[str, Any]
    text: str  # every response body seen, for leak checks
    job_id: str = ""


def _world(
    tmp: Path, city: dict[str, Any], partition_rows: int = 6000, **limits: Any
) -> Iterator[World]:
    """tests/conftest.py's world with job limits of our own. Server errors come back as
    responses, as a real client would see them, instead of being raised into the test."""
    # Detection would suspend the shared contract part-way through a hundred attacks on the
    # jail; these suites are about containment (the disclosure suites check flags).
    yield from make_world(
        tmp,
        city,
        "ray",
        raise_server_exceptions=False,
        partition_rows=partition_rows,
        jail_fork_template=True,
        flag_suspend_score=0,
        **limits,
    )


def _attacked(world: World, tmp: Path, city: dict[str, Any], wall: float) -> Attacked:
    t = city["population"].table
    return Attacked(
        world, tmp, wall, frozenset(t["resident_id"].to_pylist()), frozenset(t["name"].to_pylist())
    )


@pytest.fixture(scope="session")
def short_world(
    tmp_path_factory: pytest.TempPathFactory, city: dict[str, Any], ray_local: None
) -> Iterator[Attacked]:
    """The bombs' instance. Its jobs run one at a time."""
    tmp = tmp_path_factory.mktemp("attacked")
    # Smaller partitions than the other instances: work per plan node is paid per partition.
    for world in _world(
        tmp,
        city,
        partition_rows=3000,
        job_wall_seconds=SHORT_WALL_SECONDS,
        job_cpu_seconds=SHORT_CPU_SECONDS,
        job_memory_mb=SHORT_MEMORY_MB,
    ):
        yield _attacked(world, tmp, city, SHORT_WALL_SECONDS)


@pytest.fixture(scope="session")
def roomy_world(
    tmp_path_factory: pytest.TempPathFactory, city: dict[str, Any], ray_local: None
) -> Iterator[Attacked]:
    """The escapes' instance, and the isolation test's."""
    tmp = tmp_path_factory.mktemp("escapes")
    for world in _world(
        tmp, city, job_wall_seconds=ROOMY_WALL_SECONDS, job_cpu_seconds=ROOMY_CPU_SECONDS
    ):
        yield _attacked(world, tmp, city, ROOMY_WALL_SECONDS)


@pytest.fixture(scope="session")
def contract(roomy_world: Attacked) -> str:
    """The demo's grants: no identifier columns."""
    return roomy_world.world.active_contract()


@pytest.fixture(scope="session")
def lax_contract(roomy_world: Attacked) -> str:
    return roomy_world.world.active_contract(LAX_GRANTS)


@pytest.fixture(scope="session")
def bomb_contract(short_world: Attacked) -> str:
    return short_world.world.active_contract(LAX_GRANTS)


def submit(
    target: Attacked, contract_id: str, code: str, params: dict[str, Any] | None = None
) -> tuple[Outcome, float]:
    """Submit and wait; returns the outcome and the wall time of the whole request."""
    w = target.world
    started = time.monotonic()
    r = w.run(contract_id, code, params=params or {})
    elapsed = time.monotonic() - started
    texts = [r.text]
    body = r.json()
    if r.status_code == 201:
        error = body.get("error") or {}
        return Outcome(
            body["status"],
            "run",
            str(error.get("code", "")),
            str(error.get("message", "")),
            body.get("outputs") or {},
            "\n".join(texts),
            body["id"],
        ), elapsed
    status = f"http_{r.status_code}"
    if body.get("job_id"):
        # A refusal at submission is recorded as a rejected job; read it back too.
        job = w.client.get(f"/v1/jobs/{body['job_id']}", headers=w.h(w.operator))
        texts.append(job.text)
        if job.status_code == 200:
            status = job.json()["status"]
    return Outcome(
        status,
        "submission",
        str(body.get("code", "")),
        str(body.get("error", "")),
        {},
        "\n".join(texts),
        str(body.get("job_id") or ""),
    ), elapsed


def leaks(target: Attacked, text: str) -> list[str]:
    """Host details or data values found in what the operator received."""
    found = [m for m in HOST_MARKERS if m in text]
    if str(target.data_dir) in text:
        found.append("the instance's data directory")
    found += [f"resident_id {m}" for m in RESIDENT_ID.findall(text) if m in target.resident_ids]
    for run in CJK_RUN.findall(text):
        found += [
            f"name {run[i : i + n]}"
            for n in (2, 3, 4)
            for i in range(len(run) - n + 1)
            if run[i : i + n] in target.names
        ]
    return found


def assert_flagged(w: World, principals: list[dict[str, Any]]) -> list[str]:
    """The patterns the attackers' jobs raised, which only the regulator sees: at least one
    (detection, the second line of exact mode, whatever the release gate did)."""
    raised = []
    for who in principals:
        r = w.client.get(f"/v1/flags?operator_id={who['id']}", headers=w.h(w.regulator))
        assert r.status_code == 200, r.text
        raised += [f["pattern"] for f in r.json()["flags"]]
        assert w.client.get("/v1/flags", headers=w.h(who)).status_code == 403
    assert raised, "the attack raised no flag for the regulator"
    return raised


def assert_contained(target: Attacked, outcome: Outcome) -> None:
    """The attack ended as rejected or failed, was explained, revealed nothing, and raised
    a flag for the regulator on its job."""
    assert outcome.status in ("rejected", "failed"), outcome
    assert outcome.message.strip(), outcome
    assert outcome.outputs == {}, outcome
    assert not leaks(target, outcome.text), (leaks(target, outcome.text), outcome)
    assert job_flags(target.world, outcome.job_id), f"no flag on the attack's job: {outcome}"


def job_flags(w: World, job_id: str) -> list[str]:
    """The patterns flagged on one job, as the regulator lists them."""
    assert job_id, "the attack left no job record"
    r = w.client.get(f"/v1/flags?job_id={job_id}", headers=w.h(w.regulator))
    assert r.status_code == 200, r.text
    assert all(f["job_id"] == job_id for f in r.json()["flags"])
    return [f["pattern"] for f in r.json()["flags"]]
