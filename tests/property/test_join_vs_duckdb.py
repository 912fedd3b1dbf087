"""Random tables sharing keys, random joins and aggregations: the engine's merged table
equals DuckDB's SQL over the same Parquet partitions, cell by cell (before disclosure
control). Keys repeat on the right, go unmatched and are null, which an inner join drops; left
joins (SQL's LEFT JOIN) and anti joins (WHERE NOT EXISTS) keep the unmatched left rows."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from factories import partitioned, slices
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plans import NoChannel, dictionaries, lookups, same_cell

from sandbox.catalog.models import ColumnInfo, DatasetInfo
from sandbox.engine.executor import Executor, LocalExecutor, RayExecutor
from sandbox.engine.validate import check_plan
from sandbox.language import plan as p
from sandbox.language.api import (
    Aggregate,
    Table,
    col,
    count,
    count_distinct,
    max_,
    mean,
    min_,
    quantile,
    sum_,
    var,
)

LEFT = pa.schema(
    [
        ("k", pa.int64()),
        ("s", pa.string()),
        ("g", pa.string()),
        ("x", pa.int64()),
        ("f", pa.float64()),
    ]
)
RIGHT = pa.schema(
    [("k", pa.int32()), ("s", pa.large_string()), ("h", pa.string()), ("y", pa.float64())]
)
THIRD = pa.schema([("s", pa.string()), ("z", pa.int64())])
KEYS = ["城关区", "湖滨区", "a", "", "Z"]

left_row = st.fixed_dictionaries(
    {
        "k": st.none() | st.integers(0, 5),
        "s": st.none() | st.sampled_from(KEYS),
        "g": st.none() | st.sampled_from(["北", "南"]),
        "x": st.none() | st.integers(-20, 20),
        # Multiples of 1/4: exact in binary, so sums do not depend on the order of addition.
        "f": st.none() | st.integers(-200, 200).map(lambda i: i / 4),
    }
)
right_row = st.fixed_dictionaries(
    {
        "k": st.none() | st.integers(2, 8),  # 0, 1 never match; 6–8 match no left row
        "s": st.none() | st.sampled_from(KEYS),
        "h": st.none() | st.sampled_from(["甲", "乙", "丙"]),
        "y": st.none() | st.integers(-40, 40).map(lambda i: i / 4),
    }
)
third_row = st.fixed_dictionaries(
    {
        "s": st.none() | st.sampled_from(KEYS[1:]),
        "z": st.none() | st.integers(0, 9),
    }
)


def _rows(row: st.SearchStrategy[dict[str, Any]], most: int) -> st.SearchStrategy[Any]:
    # Sizes drawn first: left to itself, hypothesis favours lists of a few rows.
    return st.integers(0, most).flatmap(lambda n: st.lists(row, min_size=n, max_size=n))


@dataclass(frozen=True)
class Piece:
    build: Callable[[], Any]
    sql: str


LEFT_FILTERS = [
    Piece(lambda: col("x") > 0, "x > 0"),
    Piece(lambda: col("f") <= 10, "f <= 10"),
    Piece(lambda: ~col("g").is_null(), "g IS NOT NULL"),
]
RIGHT_FILTERS = [
    Piece(lambda: col("y") >= 0, "y >= 0"),
    Piece(lambda: col("h") != "丙", "h <> '丙'"),
]

NUMBERS = ["x", "f", "y", "w"]  # w is derived after the join from both sides
ORDERED = [*NUMBERS, "g", "h"]


def _aggregates() -> st.SearchStrategy[tuple[Callable[[], Aggregate], str]]:
    def of(
        columns: list[str], make: Callable[[str], tuple[Callable[[], Aggregate], str]]
    ) -> st.SearchStrategy[tuple[Callable[[], Aggregate], str]]:
        return st.sampled_from(columns).map(make)

    return st.one_of(
        st.just((count, "count(*)")),
        of(NUMBERS, lambda c: (lambda: sum_(c), f"sum({c})")),
        of(NUMBERS, lambda c: (lambda: mean(c), f"avg({c})")),
        of([*ORDERED, "k"], lambda c: (lambda: count_distinct(c), f"count(DISTINCT {c})")),
        of(NUMBERS, lambda c: (lambda: var(c), f"var_samp({c})")),
        of(ORDERED, lambda c: (lambda: min_(c), f"min({c})")),
        of(ORDERED, lambda c: (lambda: max_(c), f"max({c})")),
        of(NUMBERS, lambda c: (lambda: quantile(c, 0.5), f"quantile_cont({c}, 0.5)")),
    )


plans = st.fixed_dictionaries(
    {
        "on": st.sampled_from([("k",), ("s",), ("k", "s")]),
        "third": st.booleans(),
        "left_filters": st.lists(st.sampled_from(LEFT_FILTERS), max_size=1),
        "right_filters": st.lists(st.sampled_from(RIGHT_FILTERS), max_size=1),
        "keys": st.lists(st.sampled_from(["g", "h"]), max_size=2, unique=True),
        "aggs": st.lists(_aggregates(), min_size=1, max_size=3),
        "cuts": st.tuples(
            st.lists(st.integers(0, 40), max_size=2), st.lists(st.integers(0, 30), max_size=2)
        ),
    }
)
tables = st.tuples(_rows(left_row, 40), _rows(right_row, 30), _rows(third_row, 8))


def _write(
    name: str,
    schema: pa.Schema,
    data: list[dict[str, Any]],
    cuts: list[int],
    root: Path,
    unique: str | None = None,
) -> DatasetInfo:
    columns = tuple(
        ColumnInfo(f.name, str(f.type), "attribute", unique=True if f.name == unique else None)
        for f in schema
    )
    return partitioned(
        root,
        slices(pa.Table.from_pylist(data, schema=schema), cuts),
        columns,
        name=name,
        title=name,
        prefix=name,
    )


def _one_per_key(data: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """The rows with the first of each non-null key: a key the catalog would record unique."""
    seen: set[Any] = set()
    out = []
    for row in data:
        if row[key] is not None and row[key] not in seen:
            seen.add(row[key])
            out.append(row)
    return out


def _job(plan: dict[str, Any]) -> tuple[Table, list[str], str]:
    """The plan in the job language, its output names, and the same query in SQL."""
    on = list(plan["on"])
    left = Table(p.Scan("l"), NoChannel())
    for piece in plan["left_filters"]:
        left = left.filter(piece.build())
    # Only the keys are on both sides; a third table joins on the left's s.
    right_columns = [*on, "h", "y"]
    right = Table(p.Scan("r"), NoChannel()).select(*right_columns)
    for piece in plan["right_filters"]:
        right = right.filter(piece.build())
    how = plan.get("how", "inner")
    joined = left.join(right, on=on if len(on) > 1 else on[0], how=how)
    if how == "anti":
        # Only the left's columns remain: the right's are stood in for by left ones.
        joined = joined.derive(h=col("g"), y=col("f"))
    if plan["third"]:
        joined = joined.join(Table(p.Scan("t"), NoChannel()), on="s")
    joined = joined.derive(w=col("x") + col("y"))
    named = {f"a{i}": make() for i, (make, _) in enumerate(plan["aggs"])}
    keys = plan["keys"]
    table = joined.group_by(*keys).agg(**named) if keys else joined.agg(**named)

    lw = " AND ".join(f"({piece.sql})" for piece in plan["left_filters"]) or "TRUE"
    rw = " AND ".join(f"({piece.sql})" for piece in plan["right_filters"]) or "TRUE"
    sql_right = f"(SELECT {', '.join(right_columns)} FROM r WHERE {rw}) r"
    if how == "anti":
        # NOT EXISTS, not NOT IN: a null key matches nothing, and its row stays.
        matches = " AND ".join(f"r.{k} = l.{k}" for k in on)
        sql_from = (
            f"(SELECT *, g AS h, f AS y FROM (SELECT * FROM l WHERE {lw}) l "
            f"WHERE NOT EXISTS (SELECT 1 FROM {sql_right} WHERE {matches})) l"
        )
    else:
        sql_join = "LEFT JOIN" if how == "left" else "JOIN"
        sql_from = f"(SELECT * FROM l WHERE {lw}) l {sql_join} {sql_right} USING ({', '.join(on)})"
    if plan["third"]:
        sql_from = f"(SELECT * FROM {sql_from}) lr JOIN t USING (s)"
    select = ", ".join([*keys, *(sql for _, sql in plan["aggs"])])
    group = f" GROUP BY {', '.join(keys)}" if keys else ""
    sql = f"WITH v AS (SELECT *, x + y AS w FROM {sql_from}) SELECT {select} FROM v{group}"
    return table, [*keys, *named], sql


def _by_key(rows: list[tuple[Any, ...]], n_keys: int) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    out = {tuple(r[:n_keys]): tuple(r[n_keys:]) for r in rows}
    assert len(out) == len(rows), "group keys must be distinct"
    return out


def _compare(
    executor: Executor, data: tuple[Any, ...], plan: dict[str, Any], unique: bool = False
) -> None:
    """`unique`: the right table has one row per `k`, and its catalog entry says so (its
    joins on `k` look rows up instead of hash-joining)."""
    table, names, sql = _job(plan)
    n_keys = len(plan["keys"])
    if unique:
        data = (data[0], _one_per_key(data[1], "k"), data[2])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        left = _write("l", LEFT, data[0], plan["cuts"][0], root)
        right = _write("r", RIGHT, data[1], plan["cuts"][1], root, "k" if unique else None)
        third = _write("t", THIRD, data[2], [], root)
        checked = check_plan(table._node, {"l": left, "r": right, "t": third})
        result = executor.aggregate(checked)
        ours = list(zip(*(result.table.column(n).to_pylist() for n in names)))
        con = duckdb.connect()
        for ds in (left, right, third):
            con.execute(
                f"CREATE VIEW {ds.name} AS SELECT * FROM read_parquet({list(ds.partitions)!r})"
            )
        theirs = con.execute(sql).fetchall()
        con.close()
    assert result.rows_by_dataset == {
        "l": len(data[0]),
        "r": len(data[1]),
        **({"t": len(data[2])} if plan["third"] else {}),
    }
    mine, expected = _by_key(ours, n_keys), _by_key(theirs, n_keys)
    assert mine.keys() == expected.keys(), (sql, ours, theirs)
    for key, values in expected.items():
        assert all(same_cell(a, b) for a, b in zip(mine[key], values)), (
            sql,
            key,
            mine[key],
            values,
        )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=tables,
    plan=plans,
    broadcast=st.booleans(),
    dictionary=st.booleans(),
    unique=st.booleans(),
    vectorised=st.booleans(),
)
def test_joins_equal_duckdb(
    data: tuple[Any, ...],
    plan: dict[str, Any],
    broadcast: bool,
    dictionary: bool,
    unique: bool,
    vectorised: bool,
) -> None:
    with dictionaries(dictionary), lookups(vectorised):
        _compare(LocalExecutor(broadcast_max_rows=10**9 if broadcast else 0), data, plan, unique)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=tables,
    plan=plans,
    how=st.sampled_from(["left", "anti"]),
    broadcast=st.booleans(),
    dictionary=st.booleans(),
    unique=st.booleans(),
    vectorised=st.booleans(),
)
def test_left_and_anti_joins_equal_duckdb(
    data: tuple[Any, ...],
    plan: dict[str, Any],
    how: str,
    broadcast: bool,
    dictionary: bool,
    unique: bool,
    vectorised: bool,
) -> None:
    plan = {**plan, "how": how}
    if how == "left":
        # A left join needs one right row per key: the right's k, recorded unique.
        unique = True
        plan["on"] = ("k",) if plan["on"] == ("s",) else plan["on"]
    with dictionaries(dictionary), lookups(vectorised):
        _compare(LocalExecutor(broadcast_max_rows=10**9 if broadcast else 0), data, plan, unique)


@pytest.mark.parametrize("broadcast", [True, False], ids=["broadcast", "partitioned"])
def test_joins_on_ray_equal_duckdb(ray_local: None, broadcast: bool) -> None:
    executor = RayExecutor(broadcast_max_rows=10**9 if broadcast else 0, in_place_max_rows=0)

    @settings(
        max_examples=6,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(data=tables, plan=plans, how=st.sampled_from(["inner", "left", "anti"]))
    def check(data: tuple[Any, ...], plan: dict[str, Any], how: str) -> None:
        if how == "left":
            plan = {**plan, "on": ("k",) if plan["on"] == ("s",) else plan["on"]}
        _compare(executor, data, {**plan, "how": how}, unique=how == "left")

    check()
