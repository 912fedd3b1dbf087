"""The scan cache in Ray's object store: repeated scans are served from it, a changed file
never is, it stays within its byte bound, and a lost table is read again."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from factories import partitioned
from plans import NoChannel
from waiting import wait_until

from sandbox.catalog.models import ColumnInfo, DatasetInfo
from sandbox.engine import cache
from sandbox.engine.executor import LocalExecutor, RayExecutor
from sandbox.engine.validate import CheckedPlan, check_plan
from sandbox.language import plan as p
from sandbox.language.api import Table, col, count, sum_

pytestmark = pytest.mark.usefixtures("ray_local")

SCHEMA = pa.schema([("g", pa.string()), ("x", pa.int64())])
COLUMNS = tuple(ColumnInfo(f.name, str(f.type), "attribute") for f in SCHEMA)


def _dataset(root: Path, parts: list[list[tuple[str, int]]]) -> DatasetInfo:
    return partitioned(
        root,
        [
            pa.table({"g": [g for g, _ in rows], "x": [x for _, x in rows]}, schema=SCHEMA)
            for rows in parts
        ],
        COLUMNS,
        title="缓存",
    )


def _plan(ds: DatasetInfo) -> CheckedPlan:
    t = (
        Table(p.Scan("t"), NoChannel())
        .filter(col("x") > 0)
        .group_by("g")
        .agg(n=count(), s=sum_("x"))
    )
    return check_plan(t._node, {"t": ds})


def _stats() -> dict[str, int]:
    import ray

    handle = cache.actor()
    assert handle is not None
    return ray.get(handle.stats.remote())


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in ("hits", "misses")}


PARTS = [[("城关区", 1), ("湖滨区", 2), ("城关区", 3)], [("湖滨区", 4), ("新城区", -5)]]


# Where a plan's partitions are read: by Ray tasks (which ask the shared store every time,
# unless their workers keep scans too), or in place by the driving process (which keeps them).
WAYS = {
    "tasks": dict(in_place_max_rows=0, keep_bytes=0),
    "tasks-keeping": dict(in_place_max_rows=0, keep_bytes=cache.WORKER_TABLES_BYTES),
    "in-place": dict(in_place_max_rows=1_000),
}


@pytest.mark.parametrize("way", ["tasks", "in-place"])
def test_a_repeated_scan_is_served_from_the_cache(tmp_path: Path, way: str) -> None:
    ds = _dataset(tmp_path, PARTS)
    checked, executor = _plan(ds), RayExecutor(**WAYS[way])
    cache._local.clear()
    before = _stats()
    first = executor.aggregate(checked)
    middle = _stats()
    second = executor.aggregate(checked)
    after = _stats()
    assert _delta(before, middle) == {"hits": 0, "misses": 2}
    # In place, this process kept what it read: the store is not even asked again.
    assert _delta(middle, after) == {"hits": 0 if way == "in-place" else 2, "misses": 0}
    assert second.table.equals(first.table)
    assert first.table.equals(LocalExecutor().aggregate(checked).table)
    assert second.rows_by_dataset == {"t": 5}


def _rewrite(path: str, rows: dict[str, list[Any]]) -> None:
    """Other rows in a partition; its mtime moves forward for certain."""
    st = os.stat(path)
    pq.write_table(pa.table(rows, schema=SCHEMA), path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


@pytest.mark.parametrize("way", list(WAYS))
def test_a_changed_file_is_not_served_stale(tmp_path: Path, way: str) -> None:
    ds = _dataset(tmp_path, PARTS)
    checked, executor = _plan(ds), RayExecutor(**WAYS[way])
    for _ in range(3):  # every process that may read a partition has read it once
        executor.aggregate(checked)
    _rewrite(ds.partitions[0], {"g": ["城关区"], "x": [100]})
    before = _stats()
    result = executor.aggregate(checked)
    delta = _delta(before, _stats())
    assert delta["misses"] == 1  # the changed file is read again, for certain
    if way == "tasks":
        assert delta["hits"] == 1  # the unchanged one comes from the store
    assert result.table.to_pylist() == LocalExecutor().aggregate(checked).table.to_pylist()
    assert dict(
        zip(result.table.column("g").to_pylist(), result.table.column("s").to_pylist())
    ) == {"城关区": 100, "湖滨区": 4}


def test_a_bare_count_reads_no_columns_and_counts_every_time(tmp_path: Path) -> None:
    ds = _dataset(tmp_path, PARTS)
    checked = check_plan(Table(p.Scan("t"), NoChannel()).agg(n=count())._node, {"t": ds})
    assert checked.reads[0].columns == ()
    executor = RayExecutor(in_place_max_rows=0, keep_bytes=0)
    assert [executor.aggregate(checked).table.column("n").to_pylist() for _ in range(2)] == [
        [5],
        [5],
    ]


@pytest.fixture
def small_cache() -> Iterator[tuple[Any, str]]:
    """A private cache actor of 3,000 bytes, so a few tables overflow it."""
    import ray

    name = f"scan-cache-{uuid.uuid4().hex[:8]}"
    handle = cache.actor(name, max_bytes=3000)
    yield handle, name
    cache.forget(name)
    ray.kill(handle)


def _table(n: int, value: int) -> pa.Table:
    return pa.table({"x": pa.array([value] * n, pa.int64())})


def _key(i: int) -> cache.ScanKey:
    return cache.ScanKey(f"/data/part-{i}.parquet", 1, 100, ("x",), None)


def test_a_process_keeps_at_most_the_bytes_its_job_allows(small_cache: tuple[Any, str]) -> None:
    handle, name = small_cache
    cache._local.clear()
    two = 2 * _table(10, 0).get_total_buffer_size()
    for i in range(3):
        cache.fetch(handle, _key(i), lambda i=i: _table(10, i), name, keep_bytes=two)
    assert [cache._local.get(_key(i)) is not None for i in range(3)] == [False, True, True]
    # A job that allows none empties what the process kept for earlier ones.
    cache.fetch(handle, _key(9), lambda: _table(10, 9), name, keep_bytes=0)
    assert all(cache._local.get(_key(i)) is None for i in (1, 2, 9))


def test_least_recently_used_tables_are_evicted_by_bytes(small_cache: tuple[Any, str]) -> None:
    import ray

    handle, name = small_cache
    loads: list[int] = []

    def fetch(i: int) -> pa.Table:
        def load() -> pa.Table:
            loads.append(i)
            return _table(100, i)  # 800 bytes of values

        return cache.fetch(handle, _key(i), load, name)

    for i in (0, 1, 2):
        fetch(i)
    fetch(0)  # 0 is now the most recently used
    assert loads == [0, 1, 2]
    fetch(3)  # 4 × 800 > 3000: the least recently used (1) goes
    stats = ray.get(handle.stats.remote())
    assert stats["evictions"] == 1 and stats["entries"] == 3 and stats["bytes"] <= 3000
    assert fetch(0).column("x")[0].as_py() == 0 and fetch(2).column("x")[0].as_py() == 2
    assert loads == [0, 1, 2, 3]
    assert fetch(1).column("x")[0].as_py() == 1
    assert loads == [0, 1, 2, 3, 1]
    # A table larger than the whole bound is served but never kept.
    assert cache.fetch(handle, _key(9), lambda: _table(1000, 9), name).num_rows == 1000
    assert ray.get(handle.lookup.remote(_key(9))) == []


def _wait_until_lost(ref: Any) -> None:
    """Ray notices an owner's death asynchronously; wait until a get reports it."""
    import ray

    def lost() -> bool:
        try:
            ray.get(ref, timeout=5)
        except ray.exceptions.ObjectLostError:
            return True
        return False

    wait_until(lost, 30, interval=0.1, message="the object outlived its owner")


def test_a_lost_table_is_read_again(small_cache: tuple[Any, str]) -> None:
    """A cached table dies with the worker that put it: the entry is dropped, the file read."""
    import ray

    handle, name = small_cache

    class Putter:
        # Self-contained: Ray ships this class by value to a worker that cannot import tests.
        def put(self, handle: Any, key: Any) -> None:
            import pyarrow
            import ray

            ref = ray.put(pyarrow.table({"x": [7] * 100_000}))  # in shared memory
            ray.get(handle.register.remote(key, [ref], 80))

        def crash(self) -> None:
            import os

            os._exit(1)

    putter = ray.remote(num_cpus=0)(Putter).remote()
    ray.get(putter.put.remote(handle, _key(5)))
    assert ray.get(handle.stats.remote())["entries"] == 1
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(putter.crash.remote(), timeout=30)
    _wait_until_lost(ray.get(handle.lookup.remote(_key(5)))[0])
    table = cache.fetch(handle, _key(5), lambda: _table(10, 8), name)
    assert table.column("x")[0].as_py() == 8
    stats = ray.get(handle.stats.remote())
    assert stats["dropped"] == 1
    # The table read again is cached in its place.
    assert cache.fetch(handle, _key(5), lambda: _table(10, 9), name).column("x")[0].as_py() == 8
