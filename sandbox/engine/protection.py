"""Statistics the engine gathers for disclosure control, beside the aggregates themselves.

For an exact (not differentially private) release the engine also reports, per released row:

- the set of contributing rows, as a 64-bit roaring bitmap of global row ids (partition index
  in the high 32 bits, position in the partition in the low 32), so the difference check can
  compare a new cell's contributors with every cell released before;
- per sum/mean, the two largest absolute contributions and the total absolute contribution,
  for the dominance rule.

Per partition these start as lists per group (gathered by the row positions that the
aggregates' hash aggregation lists per group) and are reduced to a bitmap and three numbers;
merging unions the bitmaps and keeps the two largest of the partitions' largest values.
Nothing here leaves the trusted driver: the disclosure step drops every `__` column before a
table is released.
"""

from __future__ import annotations

import array
import struct
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyroaring import BitMap, BitMap64

ROW_ID = "__row"
IDS = "__ids"           # per released row: serialized BitMap64 of contributing row ids
TOP = "__top:"          # per sum/mean output: its two largest |value|s, largest first
MASS = "__mass:"        # per sum/mean output: the sum of |value|s
DOMINANCE_AGGREGATES = frozenset({"sum", "mean"})


def with_row_ids(table: pa.Table, partition_index: int,
                 positions: np.ndarray | None = None) -> pa.Table:
    """Each row's global id. `positions`: each row's place in its partition file, when only
    some of the file's rows were read (rows 0, 1, 2… when None)."""
    base = np.uint64(partition_index) << np.uint64(32)
    if positions is None:
        ids = np.arange(base, base + np.uint64(table.num_rows), dtype=np.uint64)
    elif len(positions) != table.num_rows:
        raise AssertionError("one position per row read")
    else:
        ids = np.asarray(positions, dtype=np.uint64) | base
    return table.append_column(ROW_ID, pa.array(ids, pa.uint64()))


def bitmap(ids: np.ndarray) -> BitMap64:
    # Through array.array: pyroaring reads its buffer directly, ~10x faster than from numpy.
    return BitMap64(array.array("Q", np.ascontiguousarray(ids, dtype=np.uint64).tobytes()))


def _segments(lists: pa.ChunkedArray | pa.ListArray,
              drop_nulls: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Flattened values and offsets of a list column (one list per group); `drop_nulls`:
    without the null values (else they become NaN)."""
    arr = lists.combine_chunks() if isinstance(lists, pa.ChunkedArray) else lists
    offsets = arr.offsets.to_numpy() - arr.offsets[0].as_py()
    values = arr.flatten()
    if drop_nulls and values.null_count:
        valid = pc.is_valid(values)
        offsets = np.concatenate([[0], np.cumsum(valid.to_numpy(zero_copy_only=False))])[offsets]
        values = values.filter(valid)
    return values.to_numpy(zero_copy_only=False), offsets


def bitmaps(lists: pa.ChunkedArray | pa.ListArray, drop_nulls: bool = False) -> pa.Array:
    """One serialized bitmap per list of row ids (`drop_nulls`: of its non-null ids)."""
    return _serialized(*_segments(lists, drop_nulls))


def _serialized(ids: np.ndarray, offsets: np.ndarray) -> pa.Array:
    return pa.array([serialized(ids[a:b]) for a, b in zip(offsets[:-1], offsets[1:])],
                    pa.binary())


_LOW = np.uint64(0xFFFFFFFF)
_HIGH = np.uint64(32)


def serialized(ids: np.ndarray) -> bytes:
    """`bitmap(ids).serialize()`, byte for byte. When every id has the same high 32 bits
    (the rows of one partition), built as a 32-bit bitmap, three times faster: a 64-bit
    bitmap's portable form is its number of 32-bit buckets, then per bucket its high 32 bits
    and that bucket's 32-bit portable form."""
    ids = np.asarray(ids, dtype=np.uint64)
    if len(ids) == 0:
        return bitmap(ids).serialize()
    high = int(ids.min() >> _HIGH)
    if high != int(ids.max() >> _HIGH):
        return bitmap(ids).serialize()
    low = array.array("I", (ids & _LOW).astype(np.uint32).tobytes())
    return struct.pack("<QI", 1, high) + BitMap(low).serialize()


def reduce_partial(grouped: pa.Table, abs_columns: dict[str, str],
                   per_primary_row: bool = False) -> pa.Table:
    """Replace the per-group list columns of one partition by a bitmap and, per column in
    `abs_columns` (list column → output name), its top two contributions and their total
    mass. With `per_primary_row` (a joined table, where one primary row can appear many
    times) a contribution is the sum over a primary row's joined rows."""
    ids, id_offsets = _segments(grouped.column(ROW_ID))
    grouped = grouped.set_column(grouped.schema.get_field_index(ROW_ID), IDS,
                                 _serialized(ids, id_offsets))
    for column, name in abs_columns.items():
        values, offsets = _segments(grouped.column(column))
        values = np.nan_to_num(values.astype("float64"), nan=0.0)
        # Both lists come from one single-threaded hash aggregation: in the same row order.
        by_row = per_primary_row and np.array_equal(offsets, id_offsets)
        tops, masses = [], []
        for a, b in zip(offsets[:-1], offsets[1:]):
            seg = values[a:b]
            if by_row and b > a:
                _, which = np.unique(ids[a:b], return_inverse=True)
                seg = np.bincount(which, weights=seg)
            tops.append(_top_two(seg))
            masses.append(float(seg.sum()))
        i = grouped.schema.get_field_index(column)
        grouped = grouped.remove_column(i)
        grouped = grouped.append_column(TOP + name, pa.array(tops, pa.list_(pa.float64())))
        grouped = grouped.append_column(MASS + name, pa.array(masses, pa.float64()))
    return grouped


def _top_two(values: np.ndarray) -> list[float]:
    if len(values) <= 2:
        return sorted(values.tolist(), reverse=True)
    part = np.partition(values, len(values) - 2)[-2:]
    return sorted(part.tolist(), reverse=True)


def union(blobs: list[bytes | None]) -> BitMap64:
    """The union of the partitions' serialized bitmaps of one group."""
    merged = BitMap64()
    for blob in blobs:
        if blob:
            merged |= BitMap64.deserialize(blob)
    return merged


def merge_ids(blobs: list[bytes | None]) -> bytes:
    return union(blobs).serialize()


def merge_top(parts: list[tuple[Any, ...]]) -> tuple[list[float], float]:
    tops = sorted((v for top, _ in parts for v in (top or ())), reverse=True)[:2]
    return tops, float(sum(mass or 0.0 for _, mass in parts))


def abs_values(values: pa.Array | pa.ChunkedArray) -> Any:
    return pc.cast(pc.abs(values), pa.float64(), safe=False)
