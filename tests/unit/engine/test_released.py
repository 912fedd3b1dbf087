"""A Ray worker gives back what a task freed: Arrow's allocator would otherwise keep a large
task's peak for as long as the worker lives."""

from __future__ import annotations

import gc

import numpy as np
import psutil
import pyarrow as pa

from sandbox.engine.executor import released

MB = 1 << 20


def _large_task() -> None:
    # Many mid-sized buffers, as a partition's text keys and sorts make.
    keys = pa.array(np.arange(2_000_000) % 700_000).cast(pa.string())
    table = pa.table({"k": keys, "v": np.ones(len(keys))}).sort_by("k")
    table.group_by("k").aggregate([("v", "sum")])


def test_what_a_task_freed_goes_back_to_the_system() -> None:
    me = psutil.Process()
    _large_task()
    gc.collect()
    held = me.memory_info().rss
    released()
    after = me.memory_info().rss
    assert held - after > 50 * MB, (held // MB, after // MB)
    released()  # nothing left to give: harmless
    assert me.memory_info().rss - after < 10 * MB


def test_a_worker_keeps_freed_memory_for_its_next_task_only_up_to_what_it_may() -> None:
    me = psutil.Process()
    released()  # from here, what is held is what the next task frees
    _large_task()
    gc.collect()
    held = me.memory_info().rss
    released(retain=4096 * MB)  # within what it may keep: kept, for the next task to reuse
    kept = me.memory_info().rss
    assert held - kept < 10 * MB, (held // MB, kept // MB)
    released(retain=16 * MB)  # more than that: given back
    assert kept - me.memory_info().rss > 50 * MB
