"""The engine's settings reach the job that runs: what a job's spec carries to its Ray task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import make_world

from sandbox.engine import cache
from sandbox.pipeline import execution
from sandbox.pipeline.driver import JobSpec
from sandbox.settings import Settings

BY_DISTRICT = """
res = table("population").group_by("district").agg(n=count()).collect()
emit("by_district", res)
"""


@pytest.mark.parametrize("mb", [0, 64])
def test_the_tables_a_worker_keeps_are_the_instances_setting(
    tmp_path: Path, city: dict[str, Any], monkeypatch: pytest.MonkeyPatch, mb: int
) -> None:
    specs: list[JobSpec] = []
    execute = execution.execute

    def spy(ctx: Any, spec: JobSpec) -> Any:
        specs.append(spec)
        return execute(ctx, spec)

    monkeypatch.setattr(execution, "execute", spy)
    for w in make_world(tmp_path, city, "local", engine_worker_tables_mb=mb):
        job = w.run(w.active_contract(), BY_DISTRICT).json()
        assert job["status"] == "succeeded", job
    assert [s.worker_tables_bytes for s in specs] == [mb << 20]


def test_the_engines_own_default_is_the_settings() -> None:
    # A spec made without the setting (a test's, a tool's) keeps what the instance would.
    assert Settings().engine_worker_tables_mb << 20 == cache.WORKER_TABLES_BYTES
    assert JobSpec.__dataclass_fields__["worker_tables_bytes"].default == cache.WORKER_TABLES_BYTES
