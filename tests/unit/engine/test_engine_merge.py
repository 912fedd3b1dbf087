"""Merging partials: values that span partitions, nulls, empty partitions and whole-table
aggregates give what DuckDB gives over the same files; disclosure statistics are the rows
that contribute."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from factories import partitioned
from plans import NoChannel
from pyroaring import BitMap64

from sandbox.catalog.models import ColumnInfo, DatasetInfo
from sandbox.engine import compute, join, protection
from sandbox.engine.executor import LocalExecutor
from sandbox.engine.validate import check_plan
from sandbox.language import plan as p
from sandbox.language.api import (
    Table,
    col,
    count,
    count_distinct,
    quantile,
    std,
    sum_,
    var,
)

SCHEMA = pa.schema([("k", pa.string()), ("x", pa.int64()), ("f", pa.float64()), ("d", pa.date32())])
COLUMNS = tuple(ColumnInfo(f.name, str(f.type), "attribute") for f in SCHEMA)


def _dataset(root: Path, parts: list[list[dict[str, Any]]]) -> DatasetInfo:
    return partitioned(
        root, [pa.Table.from_pylist(rows, schema=SCHEMA) for rows in parts], COLUMNS, title="测试"
    )


def _rows(**columns: list[Any]) -> list[dict[str, Any]]:
    n = len(next(iter(columns.values())))
    return [{name: values[i] for name, values in columns.items()} for i in range(n)]


def _run(ds: DatasetInfo, t: Table, stats: bool = False) -> pa.Table:
    checked = dataclasses.replace(check_plan(t._node, {"t": ds}), disclosure_stats=stats)
    return LocalExecutor().aggregate(checked).table


def _duckdb(ds: DatasetInfo, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect()
    con.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet({list(ds.partitions)!r})")
    return con.execute(sql).fetchall()


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-12)
    return bool(a == b)


def _check(ds: DatasetInfo, result: pa.Table, names: list[str], sql: str) -> None:
    ours = sorted(
        zip(*(result.column(n).to_pylist() for n in names)),
        key=lambda r: (r[0] is None, r[0] or ""),
    )
    theirs = sorted(_duckdb(ds, sql), key=lambda r: (r[0] is None, r[0] or ""))
    assert len(ours) == len(theirs), (ours, theirs)
    for mine, expected in zip(ours, theirs):
        assert all(_same(a, b) for a, b in zip(mine, expected)), (mine, expected)


T = Table(p.Scan("t"), NoChannel())

# Group "a" spans all three partitions (the middle one empty), with values repeated across
# them and nulls in every one; "b" lives in one partition only; the null key is a group.
PARTS = [
    _rows(
        k=["a", "a", "b", None, "a"],
        x=[1, 2, None, 5, 2],
        f=[0.5, None, 2.0, 1.0, 0.5],
        d=[None, "2020-01-01", "2020-01-02", None, "2020-01-01"],
    ),
    [],
    _rows(
        k=["a", "a", None, "a"],
        x=[2, 3, None, None],
        f=[0.5, 7.25, None, -1.0],
        d=["2020-01-01", "2020-03-01", "2020-01-02", None],
    ),
]


def _parts() -> list[list[dict[str, Any]]]:
    import datetime as dt

    return [
        [{**r, "d": dt.date.fromisoformat(r["d"]) if r["d"] else None} for r in part]
        for part in PARTS
    ]


@pytest.fixture()
def spread(tmp_path: Path) -> DatasetInfo:
    return _dataset(tmp_path, _parts())


@pytest.fixture(params=["per group", "all pairs"])
def distinct_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Either way of finding a partition's distinct values per group."""
    monkeypatch.setattr(
        compute, "ROWS_PER_GROUP_HASH", 1 if request.param == "per group" else 10**9
    )


@pytest.mark.usefixtures("distinct_path")
def test_distinct_values_repeated_across_partitions_count_once_and_nulls_not_at_all(
    spread: DatasetInfo,
) -> None:
    t = T.group_by("k").agg(
        n=count(), x=count_distinct("x"), f=count_distinct("f"), d=count_distinct("d")
    )
    _check(
        spread,
        _run(spread, t),
        ["k", "n", "x", "f", "d"],
        "SELECT k, count(*), count(DISTINCT x), count(DISTINCT f), count(DISTINCT d) "
        "FROM t GROUP BY k",
    )


def test_whole_table_distinct_counts_and_quantiles_span_partitions(spread: DatasetInfo) -> None:
    t = T.agg(
        n=count(), x=count_distinct("x"), q=quantile("x", 0.5), r=quantile("f", 0.9), v=var("f")
    )
    result = _run(spread, t)
    (expected,) = _duckdb(
        spread,
        "SELECT count(*), count(DISTINCT x), quantile_cont(x, 0.5), "
        "quantile_cont(f, 0.9), var_samp(f) FROM t",
    )
    ours = tuple(result.column(n)[0].as_py() for n in ["n", "x", "q", "r", "v"])
    assert all(_same(a, b) for a, b in zip(ours, expected)), (ours, expected)


def test_quantiles_of_a_group_spanning_partitions(spread: DatasetInfo) -> None:
    t = T.group_by("k").agg(
        lo=quantile("x", 0.0),
        m=quantile("x", 0.5),
        p=quantile("f", 0.9),
        hi=quantile("f", 1.0),
        a=quantile("f", 0.25),
    )
    _check(
        spread,
        _run(spread, t),
        ["k", "lo", "m", "p", "hi", "a"],
        "SELECT k, quantile_cont(x, 0.0), quantile_cont(x, 0.5), quantile_cont(f, 0.9), "
        "quantile_cont(f, 1.0), quantile_cont(f, 0.25) FROM t GROUP BY k",
    )


@pytest.mark.usefixtures("distinct_path")
def test_a_group_with_only_nulls_has_no_quantile_and_no_distinct_values(tmp_path: Path) -> None:
    ds = _dataset(
        tmp_path,
        [
            _rows(k=["a", "b"], x=[None, 1], f=[None, 1.0], d=[None, None]),
            _rows(k=["a"], x=[None], f=[None], d=[None]),
        ],
    )
    t = T.group_by("k").agg(q=quantile("x", 0.5), d=count_distinct("x"), v=std("f"))
    result = _run(ds, t)
    assert result.select(["k", "q", "d", "v"]).to_pylist() == [
        {"k": "a", "q": None, "d": 0, "v": None},
        {"k": "b", "q": 1.0, "d": 1, "v": None},
    ]


def test_empty_partitions_alone_give_one_whole_table_row(tmp_path: Path) -> None:
    ds = _dataset(tmp_path, [[], []])
    t = T.agg(n=count(), d=count_distinct("x"), q=quantile("f", 0.5), v=var("x"))
    assert _run(ds, t, stats=True).select(["n", "d", "q", "v"]).to_pylist() == [
        {"n": 0, "d": 0, "q": None, "v": None}
    ]


@pytest.mark.usefixtures("distinct_path")
def test_nan_ranks_last_in_quantiles_and_signed_zeros_are_one_value(tmp_path: Path) -> None:
    nan = float("nan")
    ds = _dataset(
        tmp_path,
        [
            _rows(k=["a"] * 3, x=[1, 2, 3], f=[nan, 0.0, 1.0], d=[None] * 3),
            _rows(k=["a"] * 2, x=[4, 5], f=[-0.0, nan], d=[None] * 2),
        ],
    )
    t = T.group_by("k").agg(m=quantile("f", 0.5), hi=quantile("f", 1.0), d=count_distinct("f"))
    _check(
        ds,
        _run(ds, t),
        ["k", "m", "hi", "d"],
        "SELECT k, quantile_cont(f, 0.5), quantile_cont(f, 1.0), count(DISTINCT f) "
        "FROM t GROUP BY k",
    )


def _chan(parts: list[tuple[int, float, float]]) -> float | None:
    """The pairwise variance merge, one partition after the other, in Python floats."""
    n, mean, m2 = 0, 0.0, 0.0
    for nb, sb, vb in parts:
        if not nb:
            continue
        mean_b, m2_b = float(sb) / nb, float(vb) * nb
        total = n + nb
        delta = mean_b - mean
        mean += delta * nb / total
        m2 += m2_b + delta * delta * n * nb / total
        n = total
    return m2 / (n - 1) if n >= 2 else None


def test_variance_merges_partitions_in_order_with_the_same_float_operations(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    keys = ["a", "b", "c", "d"]
    parts = [
        _rows(
            k=[keys[g] for g in rng.integers(0, 4 - (i % 2), 50)],
            x=rng.integers(-(10**6), 10**6, 50).tolist(),
            f=rng.normal(1e6, 3.0, 50).tolist(),
            d=[None] * 50,
        )
        for i in range(5)
    ]
    ds = _dataset(tmp_path, parts)
    checked = check_plan(T.group_by("k").agg(v=var("f"), w=std("x"))._node, {"t": ds})
    partials = join.run(checked, join.LocalRunner()).partials
    both = pa.concat_tables([t.replace_schema_metadata(None) for t in partials])
    merged = compute.merge(checked, partials)
    assert merged.column("k").to_pylist() == keys
    for i, (name, root) in enumerate([("v", False), ("w", True)]):
        rows = list(
            zip(*(both.column(c).to_pylist() for c in ["k", f"__n{i}", f"__s{i}", f"__m{i}"]))
        )
        variances = [_chan([(n, s, m) for k, n, s, m in rows if k == g]) for g in keys]
        expected = [None if v is None else math.sqrt(v) if root else v for v in variances]
        assert merged.column(name).to_pylist() == expected  # bit for bit


def test_contributors_are_the_rows_of_each_group_across_partitions(spread: DatasetInfo) -> None:
    t = T.group_by("k").agg(n=count(), s=sum_("x"), d=count_distinct("d"))
    result = _run(spread, t, stats=True)
    # Stored without entity numbers: each row is its own person, numbered by its place.
    base = (1 << 63) | (protection._tag(spread.name) << 48)
    expected: dict[Any, list[int]] = {}
    for index, rows in enumerate(PARTS):
        for position, r in enumerate(rows):
            expected.setdefault(r["k"], []).append(base | (index << 32) | position)
    ids = {
        k: sorted(BitMap64.deserialize(blob))
        for k, blob in zip(
            result.column("k").to_pylist(), result.column(protection.IDS).to_pylist()
        )
    }
    assert ids == expected
    assert result.column("n").to_pylist() == [len(expected[k]) for k in ["a", "b", None]]


def test_a_filter_that_empties_a_group_in_some_partitions_keeps_the_others(
    spread: DatasetInfo,
) -> None:
    t = T.filter(col("x") >= 2).group_by("k").agg(d=count_distinct("x"), q=quantile("x", 0.5))
    _check(
        spread,
        _run(spread, t, stats=True),
        ["k", "d", "q"],
        "SELECT k, count(DISTINCT x), quantile_cont(x, 0.5) FROM t WHERE x >= 2 GROUP BY k",
    )


@pytest.mark.parametrize(
    "ids",
    [
        np.array([], np.uint64),
        np.array([7], np.uint64),
        np.arange(100_000, dtype=np.uint64) | (np.uint64(3) << np.uint64(32)),  # a whole partition
        np.sort(np.random.default_rng(1).choice(2**32, 50_000, replace=False)).astype(np.uint64),
        np.random.default_rng(2).choice(300_000, 20_000, replace=False).astype(np.uint64)
        | (np.uint64(9) << np.uint64(32)),  # unordered
        np.array([1, 2, (1 << 32) | 5, (7 << 32) | 1], np.uint64),  # several parts
    ],
)
def test_bitmaps_serialize_byte_for_byte_as_64_bit_bitmaps(ids: np.ndarray) -> None:
    assert protection.serialized(ids) == protection.bitmap(ids).serialize()
    assert sorted(BitMap64.deserialize(protection.serialized(ids))) == sorted(ids.tolist())


@pytest.mark.parametrize(
    "highs",
    [[7], [7, 7, 7], [7, 8], [0, 0, 0, 0, 0], []],
    ids=["one", "one-bucket", "two-buckets", "many", "none"],
)
def test_merged_sets_serialize_as_the_union_of_64_bit_bitmaps(highs: list[int]) -> None:
    rng = np.random.default_rng(len(highs))
    sets = [
        (np.uint64(h) << np.uint64(32)) | rng.choice(1 << 20, 3000, replace=False).astype(np.uint64)
        for h in highs
    ]
    empty = protection.serialized(np.zeros(0, np.uint64))
    blobs: list[bytes | None] = [protection.serialized(s) for s in sets] + [None, b"", empty]
    blob, size = protection.merged(blobs)
    assert blob == protection.union(blobs).serialize()
    assert size == len(set(np.concatenate([*sets, np.zeros(0, np.uint64)]).tolist()))


def test_groups_list_each_groups_partial_rows_in_partition_order() -> None:
    groups = compute.Groups.of(pa.array([[4, 0, 2], None, [3, 1]], pa.list_(pa.int64())), 5)
    assert [rows.tolist() for rows in groups] == [[0, 2, 4], [], [1, 3]]
    group, rank = groups.ranks()
    assert group.tolist() == [0, 0, 0, 2, 2] and rank.tolist() == [0, 1, 2, 0, 1]


def test_quantiles_of_the_same_values_share_one_list_per_partition(spread: DatasetInfo) -> None:
    t = T.group_by("k").agg(
        m=quantile("x", 0.5),
        p=quantile("x", 0.9),
        y=quantile(col("x") * 2, 0.5),
        lo=quantile("x", 0.0),
    )
    checked = check_plan(t._node, {"t": spread})
    partials = join.run(checked, join.LocalRunner()).partials
    assert [c for c in partials[0].column_names if c.startswith("__q")] == ["__q0", "__q2"]
    _check(
        spread,
        LocalExecutor().aggregate(checked).table,
        ["k", "m", "p", "y", "lo"],
        "SELECT k, quantile_cont(x, 0.5), quantile_cont(x, 0.9), quantile_cont(x * 2, 0.5), "
        "quantile_cont(x, 0.0) FROM t GROUP BY k",
    )


@pytest.mark.usefixtures("distinct_path")
def test_distinct_values_of_many_groups_of_every_type(tmp_path: Path) -> None:
    import datetime as dt

    rng = np.random.default_rng(3)
    parts = [
        _rows(
            k=[f"g{g}" for g in rng.integers(0, 40, 300)],
            x=[None if v < 0 else int(v) for v in rng.integers(-3, 12, 300)],
            f=[None if v < 0 else v / 2 for v in rng.integers(-3, 9, 300)],
            d=[dt.date(2020, 1, 1) + dt.timedelta(days=int(v)) for v in rng.integers(0, 20, 300)],
        )
        for _ in range(3)
    ]
    ds = _dataset(tmp_path, parts)
    t = T.group_by("k").agg(
        x=count_distinct("x"), f=count_distinct("f"), d=count_distinct("d"), s=count_distinct("k")
    )
    _check(
        ds,
        _run(ds, t, stats=True),
        ["k", "x", "f", "d", "s"],
        "SELECT k, count(DISTINCT x), count(DISTINCT f), count(DISTINCT d), "
        "count(DISTINCT k) FROM t GROUP BY k",
    )
    whole = T.agg(x=count_distinct("x"), k=count_distinct("k"))
    assert _run(ds, whole).select(["x", "k"]).to_pylist() == [
        dict(zip(["x", "k"], _duckdb(ds, "SELECT count(DISTINCT x), count(DISTINCT k) FROM t")[0]))
    ]


@pytest.mark.parametrize("size", [1, 3, 10])
def test_quantile_windows_are_the_order_statistics_of_the_sorted_values(size: int) -> None:
    # The windows are selected, not sorted: they must hold exactly the values a sort would put
    # at those ranks, ties and tiny groups included.
    rng = np.random.default_rng(size)
    qs = [0.0, 0.1, 0.5, 0.9, 0.99, 1.0]
    for n in [*range(0, 25), 101, 1000, 4099]:
        values = rng.integers(0, 40, n).astype(np.float64)  # many ties
        if n % 2:
            values = rng.lognormal(10, 1, n)
        ordered = np.sort(values)
        got = protection.windows(values.copy(), qs, size)
        for q, window in zip(qs, got):
            if n <= size:
                expected = ordered
            else:
                start = min(max(round(q * (n - 1) - (size - 1) / 2), 0), n - size)
                expected = ordered[start : start + size]
            assert np.array_equal(np.sort(window), expected), (n, q)


@pytest.mark.parametrize("window", [0, 5])
def test_quantiles_selected_on_threads_equal_those_selected_one_group_after_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, window: int
) -> None:
    """Many values select each group's order statistics on several threads: the same
    quantiles, windows and dominance statistics, bit for bit, in the groups' order."""
    rng = np.random.default_rng(7)
    parts = [
        pa.table(
            {
                "k": pa.array(rng.choice(["城关区", "湖滨区", "a", "b", "c"], 3000)),
                "x": pa.array(rng.integers(-50, 1000, 3000)),
                "f": pa.array(np.where(rng.random(3000) < 0.01, np.inf, rng.lognormal(8, 1, 3000))),
                "d": pa.array([None] * 3000, pa.date32()),
            },
            schema=SCHEMA,
        )
        for _ in range(4)
    ]
    ds = partitioned(tmp_path, parts, COLUMNS, title="测试")
    t = T.group_by("k").agg(m=quantile("x", 0.5), p=quantile("f", 0.9), q=quantile("x", 0.1))
    checked = dataclasses.replace(
        check_plan(t._node, {"t": ds}), disclosure_stats=True, quantile_window=window
    )
    results = []
    for least in (10**12, 0):
        monkeypatch.setattr(compute, "PARALLEL_MIN_VALUES", least)
        results.append(LocalExecutor().aggregate(checked).table)
    assert results[0].equals(results[1])
    by_key = {r["k"]: r for r in results[1].to_pylist()}
    assert len(by_key) == 5
    if window == 0:
        everything = pa.concat_tables(parts)
        for k, row in by_key.items():
            xs = np.sort(everything.filter(pa.compute.equal(everything["k"], k))["x"].to_numpy())
            assert row["m"] == compute.quantile_cont(xs, 0.5)


@pytest.mark.parametrize("window", [1, 5, 5000])
def test_integer_windows_equal_those_of_the_same_values_as_doubles(window: int) -> None:
    """Integers are selected as integers and only each window becomes doubles: the released
    means and the dominance statistics are those of the values as doubles, bit for bit, ties,
    negatives and integers past 2**53 (which doubles round) included."""
    rng = np.random.default_rng(window)
    partials, groups = 12, 3  # partial rows 0, 3, 6, 9 are group 0's, and so on
    lists = []
    for _ in range(partials):
        n = int(rng.integers(0, 4000))
        small = rng.integers(-50, 40, n)
        lists.append(np.where(rng.random(n) < 0.2, 2**53 + rng.integers(-4, 4, n), small))
    members = pa.array([list(range(g, partials, groups)) for g in range(groups)])
    shape = compute.Groups.of(members, partials)
    qs, names = [0.0, 0.5, 0.9, 1.0], ["a", "b", "c", "d"]
    doubles = [v.astype(np.float64) for v in lists]
    found = [
        compute._windowed(pa.chunked_array([pa.array(values)]), shape, qs, names, window)
        for values in (lists, doubles)
    ]
    for (means, stats), (means_d, stats_d) in zip(*found):
        assert means.type == pa.float64() and means.equals(means_d)
        assert stats.keys() == stats_d.keys()
        assert all(stats[k].equals(stats_d[k]) for k in stats)


def test_a_column_of_sets_equal_to_one_merged_before_is_not_merged_again() -> None:
    """Two partitions, two groups: the nonzero sets repeat the groups' own, the counted ones
    differ in one person; each union is the sets' union whichever way it was found."""
    s = protection.serialized
    parts = pa.table(
        {
            "__ids0": pa.array([s(np.array([1, 2])), s(np.array([5])), s(np.array([2, 3]))]),
            "__z0:0": pa.array([s(np.array([1, 2])), s(np.array([5])), s(np.array([2, 3]))]),
            "__who0:0": pa.array([s(np.array([1])), s(np.array([5])), s(np.array([2, 3]))]),
        }
    )
    groups = [np.array([0, 2]), np.array([1])]
    unions = protection.Unions(parts, groups)
    people = unions.of("__ids0")
    assert unions.of("__z0:0") is people  # the same answer, not merged again
    assert [(set(BitMap64.deserialize(b)), n) for b, n in people] == [({1, 2, 3}, 3), ({5}, 1)]
    counted = unions.of("__who0:0")
    assert counted is not people
    assert [(set(BitMap64.deserialize(b)), n) for b, n in counted] == [({1, 2, 3}, 3), ({5}, 1)]
    assert unions.sets("__ids0").to_pylist() == [b for b, _ in people]
