"""Random tables, random plans: the engine's merged table equals DuckDB's SQL on the same
Parquet partitions, cell by cell (values before disclosure control)."""

from __future__ import annotations

import datetime as dt
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from factories import partitioned, slices
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plans import NoChannel, dictionaries

from sandbox.catalog.models import ColumnInfo, DatasetInfo
from sandbox.engine.executor import LocalExecutor
from sandbox.engine.validate import check_plan
from sandbox.language import plan as p
from sandbox.language.api import (
    Aggregate,
    Table,
    case,
    col,
    count,
    count_distinct,
    max_,
    mean,
    min_,
    quantile,
    std,
    sum_,
    var,
)

SCHEMA = pa.schema(
    [
        ("k", pa.int64()),
        ("g", pa.string()),
        ("x", pa.int64()),
        ("f", pa.float64()),
        ("d", pa.date32()),
    ]
)
# Every column an attribute, so min/max are allowed and no grouping is refused.
COLUMNS = tuple(ColumnInfo(f.name, str(f.type), "attribute") for f in SCHEMA)
STRINGS = ["北京", "上海", "城关区", "a", "b", "Z"]

row = st.fixed_dictionaries(
    {
        "k": st.none() | st.integers(0, 3),
        "g": st.none() | st.sampled_from(STRINGS),
        "x": st.none() | st.integers(-50, 50),
        # Multiples of 1/4: exact in binary, so sums do not depend on the order of addition.
        "f": st.none() | st.integers(-400, 400).map(lambda i: i / 4),
        "d": st.none() | st.dates(dt.date(1990, 1, 1), dt.date(2030, 12, 31)),
    }
)
# Sizes drawn first: left to itself, hypothesis favours lists of a few rows.
rows = st.integers(0, 60).flatmap(lambda n: st.lists(row, min_size=n, max_size=n))


@dataclass(frozen=True)
class Piece:
    """One part of a plan, as the job language builds it and as SQL writes it."""

    build: Callable[[], Any]
    sql: str


FILTERS = [
    Piece(lambda: col("x") > 0, "x > 0"),
    Piece(lambda: col("x") <= -10, "x <= -10"),
    Piece(lambda: col("k") == 2, "k = 2"),
    Piece(lambda: col("g").isin(["北京", "a"]), "g IN ('北京', 'a')"),
    Piece(lambda: col("f").between(-20, 35.5), "f BETWEEN -20 AND 35.5"),
    Piece(lambda: col("x").is_null(), "x IS NULL"),
    Piece(lambda: ~col("g").is_null() & (col("f") < 0), "g IS NOT NULL AND f < 0"),
    Piece(lambda: (col("d") >= "2015-06-01") | (col("k") != 1), "d >= DATE '2015-06-01' OR k <> 1"),
    Piece(lambda: col("x") > 1000, "x > 1000"),  # nothing matches
    Piece(lambda: col("g").startswith("北") | (col("g") < "b"), "starts_with(g, '北') OR g < 'b'"),
]

DERIVED = {
    "b": Piece(
        lambda: col("x").bucket([-10, 0, 10]),
        "CASE WHEN x IS NULL THEN NULL WHEN x < -10 THEN '< -10' WHEN x < 0 THEN "
        "'[-10, 0)' WHEN x < 10 THEN '[0, 10)' ELSE '>= 10' END",
    ),
    "y": Piece(lambda: col("d").year(), "year(d)"),
    "z": Piece(lambda: col("x") * 2 + col("f") - 1, "x * 2 + f - 1"),
    "h": Piece(lambda: col("x") / 4, "x / 4"),
    "a": Piece(lambda: (col("x") - 5).abs(), "abs(x - 5)"),
    "r": Piece(lambda: (col("f") * 3).round(1), "round(f * 3, 1)"),
    "i": Piece(lambda: col("f").cast("int"), "CAST(f AS BIGINT)"),
    "c": Piece(
        lambda: case((col("x") > 0, "正"), (col("x") < 0, "负"), default="零"),
        "CASE WHEN x > 0 THEN '正' WHEN x < 0 THEN '负' ELSE '零' END",
    ),
    "m": Piece(
        lambda: case((col("g") == "a", col("f")), default=col("x")),
        "CASE WHEN g = 'a' THEN f ELSE x END",
    ),
}

NUMBERS = ["x", "f", "z", "h", "k", "a", "r", "i", "m"]
ORDERED = [*NUMBERS, "g", "d"]


def _aggregates() -> st.SearchStrategy[tuple[Callable[[], Aggregate], str]]:
    def of(
        columns: list[str], make: Callable[[str], tuple[Callable[[], Aggregate], str]]
    ) -> st.SearchStrategy[tuple[Callable[[], Aggregate], str]]:
        return st.sampled_from(columns).map(make)

    return st.one_of(
        st.just((count, "count(*)")),
        of(NUMBERS, lambda c: (lambda: sum_(c), f"sum({c})")),
        of(NUMBERS, lambda c: (lambda: mean(c), f"avg({c})")),
        of(ORDERED, lambda c: (lambda: count_distinct(c), f"count(DISTINCT {c})")),
        of(NUMBERS, lambda c: (lambda: var(c), f"var_samp({c})")),
        of(NUMBERS, lambda c: (lambda: std(c), f"stddev_samp({c})")),
        of(ORDERED, lambda c: (lambda: min_(c), f"min({c})")),
        of(ORDERED, lambda c: (lambda: max_(c), f"max({c})")),
        st.tuples(st.sampled_from(NUMBERS), st.sampled_from([0.0, 0.25, 0.5, 0.9, 1.0])).map(
            lambda cq: (lambda: quantile(cq[0], cq[1]), f"quantile_cont({cq[0]}, {cq[1]})")
        ),
    )


plans = st.fixed_dictionaries(
    {
        "filters": st.lists(st.sampled_from(FILTERS), max_size=2),
        "keys": st.lists(st.sampled_from(["k", "g", "b", "y", "c", "i"]), max_size=2, unique=True),
        "aggs": st.lists(_aggregates(), min_size=1, max_size=4),
        "cuts": st.lists(st.integers(0, 60), max_size=2),
        # Read text columns as Arrow dictionaries, as large partitions of few distinct values are.
        "dictionary": st.booleans(),
    }
)


def _write(data: list[dict[str, Any]], cuts: list[int], root: Path) -> DatasetInfo:
    return partitioned(
        root, slices(pa.Table.from_pylist(data, schema=SCHEMA), cuts), COLUMNS, title="随机"
    )


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
    return type(a) is type(b) and bool(a == b)


def _by_key(rows: list[tuple[Any, ...]], n_keys: int) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    out = {tuple(r[:n_keys]): tuple(r[n_keys:]) for r in rows}
    assert len(out) == len(rows), "group keys must be distinct"
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=rows, plan=plans)
def test_engine_equals_duckdb(data: list[dict[str, Any]], plan: dict[str, Any]) -> None:
    table = Table(p.Scan("t"), NoChannel())
    for piece in plan["filters"]:
        table = table.filter(piece.build())
    table = table.derive(**{name: piece.build() for name, piece in DERIVED.items()})
    named = {f"a{i}": make() for i, (make, _) in enumerate(plan["aggs"])}
    keys = plan["keys"]
    table = table.group_by(*keys).agg(**named) if keys else table.agg(**named)

    where = " AND ".join(f"({piece.sql})" for piece in plan["filters"]) or "TRUE"
    derived = ", ".join(f"{piece.sql} AS {name}" for name, piece in DERIVED.items())
    select = ", ".join([*keys, *(sql for _, sql in plan["aggs"])])
    group = f" GROUP BY {', '.join(keys)}" if keys else ""
    sql = f"WITH v AS (SELECT *, {derived} FROM t WHERE {where}) SELECT {select} FROM v{group}"

    with tempfile.TemporaryDirectory() as tmp, dictionaries(plan["dictionary"]):
        ds = _write(data, plan["cuts"], Path(tmp))
        result = LocalExecutor().aggregate(check_plan(table._node, {"t": ds})).table
        ours = list(zip(*(result.column(n).to_pylist() for n in [*keys, *named])))
        con = duckdb.connect()
        con.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet({list(ds.partitions)!r})")
        theirs = con.execute(sql).fetchall()
        con.close()

    mine, expected = _by_key(ours, len(keys)), _by_key(theirs, len(keys))
    assert mine.keys() == expected.keys(), (sql, ours, theirs)
    for key, values in expected.items():
        assert all(_same(a, b) for a, b in zip(mine[key], values)), (sql, key, mine[key], values)


def test_an_all_empty_dataset_still_gives_one_whole_table_row() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ds = _write([], [], Path(tmp))
        t = Table(p.Scan("t"), NoChannel()).agg(
            n=count(), d=count_distinct("g"), q=quantile("x", 0.5), lo=min_("d"), v=var("f")
        )
        result = LocalExecutor().aggregate(check_plan(t._node, {"t": ds})).table
    assert [result.column(c).to_pylist() for c in ("n", "d", "q", "lo", "v")] == [
        [0],
        [0],
        [None],
        [None],
        [None],
    ]
