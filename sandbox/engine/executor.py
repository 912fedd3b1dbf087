"""Where plans run: the `Executor` protocol and its in-process and Ray implementations.

Both cut a plan into per-partition tasks the same way (`engine.join`: one task per partition
of the primary table, broadcast or hash-partitioned joins in between) and merge the partials
in the caller. The Ray executor runs the tasks on the cluster; the in-process one runs the
same functions in a loop, for fast unit tests and tiny datasets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa

from sandbox.engine import compute, join
from sandbox.engine.validate import CheckedPlan


@dataclass(frozen=True)
class AggregateResult:
    table: pa.Table       # keys, aggregate values and `__c:<name>` contributor counts
    rows_scanned: int
    # Rows read per dataset; a dataset joined with itself counts once.
    rows_by_dataset: dict[str, int] = field(default_factory=dict)


class Executor(Protocol):
    def aggregate(self, checked: CheckedPlan) -> AggregateResult: ...


def _result(checked: CheckedPlan, run: join.Run) -> AggregateResult:
    return AggregateResult(compute.merge(checked, run.partials),
                           sum(run.rows_by_dataset.values()), run.rows_by_dataset)


class LocalExecutor:
    def __init__(self, broadcast_max_rows: int = join.BROADCAST_MAX_ROWS) -> None:
        self._broadcast_max_rows = broadcast_max_rows

    def aggregate(self, checked: CheckedPlan) -> AggregateResult:
        return _result(checked, join.run(checked, join.LocalRunner(), self._broadcast_max_rows))


class _RayRunner:
    """Task bodies as Ray tasks; handles are object refs, which Ray resolves before a task
    that takes them starts."""

    def __init__(self, ray: Any) -> None:
        self._ray = ray
        self._remote: dict[Callable[..., Any], Any] = {}

    def put(self, value: Any) -> Any:
        return self._ray.put(value)

    def call(self, fn: Callable[..., Any], *args: Any, returns: int = 1) -> Any:
        remote = self._remote.get(fn)
        if remote is None:
            remote = self._remote[fn] = self._ray.remote(num_cpus=1)(fn)
        return remote.options(num_returns=returns).remote(*args)

    def get(self, handles: list[Any]) -> list[Any]:
        return self._ray.get(handles)


class RayExecutor:
    def __init__(self, broadcast_max_rows: int = join.BROADCAST_MAX_ROWS) -> None:
        import ray

        self._runner = _RayRunner(ray)
        self._broadcast_max_rows = broadcast_max_rows

    def aggregate(self, checked: CheckedPlan) -> AggregateResult:
        return _result(checked, join.run(checked, self._runner, self._broadcast_max_rows))
