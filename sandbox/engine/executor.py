"""Where plans run: the `Executor` protocol and its in-process and Ray implementations.

The Ray executor runs one task per partition and merges the partials in the caller; the
in-process one runs the same functions in a loop, for fast unit tests and tiny datasets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa

from sandbox.engine import compute
from sandbox.engine.validate import CheckedPlan


@dataclass(frozen=True)
class AggregateResult:
    table: pa.Table       # keys, aggregate values and `__c:<name>` contributor counts
    rows_scanned: int


class Executor(Protocol):
    def aggregate(self, checked: CheckedPlan) -> AggregateResult: ...


class LocalExecutor:
    def aggregate(self, checked: CheckedPlan) -> AggregateResult:
        partials = [compute.partial(checked, path) for path in checked.dataset.partitions]
        return AggregateResult(compute.merge(checked, partials), compute.rows_read(partials))


class RayExecutor:
    def __init__(self) -> None:
        import ray

        self._ray = ray
        self._partial = ray.remote(compute.partial).options(num_cpus=1)

    def aggregate(self, checked: CheckedPlan) -> AggregateResult:
        plan_ref = self._ray.put(checked)
        refs = [self._partial.remote(plan_ref, path) for path in checked.dataset.partitions]
        partials = self._ray.get(refs)
        return AggregateResult(compute.merge(checked, partials), compute.rows_read(partials))
