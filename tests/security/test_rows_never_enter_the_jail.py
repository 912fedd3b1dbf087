"""DESIGN.md's promise, checked from outside: raw rows never enter the process that runs
operator code. The process maps no data library, runs under its system-call filter, and all it
ever receives from the driver is the job, its parameters and released aggregates."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from factories import ingested

from contracts.document import ContractDocument
from sandbox.catalog.synthetic import generate_city
from sandbox.engine.executor import LocalExecutor
from sandbox.jail.process import Limits, run_in_jail
from sandbox.pipeline.driver import JobSpec, _Handler

# Says when its own code runs (the process's start-up imports are over), then stays busy.
BUSY = "emit('started', 1)\nx = 0\nfor i in range(10**9):\n    x += 1\n"


def _jail_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            status = (entry / "status").read_text()
        except OSError:
            continue
        ppid = next(
            int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:")
        )
        if b"sandbox.jail.child" in cmdline and ppid == os.getpid():
            pids.append(int(entry.name))
    return pids


class _Started:
    def __init__(self) -> None:
        self.event = threading.Event()

    def collect(self, plan: Any) -> dict[str, Any]:
        raise AssertionError("not used")

    def emit(self, name: str, value: Any) -> None:
        assert name == "started"
        self.event.set()


def test_the_running_job_process_maps_no_data_library_and_is_filtered() -> None:
    limits = Limits(wall_seconds=4, cpu_seconds=10, fork_template=False)
    done: list[Any] = []
    handler = _Started()
    runner = threading.Thread(target=lambda: done.append(run_in_jail(BUSY, {}, handler, limits)))
    runner.start()
    try:
        assert handler.event.wait(timeout=10), "the job's code never ran"
        pids = _jail_pids()
        assert pids, "the job process was not found"
        (pid,) = pids
        maps = Path(f"/proc/{pid}/maps").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    finally:
        runner.join(timeout=10)
    for library in ("arrow", "numpy", "_multiarray", "parquet", "duckdb", "ray", "sqlite"):
        assert library not in maps, f"the job process has {library} mapped"
    seccomp = next(line for line in status.splitlines() if line.startswith("Seccomp:"))
    assert seccomp.split()[1] == "2", "the system-call filter is not installed"
    assert done and done[0].status == "failed" and done[0].error.code == "timeout"


class _Recording:
    """The driver's real handler, recording every answer sent into the job process."""

    def __init__(self, handler: _Handler) -> None:
        self.handler = handler
        self.sent: list[str] = []

    def collect(self, plan: Any) -> dict[str, Any]:
        body = self.handler.collect(plan)
        self.sent.append(json.dumps(body, ensure_ascii=False))
        return body

    def emit(self, name: str, value: Any) -> None:
        self.handler.emit(name, value)


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> Any:
    city = generate_city(3000, seed=11)["population"]
    info = ingested(
        tmp_path_factory.mktemp("datasets") / "store",
        "population",
        city.table,
        city.columns,
        level=city.level,
        partition_rows=1000,
        title=city.title,
        provider_id="p-1",
    )
    return info, city.table


def test_only_released_aggregates_cross_into_the_job_process(population: Any) -> None:
    info, table = population
    doc = ContractDocument(
        id="c-1",
        version=1,
        operator_id="o-1",
        purpose="人口结构分析",
        purpose_class="public_interest",
        datasets={
            "population": {
                "district": ["group_by", "filter"],
                "gender": ["group_by"],
                "income": ["aggregate"],
                "resident_id": ["aggregate"],
            }
        },
        valid_from="2026-01-01T00:00:00Z",
        valid_to="2030-01-01T00:00:00Z",
        quotas={},
        spend_cap=None,
        issued_at="2026-01-01T00:00:00Z",
    )
    spec = JobSpec(
        job_id="j-1",
        code=(
            'a = table("population").group_by("district", "gender")'
            '.agg(n=count(), s=sum("income"), m=mean("income"), people=count_distinct("resident_id"))'
            '.collect()\nemit("a", a)\n'
        ),
        params={},
        contract=doc,
        datasets={"population": info},
        thresholds={"L3": 10},
        limits=Limits(wall_seconds=20, fork_template=False),
        max_rows=10**6,
        max_outputs=2,
    )
    recording = _Recording(_Handler(spec, LocalExecutor()))
    outcome = run_in_jail(spec.code, {}, recording, spec.limits)
    assert outcome.status == "succeeded", outcome.error
    (sent,) = recording.sent
    body = json.loads(sent)
    groups = {(d, g) for d, g in zip(table["district"].to_pylist(), table["gender"].to_pylist())}
    assert len(body["rows"]) == len(groups)  # one row per group, not per person
    for column in ("resident_id", "name"):
        for value in table[column].to_pylist():
            assert value not in sent
    assert set(body) == {"kind", "columns", "rows", "suppressed"}
    assert all(not c["name"].startswith("__") for c in body["columns"])
