"""A local Ray keeps idle workers for the CPUs Ray itself finds (a container's quota), not for
every processor of the host."""

from __future__ import annotations

from typing import Any

import pytest
import ray
import ray._private.utils as ray_utils

from sandbox import context


def _started(monkeypatch: pytest.MonkeyPatch, num_cpus: int | None) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(ray, "init", lambda **kwargs: seen.update(kwargs))
    context.start_local_ray(num_cpus)
    return seen


def test_idle_workers_follow_the_quota_ray_detects(monkeypatch: pytest.MonkeyPatch) -> None:
    # A container allowed 3 CPUs on a host of 64.
    monkeypatch.setattr(ray_utils, "get_num_cpus", lambda **_: 3.0)
    monkeypatch.setattr(context.os, "cpu_count", lambda: 64)
    assert context.ray_detected_cpus() == 3
    seen = _started(monkeypatch, None)
    assert seen["num_cpus"] is None  # Ray counts them itself, the same way
    assert seen["_system_config"]["num_workers_soft_limit"] == 3 * context.WORKERS_PER_CPU


def test_a_cpu_count_set_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray_utils, "get_num_cpus", lambda **_: 3.0)
    seen = _started(monkeypatch, 5)
    assert seen["num_cpus"] == 5
    assert seen["_system_config"]["num_workers_soft_limit"] == 5 * context.WORKERS_PER_CPU


def test_a_fraction_of_a_cpu_still_keeps_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray_utils, "get_num_cpus", lambda **_: 0.0)
    assert context.ray_detected_cpus() == 1
