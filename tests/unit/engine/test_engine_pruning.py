"""Filters on a read skip the row groups and partitions that cannot match, and nothing else:
results, row ids and metering are those of the full scan, and of DuckDB on the same files."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from factories import partitioned, slices
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plans import NoChannel

from sandbox.catalog import snapshot
from sandbox.catalog.entities import Registry
from sandbox.catalog.models import ColumnInfo, DatasetInfo
from sandbox.catalog.snapshot import ROW_GROUP_ROWS
from sandbox.engine import compute, protection, prune
from sandbox.engine.executor import AggregateResult, LocalExecutor
from sandbox.engine.validate import CheckedPlan, check_plan
from sandbox.errors import PlanError
from sandbox.language import plan as p
from sandbox.language.api import Expr, Table, col, count, max_, min_, sum_

SCHEMA = pa.schema([("x", pa.int64()), ("f", pa.float64()), ("g", pa.string()), ("d", pa.date32())])
COLUMNS = tuple(ColumnInfo(f.name, str(f.type), "attribute") for f in SCHEMA)
GROUP = 10  # rows per row group in these files
STRINGS = ["a", "b", "北京", "上海", "城关区"]


def _write(
    table: pa.Table, root: Path, cuts: list[int], group: int = GROUP, statistics: bool = True
) -> DatasetInfo:
    return partitioned(
        root,
        slices(table, cuts),
        COLUMNS,
        title="剪枝",
        row_group_size=group,
        write_statistics=statistics,
    )


def _sorted_table(n: int = 80) -> pa.Table:
    """x ascending, so row groups hold disjoint ranges; g and d also ordered; some nulls."""
    x = list(range(n))
    d = [dt.date(2000, 1, 1) + dt.timedelta(days=30 * i) for i in range(n)]
    g = [STRINGS[min(i * len(STRINGS) // n, len(STRINGS) - 1)] for i in range(n)]
    # One row group entirely null in x (rows 30..39), a few scattered nulls elsewhere.
    xs: list[int | None] = [None if 30 <= i < 40 or i % 17 == 0 else v for i, v in enumerate(x)]
    return pa.table(
        {
            "x": pa.array(xs, pa.int64()),
            "f": pa.array([i / 4 for i in x]),
            "g": pa.array(g, pa.string()),
            "d": pa.array(d, pa.date32()),
        },
        schema=SCHEMA,
    )


def _plan(ds: DatasetInfo, predicate: Expr | None, stats: bool = True) -> CheckedPlan:
    t = Table(p.Scan("t"), NoChannel())
    if predicate is not None:
        t = t.filter(predicate)
    t = t.group_by("g").agg(n=count(), s=sum_("x"), lo=min_("f"), hi=max_("d"))
    checked = check_plan(t._node, {"t": ds})
    return dataclasses.replace(checked, disclosure_stats=stats)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, list[int] | None]]]:
    """Every Parquet read the engine makes: (file name, row groups; None for all)."""
    seen: list[tuple[str, list[int] | None]] = []
    real = prune.read

    def spy(f: prune.Footer, columns: Any, groups: list[int] | None) -> pa.Table:
        seen.append((Path(f.path).name, None if groups is None else list(groups)))
        return real(f, columns, groups)

    monkeypatch.setattr(prune, "read", spy)
    yield seen


def _unpruned(checked: CheckedPlan, monkeypatch: pytest.MonkeyPatch) -> AggregateResult:
    with monkeypatch.context() as m:
        m.setattr(prune, "row_groups", lambda f, where: None)
        return LocalExecutor().aggregate(checked)


def _rows(result: AggregateResult) -> list[dict[str, Any]]:
    return result.table.to_pylist()


def test_selective_filter_skips_row_groups_and_whole_partitions(
    tmp_path: Path, reads: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = _write(_sorted_table(), tmp_path, cuts=[40])
    checked = _plan(ds, col("x") < 15)
    result = LocalExecutor().aggregate(checked)
    # Rows 0..14 lie in the first two row groups of the first file; the second file (rows
    # 40..79) is not read at all.
    assert reads == [("part-0.parquet", [0, 1])]
    reads.clear()
    full = _unpruned(checked, monkeypatch)
    assert sorted(reads) == [("part-0.parquet", None), ("part-1.parquet", None)]
    assert _rows(result) == _rows(full)
    # Metering counts the rows the quote covers: every row of every partition.
    assert result.rows_by_dataset == full.rows_by_dataset == {"t": 80}


@pytest.mark.parametrize(
    ("predicate", "expected"),
    [
        (lambda: col("x").between(42, 57), {"part-1.parquet": [0, 1]}),
        (lambda: col("x").isin([3, 71]), {"part-0.parquet": [0], "part-1.parquet": [3]}),
        (
            lambda: (col("x") <= 5) | (col("x") >= 75),
            {"part-0.parquet": [0], "part-1.parquet": [3]},
        ),
        (lambda: (col("x") > 20) & (col("x") < 25), {"part-0.parquet": [2]}),
        (lambda: col("x") > 2.5, {"part-0.parquet": [0, 1, 2], "part-1.parquet": None}),
        (lambda: col("x") == 35, {}),  # rows 30..39: every x is null
        (lambda: col("x") > 1000, {}),
        (lambda: col("d") >= "2004-12-01", {"part-1.parquet": [2, 3]}),  # rows 60..
        (lambda: col("d") < "2000-06-01", {"part-0.parquet": [0]}),
        (lambda: col("g") == "城关区", {"part-1.parquet": [2, 3]}),
        (lambda: col("g").isin(["a"]), {"part-0.parquet": [0, 1]}),
        (lambda: col("f") <= 1.0, {"part-0.parquet": [0]}),
        (lambda: 70 < col("x"), {"part-1.parquet": [3]}),
        # Not prunable: all read.
        (lambda: col("x") != 3, {"part-0.parquet": None, "part-1.parquet": None}),
        (lambda: ~(col("x") < 3), {"part-0.parquet": None, "part-1.parquet": None}),
        (lambda: col("x") * 2 > 1000, {"part-0.parquet": None, "part-1.parquet": None}),
    ],
)
def test_what_each_predicate_reads(
    tmp_path: Path,
    reads: list[Any],
    monkeypatch: pytest.MonkeyPatch,
    predicate: Callable[[], Expr],
    expected: dict[str, list[int] | None],
) -> None:
    ds = _write(_sorted_table(), tmp_path, cuts=[40])
    checked = _plan(ds, predicate())
    result = LocalExecutor().aggregate(checked)
    assert dict(reads) == expected
    assert _rows(result) == _rows(_unpruned(checked, monkeypatch))


def test_filters_after_a_derive_do_not_prune(
    tmp_path: Path, reads: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A derive may replace a column: a later filter no longer speaks of the file's column."""
    ds = _write(_sorted_table(), tmp_path, cuts=[40])
    t = (
        Table(p.Scan("t"), NoChannel())
        .filter(col("x") < 60)
        .derive(x=col("x") * -1)
        .filter(col("x") < -50)
        .agg(n=count(), s=sum_("x"))
    )
    checked = check_plan(t._node, {"t": ds})
    result = LocalExecutor().aggregate(checked)
    # Only the first filter prunes: x < 60 skips the all-null row group and rows 60..79.
    assert dict(reads) == {"part-0.parquet": [0, 1, 2], "part-1.parquet": [0, 1]}
    assert _rows(result) == _rows(_unpruned(checked, monkeypatch))
    assert result.table.column("n").to_pylist() == [8]  # 51..59 but 51 is null


def test_row_ids_are_true_positions(tmp_path: Path) -> None:
    ds = _write(_sorted_table(), tmp_path, cuts=[40])
    checked = _plan(ds, col("x").isin([12, 25, 63]))
    table = compute.read_partition(checked, 0, 1, (col("x").isin([12, 25, 63])._node,))
    full = protection.with_row_entities(
        pq.read_table(ds.partitions[1], columns=list(checked.reads[0].columns)), 0, ds.name, 1
    )
    # The pruned read holds only row group 2 of the second file, ids 20..29 of partition 1.
    base = (1 << 63) | (protection._tag(ds.name) << 48) | (1 << 32)
    assert table.column(protection.entity(0)).to_pylist() == [base | i for i in range(20, 30)]
    assert table.to_pylist() == full.slice(20, 10).to_pylist()


def test_released_contributors_are_the_same_with_and_without_pruning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = _write(_sorted_table(), tmp_path, cuts=[25, 50])
    checked = _plan(ds, (col("x") >= 27) & (col("d") <= "2005-01-01"))
    pruned, full = LocalExecutor().aggregate(checked), _unpruned(checked, monkeypatch)
    assert protection.IDS in pruned.table.column_names
    assert pruned.table.equals(full.table)


def test_missing_statistics_read_everything(
    tmp_path: Path, reads: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = _write(_sorted_table(), tmp_path, cuts=[40], statistics=False)
    checked = _plan(ds, col("x") < 15)
    result = LocalExecutor().aggregate(checked)
    assert sorted(reads) == [("part-0.parquet", None), ("part-1.parquet", None)]
    assert _rows(result) == _rows(_unpruned(checked, monkeypatch))


def test_a_bad_date_is_still_reported_when_everything_is_pruned(tmp_path: Path) -> None:
    ds = _write(_sorted_table(), tmp_path, cuts=[40])
    with pytest.raises(PlanError, match="date"):
        LocalExecutor().aggregate(_plan(ds, (col("x") > 1000) & (col("d") >= "2020-13-45")))


def test_ingest_writes_row_groups_a_scan_can_skip(tmp_path: Path) -> None:
    n = 2 * ROW_GROUP_ROWS + 5
    table = pa.table({"x": np.arange(n)})
    policy = snapshot.Policy({"x": ("attribute", None, None, None)})
    names = snapshot.write([table], policy, tmp_path / "ds", Registry(tmp_path / "r"), n).partitions
    meta = pq.ParquetFile(tmp_path / "ds" / names[0]).metadata
    assert meta.num_row_groups == 3
    assert [meta.row_group(i).num_rows for i in range(3)] == [ROW_GROUP_ROWS] * 2 + [5]


# --- random data, random prunable predicates: the same as no pruning and as DuckDB --------

# Narrow ranges, so literals often fall on a row group's bounds, where off-by-ones show.
row = st.fixed_dictionaries(
    {
        "x": st.none() | st.integers(-8, 8),
        "f": st.none() | st.integers(-20, 20).map(lambda i: i / 4),
        "g": st.none() | st.sampled_from(STRINGS),
        "d": st.none() | st.dates(dt.date(2000, 1, 1), dt.date(2000, 1, 20)),
    }
)
rows = st.integers(0, 50).flatmap(lambda n: st.lists(row, min_size=n, max_size=n))


def _literal(column: str) -> st.SearchStrategy[tuple[Any, str]]:
    """A literal for `column` and its SQL."""
    if column == "x":
        return st.integers(-10, 10).map(lambda v: (v, str(v))) | st.integers(-20, 20).map(
            lambda i: (i / 2, str(i / 2))
        )
    if column == "f":
        return st.integers(-24, 24).map(lambda i: (i / 4, str(i / 4))) | st.integers(-6, 6).map(
            lambda v: (v, str(v))
        )
    if column == "g":
        return st.sampled_from([*STRINGS, "c", "北"]).map(lambda v: (v, f"'{v}'"))
    return st.dates(dt.date(1999, 12, 28), dt.date(2000, 1, 23)).map(
        lambda d: (d.isoformat(), f"DATE '{d.isoformat()}'")
    )


OPS = {
    "eq": ("==", "="),
    "lt": ("<", "<"),
    "le": ("<=", "<="),
    "gt": (">", ">"),
    "ge": (">=", ">="),
}


@st.composite
def _atom(draw: st.DrawFn) -> tuple[Expr, str]:
    column = draw(st.sampled_from(["x", "f", "g", "d"]))
    form = draw(st.sampled_from(["cmp", "between", "isin"]))
    if form == "cmp":
        op = draw(st.sampled_from(sorted(OPS)))
        value, sql = draw(_literal(column))
        expr = {
            "eq": col(column) == value,
            "lt": col(column) < value,
            "le": col(column) <= value,
            "gt": col(column) > value,
            "ge": col(column) >= value,
        }[op]
        return expr, f"{column} {OPS[op][1]} {sql}"
    if form == "between":
        (lo, lo_sql), (hi, hi_sql) = draw(_literal(column)), draw(_literal(column))
        return col(column).between(lo, hi), f"{column} BETWEEN {lo_sql} AND {hi_sql}"
    values = draw(st.lists(_literal(column), min_size=1, max_size=3))
    if column == "x":
        values = [(int(v), str(int(v))) for v, _ in values]  # isin casts to the column type
    return (
        col(column).isin([v for v, _ in values]),
        f"{column} IN ({', '.join(s for _, s in values)})",
    )


@st.composite
def _predicate(draw: st.DrawFn) -> tuple[Expr, str]:
    a = draw(_atom())
    how = draw(st.sampled_from(["one", "and", "or"]))
    if how == "one":
        return a
    b = draw(_atom())
    if how == "and":
        return a[0] & b[0], f"({a[1]}) AND ({b[1]})"
    return a[0] | b[0], f"({a[1]}) OR ({b[1]})"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, abs_tol=1e-9)
    return bool(a == b)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=rows,
    predicates=st.lists(_predicate(), min_size=1, max_size=2),
    cuts=st.lists(st.integers(0, 50), max_size=2),
    group=st.integers(1, 8),
    order=st.sampled_from([None, "x", "f", "g", "d"]),
)
def test_random_predicates_match_no_pruning_and_duckdb(
    data: list[dict[str, Any]],
    predicates: list[tuple[Expr, str]],
    cuts: list[int],
    group: int,
    order: str | None,
) -> None:
    table = pa.Table.from_pylist(data, schema=SCHEMA)
    if order is not None and table.num_rows:
        # Ordered files are what pruning is for: their row groups hold narrow ranges.
        table = table.sort_by([(order, "ascending")])
    t = Table(p.Scan("t"), NoChannel())
    for expr, _ in predicates:
        t = t.filter(expr)
    t = t.agg(n=count(), s=sum_("x"), lo=min_("f"), hi=max_("d"))
    where = " AND ".join(f"({sql})" for _, sql in predicates)
    with tempfile.TemporaryDirectory() as tmp:
        ds = _write(table, Path(tmp), cuts, group)
        checked = dataclasses.replace(check_plan(t._node, {"t": ds}), disclosure_stats=True)
        pruned = LocalExecutor().aggregate(checked)
        with pytest.MonkeyPatch.context() as m:
            m.setattr(prune, "row_groups", lambda f, where: None)
            full = LocalExecutor().aggregate(checked)
        con = duckdb.connect()
        con.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet({list(ds.partitions)!r})")
        theirs = con.execute(
            f"SELECT count(*), sum(x), min(f), max(d) FROM t WHERE {where}"
        ).fetchone()
        con.close()
    assert pruned.table.equals(full.table), where  # values and contributor row ids
    ours = [pruned.table.column(c)[0].as_py() for c in ("n", "s", "lo", "hi")]
    assert theirs is not None
    assert all(_same(a, b) for a, b in zip(ours, theirs)), (where, ours, theirs)


def test_footers_of_more_partitions_than_a_count_would_keep_are_read_once(tmp_path: Path) -> None:
    """The planner reads every partition's footer for a join: with a cache bounded by count
    (512 once), the 513th partition pushed out the first, and every job read them all again."""
    paths = _two_row_partitions(tmp_path, 700)
    first = [prune.footer(path) for path in paths]
    again = [prune.footer(path) for path in paths]
    assert all(a is b for a, b in zip(first, again, strict=True))
    assert [f.num_rows for f in again] == [2] * 700


def test_the_footer_cache_keeps_to_its_bytes_dropping_the_least_recently_used(
    tmp_path: Path,
) -> None:
    paths = _two_row_partitions(tmp_path, 4)
    size = max(prune.footer(path).metadata.serialized_size for path in paths)
    footers = prune._Footers(budget=3 * size)
    for path in paths[:3]:
        footers.put(prune.file_key(path), prune.footer(path))
    assert footers.get(prune.file_key(paths[0])) is not None  # now the most recently used
    footers.put(prune.file_key(paths[3]), prune.footer(paths[3]))
    assert len(footers) == 3 and footers.held <= footers.budget
    assert footers.get(prune.file_key(paths[1])) is None  # the least recently used went
    assert all(footers.get(prune.file_key(p)) is not None for p in (paths[0], paths[2], paths[3]))


def _two_row_partitions(root: Path, n: int) -> list[str]:
    paths = []
    for i in range(n):
        path = root / f"part-{i:04d}.parquet"
        pq.write_table(pa.table({"x": pa.array([i, i + 1], pa.int64())}), path)
        paths.append(str(path))
    return paths
