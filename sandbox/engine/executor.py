"""Where plans run: the `Executor` protocol and its in-process and Ray implementations.

Both cut a plan into per-partition tasks the same way (`engine.join`: one task per partition
of the primary table, broadcast or hash-partitioned joins in between) and merge the partials
in the caller. The Ray executor runs the tasks on the cluster; the in-process one runs the
same functions in a loop, for fast unit tests and tiny datasets.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import pyarrow as pa

from sandbox.engine import compute, join
from sandbox.engine.cache import WORKER_TABLES_BYTES
from sandbox.engine.validate import CheckedPlan
from sandbox.errors import ServiceFault, WorkerLost


@dataclass(frozen=True)
class AggregateResult:
    table: pa.Table  # keys, aggregate values and `__c:<name>` contributor counts
    rows_scanned: int
    # Rows read per dataset; a dataset joined with itself counts once.
    rows_by_dataset: dict[str, int] = field(default_factory=dict)
    # With totals or shares: per row of `table`, the keys it is grouped by (the plan's own
    # groups first, then its margins). Empty: every row is one of the plan's groups.
    groupings: tuple[tuple[str, ...], ...] = ()


class Executor(Protocol):
    def aggregate(self, checked: CheckedPlan, deadline: float | None = None) -> AggregateResult: ...


class DeadlinePassed(Exception):
    """The job's time ran out while its plan was computed: the work was stopped."""


def _result(checked: CheckedPlan, run: join.Run) -> AggregateResult:
    table, groupings = compute.merge_all(checked, run.partials)
    return AggregateResult(table, sum(run.rows_by_dataset.values()), run.rows_by_dataset, groupings)


class LocalExecutor:
    def __init__(self, broadcast_max_rows: int = join.BROADCAST_MAX_ROWS) -> None:
        self._broadcast_max_rows = broadcast_max_rows

    def aggregate(self, checked: CheckedPlan, deadline: float | None = None) -> AggregateResult:
        return _result(checked, join.run(checked, join.LocalRunner(), self._broadcast_max_rows))


class _RayRunner:
    """Task bodies as Ray tasks; handles are object refs, which Ray resolves before a task
    that takes them starts. Partition reads go through the object store's scan cache and the
    reading worker's own tables (up to `keep_bytes` of them)."""

    caches_scans = True

    def __init__(self, ray: Any, keep_bytes: int = WORKER_TABLES_BYTES) -> None:
        self._ray = ray
        self.keep_bytes = keep_bytes
        self._remote: dict[Callable[..., Any], Any] = {}
        self._slots: tuple[float, int] | None = None  # (when read, CPUs)

    @property
    def slots(self) -> int:
        """Partition tasks that can run at once: the cluster's CPUs (a task takes one), read
        again every `SLOTS_SECONDS` (nodes come and go)."""
        now = time.monotonic()
        if self._slots is None or now - self._slots[0] > SLOTS_SECONDS:
            self._slots = (now, int(self._ray.cluster_resources().get("CPU", 0)))
        return self._slots[1]

    def put(self, value: Any) -> Any:
        return self._ray.put(value)

    def call(self, fn: Callable[..., Any], *args: Any, returns: int = 1) -> Any:
        remote = self._remote.get(fn)
        if remote is None:
            # A partition task only reads files and computes: run twice it gives the same
            # partial, so Ray may run it again on another worker when its worker dies.
            # Exceptions it raises are not retried (retry_exceptions stays off).
            task = _releasing(fn, retain=self.keep_bytes // 2)
            remote = self._remote[fn] = self._ray.remote(num_cpus=1, max_retries=RETRIES)(task)
        return remote.options(num_returns=returns).remote(*args)

    def get(self, handles: list[Any]) -> list[Any]:
        # Ray answers a list of handles with the list of their values.
        with surfaced(self._ray):
            return cast(list[Any], self._ray.get(handles))


SLOTS_SECONDS = 10.0

# Times Ray runs a partition task again after its worker died.
RETRIES = 3


def _releasing(fn: Callable[..., Any], retain: int = 0) -> Callable[..., Any]:
    """`fn`, returning what memory it freed to the system when it ends, beyond `retain`
    bytes kept for the worker's next task (`released`)."""

    @functools.wraps(fn)
    def task(*args: Any) -> Any:
        try:
            return fn(*args)
        finally:
            released(retain)

    return task


# The process's resident size and Arrow's bytes in use just after memory was last given back.
_floor: tuple[int, int] | None = None


def released(retain: int = 0) -> None:
    """Give the memory Arrow's allocator freed back to the system. It keeps freed pages for
    reuse otherwise, and a worker that ran one large task would hold that task's peak for as
    long as it lives (hundreds of MB), beyond the tables it keeps on purpose. Costs about a
    millisecond, and nothing when there is nothing to return.

    With `retain`, freed memory up to that many bytes stays for the next task: giving back
    every task's pages makes the next task fault them in again (q1's ten 1 M-row partition
    tasks on two workers: 134 ms releasing every time, 111 ms keeping up to 128 MiB). What is held is the growth of the resident size
    since the last time memory was given back, less the growth of what Arrow has in use."""
    global _floor
    pool = pa.default_memory_pool()
    rss = _resident()
    if retain and _floor is not None and rss is not None:
        grown = rss - _floor[0] - max(0, pool.bytes_allocated() - _floor[1])
        if grown <= retain:
            return
    pool.release_unused()
    after = _resident()
    _floor = None if after is None else (after, pool.bytes_allocated())


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _resident() -> int | None:
    """This process's resident size in bytes (Linux), None where it cannot be read."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


@contextmanager
def surfaced(ray: Any) -> Iterator[None]:
    """Ray's errors as the service's: a task's own `ServiceFault` unwrapped, and a worker,
    node or object lost beyond the retries as `WorkerLost`."""
    from ray import exceptions as rx

    try:
        yield
    except rx.RayTaskError as exc:
        if isinstance(exc.cause, ServiceFault):
            raise exc.cause from None
        raise
    except (rx.WorkerCrashedError, rx.NodeDiedError, rx.ObjectLostError, rx.RayActorError) as exc:
        raise WorkerLost.of(exc) from None


class _Deadlined:
    """A Ray runner whose waits end at the job's deadline: tasks still running then are
    cancelled, so a job's partition work never outlives the job (`monotonic` deadline)."""

    def __init__(self, runner: _RayRunner, deadline: float) -> None:
        self._runner, self._deadline = runner, deadline
        self.caches_scans, self.keep_bytes = runner.caches_scans, runner.keep_bytes
        self.slots = runner.slots

    def put(self, value: Any) -> Any:
        return self._runner.put(value)

    def call(self, fn: Callable[..., Any], *args: Any, returns: int = 1) -> Any:
        return self._runner.call(fn, *args, returns=returns)

    def get(self, handles: list[Any]) -> list[Any]:
        ray = self._runner._ray
        _, pending = ray.wait(
            handles, num_returns=len(handles), timeout=max(0.0, self._deadline - time.monotonic())
        )
        if pending:
            for handle in pending:
                ray.cancel(handle, force=True)
            raise DeadlinePassed("the job's time ran out while its plan was computed")
        with surfaced(ray):
            return cast(list[Any], ray.get(handles))


class _InPlaceRunner(join.LocalRunner):
    """Task bodies run right here, in the Ray worker that drives the job, still reading
    through the scan cache."""

    caches_scans = True

    def __init__(self, keep_bytes: int) -> None:
        self.keep_bytes = keep_bytes


# A plan reading at most this many rows in all runs inside the job's driver task: a Ray task
# per partition costs more (scheduling, moving the plan and the partial) than the scan.
IN_PLACE_MAX_ROWS = 250_000


class RayExecutor:
    def __init__(
        self,
        broadcast_max_rows: int = join.BROADCAST_MAX_ROWS,
        in_place_max_rows: int = IN_PLACE_MAX_ROWS,
        keep_bytes: int = WORKER_TABLES_BYTES,
    ) -> None:
        import ray

        self._runner = _RayRunner(ray, keep_bytes)
        self._in_place = _InPlaceRunner(keep_bytes)
        self._broadcast_max_rows = broadcast_max_rows
        self._in_place_max_rows = in_place_max_rows

    def aggregate(self, checked: CheckedPlan, deadline: float | None = None) -> AggregateResult:
        small = sum(read.dataset.row_count for read in checked.reads) <= self._in_place_max_rows
        runner: Any = self._in_place if small else self._runner
        if not small and deadline is not None:
            runner = _Deadlined(self._runner, deadline)
        return _result(checked, join.run(checked, runner, self._broadcast_max_rows))
