"""The release gate's memory over HTTP: an operator's releases are audited across all its
contracts, recorded for good, and known again to a gate started afresh (another process)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import World
from sqlalchemy import select

from sandbox.disclosure.gate import RECORDED, Gate, entries
from sandbox.engine import protection
from sandbox.errors import WorkerLost
from sandbox.pipeline import execution
from sandbox.records import releases
from sandbox.store.models import ReleasedSet


def _target(city: Any) -> dict[str, Any]:
    from collections import Counter

    t = city["population"].table.to_pylist()
    seen = Counter((r["district"], r["birth_date"], r["gender"]) for r in t)
    return next(
        r for r in t if r["income"] > 0 and seen[(r["district"], r["birth_date"], r["gender"])] == 1
    )


def _total(where: str) -> str:
    return (
        f'emit("r", table("population").filter({where})'
        '.agg(n=count(), s=sum("income")).collect())\n'
    )


def test_the_audit_spans_contracts_and_survives_a_new_gate(local_world: World, city: Any) -> None:
    w = local_world
    target = _target(city)
    district = f'(col("district") == "{target["district"]}")'
    minus_her = (
        f'{district} & ~((col("birth_date") == "{target["birth_date"].isoformat()}")'
        f' & (col("gender") == "{target["gender"]}"))'
    )
    first, second = w.active_contract(), w.active_contract()
    job = w.run(first, _total(district)).json()
    assert job["outputs"]["r"]["rows"][0][1] is not None
    # The same operator, another contract: the district minus one resident is refused.
    job = w.run(second, _total(minus_her)).json()
    assert job["outputs"]["r"]["rows"] == [[None, None]]
    assert {c["rule"] for c in job["disclosure"]["releases"][0]["suppressed"]} == {"difference"}
    # Another operator may ask it: its history is its own.
    other = w.active_contract(operator="other_operator")
    job = w.run(other, _total(minus_her), operator="other_operator").json()
    assert job["outputs"]["r"]["rows"][0][1] is not None

    # The sets were recorded: a gate built afresh from the database refuses it too.
    def load(operator_id: str) -> list[tuple[str, bytes]]:
        with w.ctx.reading() as s:
            return list(releases.load(s, operator_id))

    recorded = load(w.operator["id"])
    # The district's people, and its income earners: the refused release was not recorded.
    assert sorted(space for space, _ in recorded) == ["measure:population.income", "people"]
    everyone = sorted(protection.union(blob for space, blob in recorded if space == "people"))
    all_but_one = protection.bitmap(np.array(everyone[:-1], dtype=np.uint64)).serialize()
    (verdict,) = Gate(load).audit(w.operator["id"], [[("people", all_but_one)]], 10)
    assert verdict is not None and verdict.differs_by == 1


def test_sets_a_lost_result_released_are_recorded_by_the_next_job(
    local_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gate admitted the first job's sets, but its result never came back (its worker
    died after the release): the history lacks them, so the next job releasing the same
    people must hand them on, although the gate knows them."""
    w = local_world
    contract = w.active_contract()
    code = _total('col("district") == "城关区"')
    real = execution.execute

    def lost(ctx: Any, spec: Any) -> Any:
        real(ctx, spec)
        raise WorkerLost.of(RuntimeError("worker died"))

    monkeypatch.setattr(execution, "execute", lost)
    job = w.run(contract, code).json()
    assert job["status"] == "failed" and job["error"]["code"] == "worker_lost"

    def recorded() -> list[str]:
        with w.ctx.reading() as s:
            rows = s.execute(
                select(ReleasedSet.space).where(ReleasedSet.operator_id == w.operator["id"])
            )
            return sorted(space for (space,) in rows)

    assert recorded() == []
    monkeypatch.setattr(execution, "execute", real)
    job = w.run(contract, code).json()
    assert job["status"] == "succeeded" and job["outputs"]["r"]["rows"][0][0] is not None
    assert recorded() == ["measure:population.income", "people"]
    # Recorded now and known so: a third run hands nothing on, and releases the same.
    sets = [(space, blob) for space, blob in _load(w)]
    gate = releases.gate(w.ctx)
    assert gate.release(w.operator["id"], entries([sets]), 10, "probe") == [RECORDED]
    again = w.run(contract, code).json()
    assert again["outputs"] == job["outputs"]
    assert recorded() == ["measure:population.income", "people"]


def _load(w: World) -> list[tuple[str, bytes]]:
    with w.ctx.reading() as s:
        return list(releases.load(s, w.operator["id"]))
