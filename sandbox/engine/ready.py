"""Paying a worker's one-time costs before a job does.

The first use of some Arrow paths in a process loads more code: grouping with lists goes
through Acero, and Ray's serializer of string arrays calls a compute kernel that imports
pandas (together about a second on an idle machine, several on a loaded one). A job that
met them would spend that second inside its time limit."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


def exercise(ray: Any = None) -> None:
    """Run, on a few rows, the Arrow paths partition tasks and drivers take; with `ray`
    (the module, in a worker), also put a table of strings through its serializer."""
    table = pa.table({"k": ["甲", "乙", "甲"], "v": pa.array([1, 2, 3], pa.int64())})
    table.group_by("k", use_threads=False).aggregate([("v", "sum"), ("v", "list")])
    pc.index_in(table["k"], value_set=pa.array(["甲"]))
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    pq.read_table(pa.BufferReader(sink.getvalue()))
    if ray is not None:
        ray.put(table)
