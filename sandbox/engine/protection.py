"""Statistics the engine gathers for disclosure control, beside the aggregates themselves.

Disclosure control counts people (entities: catalog.entities), in every table a plan reads,
not just rows of the left-most one: a join whose right side is filtered to one person would
otherwise give that person's value to a cell of thousands of "contributors". For an exact (not
differentially private) release the engine reports, per released row and per table read
(`j`, the read's place in `plan.scans`):

- `__ids{j}`: the entities of read `j` in the group, as a 64-bit roaring bitmap, for the
  release history;
- `__c:<name>`: each cell's contributors, the fewest, over the reads, of the distinct entities
  whose rows count for it: rows with a value that comes from the data (`counted`: a row whose
  value does not change when its sensitive inputs change is padding, not a contribution);
- `__top{j}:<name>` and `__mass:<name>`, per magnitude aggregate: the two largest absolute
  contributions of single entities of read `j`, and the total, for the dominance rule. A
  person's contribution is the sum over their rows, however many times a join repeated them.

A left or anti join's row that matched nothing has no person of the right side's reads (its
entity there is null, or the column was dropped): the left row's person stands in for it
(`unmatched`), so the right side acts as a filter of the left, as the anti join is one. A
left join's cell whose value comes from right-side columns counts only the rows that matched
(engine.compute), so a right side filtered to one person still has one contributor there.

Per partition these are gathered per group from the row positions the hash aggregation lists;
merging unions bitmaps and sums each entity's contributions across partitions. Nothing here
leaves the trusted driver: the disclosure step drops every `__` column before release.
"""

from __future__ import annotations

import array
import hashlib
import struct
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyroaring import BitMap, BitMap64

# Per partition and group, the largest entity contributions kept for the merge: an entity's
# rows split over partitions are summed across them when each part is among these.
KEEP_TOP = 8
MASS = "__mass:"


def entity(scan: int) -> str:
    """The column of read `scan`'s entity numbers, carried through the plan's row steps."""
    return f"__e{scan}"


def is_entity(name: str) -> bool:
    return name.startswith("__e") and name[3:].isdigit()


def ids(scan: int) -> str:
    return f"__ids{scan}"


IDS = ids(0)


def reads_in(columns: Collection[str]) -> int:
    """How many tables' people a merged result carries (its `ids(j)` columns)."""
    j = 0
    while ids(j) in columns:
        j += 1
    return j


def top(scan: int, name: str) -> str:
    return f"__top{scan}:{name}"


def _tag(dataset: str) -> int:
    return int.from_bytes(hashlib.sha256(dataset.encode("utf-8")).digest()[:2], "big") & 0x7FFF


def with_row_entities(
    table: pa.Table,
    scan: int,
    dataset: str,
    partition_index: int,
    positions: np.ndarray | None = None,
) -> pa.Table:
    """Entity numbers for a partition stored without them: each row its own entity, numbered
    apart from every registered entity (the top bit set) and from other datasets' rows.
    `positions`: each row's place in its file, when only some rows were read."""
    base = (
        (np.uint64(1) << np.uint64(63))
        | (np.uint64(_tag(dataset)) << np.uint64(48))
        | (np.uint64(partition_index) << np.uint64(32))
    )
    if positions is None:
        numbers = np.arange(table.num_rows, dtype=np.uint64) | base
    elif len(positions) != table.num_rows:
        raise AssertionError("one position per row read")
    else:
        numbers = np.asarray(positions, dtype=np.uint64) | base
    return table.append_column(entity(scan), pa.array(numbers, pa.uint64()))


def bitmap(members: np.ndarray) -> BitMap64:
    # Through array.array: pyroaring reads its buffer directly, ~10x faster than from numpy.
    ordered = _ascending(np.asarray(members, dtype=np.uint64))
    return BitMap64(array.array("Q", np.ascontiguousarray(ordered).tobytes()))


_LOW = np.uint64(0xFFFFFFFF)
_HIGH = np.uint64(32)


def serialized(members: np.ndarray) -> bytes:
    """`bitmap(members).serialize()`, byte for byte. When every number has the same high 32
    bits, built as a 32-bit bitmap, three times faster: a 64-bit bitmap's portable form is its
    number of 32-bit buckets, then per bucket its high 32 bits and its 32-bit portable form."""
    members = np.asarray(members, dtype=np.uint64)
    if len(members) == 0:
        return bitmap(members).serialize()
    high = int(members.min() >> _HIGH)
    if high != int(members.max() >> _HIGH):
        return bitmap(members).serialize()
    low = array.array("I", _ascending((members & _LOW).astype(np.uint32)).tobytes())
    return struct.pack("<QI", 1, high) + BitMap(low).serialize()


def _ascending(values: np.ndarray) -> np.ndarray:
    """`values` sorted. Roaring adds ascending runs of values a container at a time and
    unordered ones one by one: after a join a group's people come in the joined table's
    order, and sorting them first builds their bitmap about eight times faster."""
    if len(values) < 2 or bool((values[1:] >= values[:-1]).all()):
        return values
    return np.sort(values, kind="quicksort")


def union(blobs: Iterable[bytes | None]) -> BitMap64:
    merged = BitMap64()
    for blob in blobs:
        if blob:
            merged |= BitMap64.deserialize(blob)
    return merged


_ONE_BUCKET = struct.Struct("<QI")
_EMPTY = BitMap64().serialize()


def merged(blobs: Iterable[bytes | None]) -> tuple[bytes, int]:
    """The union of serialized sets: its portable form (`union(blobs).serialize()`, byte for
    byte) and its size. When every set lies in one 32-bit bucket, the same for all (people
    of one instance, numbered densely, always do), the buckets' 32-bit bitmaps are merged in
    one many-way union, three times faster than adding 64-bit bitmaps one by one."""
    present = [blob for blob in blobs if blob and blob != _EMPTY]
    heads = {blob[: _ONE_BUCKET.size] for blob in present}
    if len(heads) == 1 and len(head := next(iter(heads))) == _ONE_BUCKET.size:
        count, high = _ONE_BUCKET.unpack(head)
        if count == 1:
            parts = [BitMap.deserialize(blob[_ONE_BUCKET.size :]) for blob in present]
            whole = BitMap.union(*parts)
            return _ONE_BUCKET.pack(1, high) + whole.serialize(), len(whole)
    whole64 = union(present)
    return whole64.serialize(), len(whole64)


def _largest(values: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k largest values, largest first (a partial sort: groups are large)."""
    if len(values) > k:
        part = np.argpartition(-values, k - 1)[:k]
        return part[np.argsort(-values[part], kind="stable")]
    return np.argsort(-values, kind="stable")


def _top_two(values: np.ndarray) -> list[float]:
    if len(values) <= 2:
        return sorted(values.tolist(), reverse=True)
    part = np.partition(values, len(values) - 2)[-2:]
    return sorted(part.tolist(), reverse=True)


# --- per partition ----------------------------------------------------------------------


def entities_of(
    table: pa.Table, scan: int, unmatched: Mapping[int, int] | None = None
) -> np.ndarray:
    """Read `scan`'s entity per row of `table`; where a left or anti join matched nothing,
    that of the row's left side (`unmatched`: right-side read → its join's left primary)."""
    source = (unmatched or {}).get(scan)
    if source is None:
        column = table.column(entity(scan))
    elif entity(scan) not in table.column_names:
        column = table.column(entity(source))
    else:
        column = pc.coalesce(table.column(entity(scan)), table.column(entity(source)))
    return np.asarray(column.to_numpy(), dtype=np.uint64)


def matched(table: pa.Table, scan: int) -> np.ndarray:
    """Per row of `table`, whether it holds a row of read `scan` (not a left join's unmatched
    row, whose entity there is null)."""
    if entity(scan) not in table.column_names:
        return np.zeros(table.num_rows, bool)
    valid = pc.is_valid(table.column(entity(scan)))
    return np.asarray(valid.to_numpy(zero_copy_only=False), dtype=bool)


class PartialStats:
    """The statistics of one partition's groups. `positions`: per group, the positions of
    its rows in `table`; `unique`: one read whose rows are each a different entity, where
    counting rows counts entities (no bitmap per cell is needed); `unmatched`: see
    `entities_of`."""

    def __init__(
        self,
        table: pa.Table,
        reads: int,
        positions: pa.ListArray,
        unique: bool,
        unmatched: Mapping[int, int] | None = None,
    ) -> None:
        offsets = positions.offsets.to_numpy()
        self.bounds = (offsets - offsets[0]).astype(np.int64)
        self.rows = positions.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
        self.entities = [entities_of(table, j, unmatched)[self.rows] for j in range(reads)]
        self.unique = unique
        self.columns: dict[str, pa.Array] = {}
        self._distinct_seen: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def _segments(self) -> Iterable[tuple[int, int]]:
        return zip(self.bounds[:-1].tolist(), self.bounds[1:].tolist())

    def groups(self) -> None:
        for j, members in enumerate(self.entities):
            self.columns[ids(j)] = pa.array(
                [serialized(members[a:b]) for a, b in self._segments()], pa.binary()
            )

    def _subsets(self, j: int, members: np.ndarray, mask: np.ndarray) -> pa.Array:
        """Per group, the bitmap of its `members` where `mask` (per row of the groups): a
        group where the mask holds everywhere (no nulls, no zeros: the usual case) is the
        group itself, whose bitmap `groups` already built."""
        whole = self.columns.get(ids(j))
        if whole is not None and mask.all():
            return whole
        return pa.array(
            [
                whole[g].as_py()
                if whole is not None and mask[a:b].all()
                else serialized(members[a:b][mask[a:b]])
                for g, (a, b) in enumerate(self._segments())
            ],
            pa.binary(),
        )

    def contributors(self, i: int, counted: np.ndarray) -> None:
        """Who counts for aggregate `i`: the rows where `counted` (per row of the table)."""
        mask = counted[self.rows]
        if self.unique:
            counts = (
                np.add.reduceat(mask.astype(np.int64), self.bounds[:-1])
                if len(mask)
                else np.zeros(len(self.bounds) - 1, np.int64)
            )
            counts[np.diff(self.bounds) == 0] = 0
            self.columns[f"__k{i}"] = pa.array(counts, pa.int64())
            return
        for j, members in enumerate(self.entities):
            self.columns[f"__who{j}:{i}"] = self._subsets(j, members, mask)

    def nonzero(self, i: int, counted: np.ndarray) -> None:
        """Per group and read, the people whose contribution to magnitude aggregate `i` is
        not zero: what a sum over the group says something about (see `nonzero_set`)."""
        mask = counted[self.rows]
        for j, members in enumerate(self.entities):
            self.columns[f"__z{j}:{i}"] = self._subsets(j, members, mask)

    def magnitudes(self, i: int, contributions: np.ndarray) -> None:
        """Per group and read, the largest contributions of single entities (with who made
        them), and the total: `contributions` per row of the table, 0 where a row does not
        count."""
        values = np.nan_to_num(np.abs(contributions[self.rows]), nan=0.0)
        masses = [float(values[a:b].sum()) for a, b in self._segments()]
        self.columns[f"{MASS}{i}"] = pa.array(masses, pa.float64())
        for j, members in enumerate(self.entities):
            tops, who = [], []
            for g, (a, b) in enumerate(self._segments()):
                seg, ent = values[a:b], members[a:b]
                if not self.unique and len(ent):
                    ent, which = self._distinct(j, g, ent)
                    seg = np.bincount(which, weights=seg)
                order = _largest(seg, KEEP_TOP)
                tops.append(seg[order].tolist())
                who.append(ent[order].tolist())
            self.columns[f"__tv{j}:{i}"] = pa.array(tops, pa.list_(pa.float64()))
            self.columns[f"__ti{j}:{i}"] = pa.array(who, pa.list_(pa.uint64()))

    def _distinct(self, j: int, g: int, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Group `g`'s distinct entities of read `j` and each row's among them: the same for
        every magnitude aggregate of the plan, so sorted once."""
        found = self._distinct_seen.get((j, g))
        if found is None:
            found = self._distinct_seen[(j, g)] = np.unique(members, return_inverse=True)
        return found

    def extremes(self, i: int, values: np.ndarray, counted: np.ndarray) -> None:
        """Per group, the two largest and two smallest counted values (for the squared
        deviations a variance is made of), and their count and sum."""
        v, keep = values[self.rows], counted[self.rows]
        out = []
        for a, b in self._segments():
            seg = v[a:b][keep[a:b]]
            seg = seg[np.isfinite(seg)]
            if len(seg) > 4:
                seg = np.concatenate([np.partition(seg, 1)[:2], np.partition(seg, -2)[-2:]])
            out.append(seg.tolist())
        self.columns[f"__ext:{i}"] = pa.array(out, pa.list_(pa.float64()))


# --- merged --------------------------------------------------------------------------------


class Unions:
    """Per merged group, the union of a partial column's sets (`merged`: portable form and
    size), each column merged once: a column equal to one merged before is answered from it.
    A group's people who count, or whose value is not zero, are usually all its people, so
    most such columns repeat the groups' own (q4: three equal columns of 7 M people)."""

    def __init__(self, parts: pa.Table, groups: Sequence[np.ndarray]) -> None:
        self._parts, self._groups = parts, groups
        self._done: list[tuple[pa.ChunkedArray, list[tuple[bytes, int]]]] = []

    def of(self, column: str) -> list[tuple[bytes, int]]:
        source = self._parts.column(column)
        for seen, result in self._done:
            if seen.equals(source):
                return result
        blobs = source.to_pylist()
        result = [merged(blobs[r] for r in rows) for rows in self._groups]
        self._done.append((source, result))
        return result

    def sets(self, column: str) -> pa.Array:
        return pa.array([blob for blob, _ in self.of(column)], pa.binary())


def merge_groups(unions: Unions, reads: int) -> dict[str, Any]:
    return {ids(j): unions.sets(ids(j)) for j in range(reads)}


def merge_contributors(
    parts: pa.Table,
    unions: Unions,
    i: int,
    reads: int,
    groups: Sequence[np.ndarray],
    fallback: pa.Array | pa.ChunkedArray,
) -> pa.Array | pa.ChunkedArray:
    """Aggregate `i`'s contributors per merged group: the fewest distinct counted entities
    over the reads (`fallback`: the merged value counts, when every valued row counts and
    rows are entities)."""
    if f"__k{i}" in parts.column_names:
        counts = parts.column(f"__k{i}").to_pylist()
        return pa.array([sum(counts[r] or 0 for r in rows) for rows in groups], pa.int64())
    if f"__who0:{i}" not in parts.column_names:
        return fallback
    fewest: list[int] | None = None
    for j in range(reads):
        sizes = [size for _, size in unions.of(f"__who{j}:{i}")]
        fewest = sizes if fewest is None else [min(a, b) for a, b in zip(fewest, sizes)]
    return pa.array(fewest or [], pa.int64())


def nonzero_set(read: int, name: str) -> str:
    """The column of a released row's people with a non-zero contribution to magnitude
    aggregate `name`, through read `read`. The audit keeps these apart from the groups'
    people: a difference of two sums isolates whoever is in one and not the other *and
    contributes*, so ten people of whom nine contribute 0 isolate the tenth."""
    return f"__nzset{read}:{name}"


def matched_set(read: int, name: str) -> str:
    """The column of a released row's people through read `read`, a left join's right side,
    who matched and count for aggregate `name`. The audit takes them with the row's people:
    a count of who matched, released twice with one person more on the right side, isolates
    that person, though the row's people (everyone on the left) are the same both times."""
    return f"__matched{read}:{name}"


def merge_matched(unions: Unions, i: int, name: str, reads: Iterable[int]) -> dict[str, Any]:
    return {matched_set(j, name): unions.sets(f"__who{j}:{i}") for j in reads}


def merge_nonzero(unions: Unions, i: int, name: str, reads: int) -> dict[str, Any]:
    return {nonzero_set(j, name): unions.sets(f"__z{j}:{i}") for j in range(reads)}


def merge_magnitudes(
    parts: pa.Table, i: int, name: str, reads: int, groups: Sequence[np.ndarray]
) -> dict[str, Any]:
    """Per read, each merged group's two largest single-entity contributions (an entity's
    parts in several partitions added up), and the total."""
    masses = parts.column(f"{MASS}{i}").to_pylist()
    out: dict[str, Any] = {
        MASS + name: pa.array(
            [float(sum(masses[r] or 0.0 for r in rows)) for rows in groups], pa.float64()
        )
    }
    for j in range(reads):
        values = parts.column(f"__tv{j}:{i}").to_pylist()
        who = parts.column(f"__ti{j}:{i}").to_pylist()
        tops = []
        for rows in groups:
            by_entity: dict[int, float] = {}
            for r in rows:
                for e, v in zip(who[r] or (), values[r] or ()):
                    by_entity[e] = by_entity.get(e, 0.0) + v
            tops.append(sorted(by_entity.values(), reverse=True)[:2])
        out[top(j, name)] = pa.array(tops, pa.list_(pa.float64()))
    return out


def merge_deviations(
    parts: pa.Table,
    i: int,
    name: str,
    groups: Sequence[np.ndarray],
    means: Sequence[float | None],
    squares: Sequence[float | None],
) -> dict[str, Any]:
    """For a variance: the two largest squared deviations from the group's mean (they come
    from its two largest or two smallest values) and their total, the sum of squares."""
    ext = parts.column(f"__ext:{i}").to_pylist()
    tops: list[list[float]] = []
    for rows, m in zip(groups, means):
        values = [v for r in rows for v in (ext[r] or ())]
        if m is None or not values:
            tops.append([])
            continue
        values = sorted(values)
        candidates = {*values[:2], *values[-2:]}
        tops.append(_top_two(np.array([(v - m) ** 2 for v in candidates])))
    return {
        top(0, name): pa.array(tops, pa.list_(pa.float64())),
        MASS + name: pa.array([float(s or 0.0) for s in squares], pa.float64()),
    }


def _window_start(n: int, q: float, size: int) -> int:
    centre = q * (n - 1)
    return int(min(max(round(centre - (size - 1) / 2), 0), n - size))


def windows(values: np.ndarray, qs: Sequence[float], size: int) -> list[np.ndarray]:
    """For each q, the `size` order statistics nearest position q·(n − 1) of `values` (all
    of them when there are fewer), in no particular order: what a quantile is released as the
    mean of, so that no one person's value is ever released as an order statistic.

    `values` (finite) is reordered in place: only the windows' first and last ranks are put in
    their sorted places, which puts every window's members between them (a selection, linear
    in the group, instead of sorting it)."""
    n = len(values)
    if n <= size:
        return [values for _ in qs]
    starts = [_window_start(n, q, size) for q in qs]
    values.partition(sorted({r for s in starts for r in (s, s + size - 1)}))
    return [values[s : s + size] for s in starts]
