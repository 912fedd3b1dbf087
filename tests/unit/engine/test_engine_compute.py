"""Partial aggregates and their merge give what DuckDB gives on the same Parquet files."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from factories import ingested, partitioned
from plans import NoChannel, same_cell

from sandbox.catalog.models import DatasetInfo
from sandbox.engine import compute, internal
from sandbox.engine.executor import LocalExecutor, RayExecutor
from sandbox.engine.validate import CheckedPlan, check_plan
from sandbox.language import plan as p
from sandbox.language.api import (
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

ROWS, PART = 2000, 500
DISTRICTS = ["城关区", "湖滨区", "新城区"]
FAR = "远郊区"  # only in the last partition, so most filters match nothing there


def _table() -> pa.Table:
    rng = np.random.default_rng(11)
    n = ROWS
    district = [DISTRICTS[i] for i in rng.integers(0, 3, n)]
    district[-PART:] = [FAR] * PART
    for i in rng.choice(n - PART, 40, replace=False):
        district[i] = None
    age = rng.integers(0, 100, n).astype(object)
    age[rng.choice(n, 60, replace=False)] = None
    income = rng.gamma(2.0, 3000.0, n).round(2).astype(object)
    income[rng.choice(n, 300, replace=False)] = None
    born = [dt.date(1930, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 30000, n)]
    return pa.table(
        {
            "resident_id": [f"43990{i:06d}" for i in range(n)],
            "district": pa.array(district, pa.string()),
            "age": pa.array(list(age), pa.int64()),
            "income": pa.array(list(income), pa.float64()),
            "birth_date": pa.array(born, pa.date32()),
        }
    )


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> DatasetInfo:
    return ingested(
        tmp_path_factory.mktemp("datasets"),
        "people",
        _table(),
        {
            "resident_id": {"role": "identifier"},
            "district": {"role": "attribute"},
            "age": {"role": "quasi_identifier"},
            "income": {"role": "sensitive"},
            "birth_date": {"role": "quasi_identifier"},
        },
        level="L3",
        partition_rows=PART,
        title="人口",
    )


T = Table(p.Scan("people"), NoChannel())
BANDS = (
    "CASE WHEN age IS NULL THEN NULL WHEN age < 18 THEN '< 18' WHEN age < 35 THEN "
    "'[18, 35)' WHEN age < 60 THEN '[35, 60)' ELSE '>= 60' END"
)

CASES: dict[str, tuple[Table, str]] = {
    "filter_group_count_sum_mean": (
        T.filter(col("age") >= 30)
        .group_by("district")
        .agg(n=count(), s=sum_("income"), m=mean("income")),
        "SELECT district, count(*), sum(income), avg(income) FROM t WHERE age >= 30 "
        "GROUP BY district",
    ),
    "bucket": (
        T.derive(band=col("age").bucket([18, 35, 60]))
        .group_by("band")
        .agg(n=count(), m=mean("income")),
        f"SELECT {BANDS} AS band, count(*), avg(income) FROM t GROUP BY band",
    ),
    "year": (
        T.derive(y=col("birth_date").year())
        .filter(col("y") >= 1990)
        .group_by("y")
        .agg(n=count(), s=sum_("age")),
        "SELECT year(birth_date) AS y, count(*), sum(age) FROM t WHERE year(birth_date) >= 1990 "
        "GROUP BY y",
    ),
    "month_and_iso_date": (
        T.filter(col("birth_date") >= "1990-06-15")
        .group_by("district")
        .agg(n=count(), m=mean(col("birth_date").month())),
        "SELECT district, count(*), avg(month(birth_date)) FROM t "
        "WHERE birth_date >= DATE '1990-06-15' GROUP BY district",
    ),
    "isin": (
        T.filter(col("district").isin(["城关区", "湖滨区"])).group_by("district").agg(n=count()),
        "SELECT district, count(*) FROM t WHERE district IN ('城关区', '湖滨区') GROUP BY district",
    ),
    "between": (
        T.filter(col("age").between(20, 40)).agg(n=count(), s=sum_("income")),
        "SELECT count(*), sum(income) FROM t WHERE age BETWEEN 20 AND 40",
    ),
    "is_null": (
        T.filter(col("income").is_null()).group_by("district").agg(n=count(), m=mean("age")),
        "SELECT district, count(*), avg(age) FROM t WHERE income IS NULL GROUP BY district",
    ),
    "not_or_arithmetic": (
        T.filter(~(col("district") == "城关区") | col("age").is_null()).agg(
            n=count(), s=sum_(col("income") * 2 + col("age")), m=mean(col("age") / 4)
        ),
        "SELECT count(*), sum(income * 2 + age), avg(age / 4) FROM t "
        "WHERE NOT (district = '城关区') OR age IS NULL",
    ),
    "startswith": (
        T.filter(col("district").startswith("城") | col("district").endswith("滨区"))
        .group_by("district")
        .agg(n=count()),
        "SELECT district, count(*) FROM t WHERE starts_with(district, '城') "
        "OR ends_with(district, '滨区') GROUP BY district",
    ),
    "whole_table": (
        T.agg(n=count(), s=sum_("income"), m=mean("age")),
        "SELECT count(*), sum(income), avg(age) FROM t",
    ),
    "whole_table_nothing_matches": (
        T.filter(col("age") > 1000).agg(n=count(), s=sum_("income"), m=mean("income")),
        "SELECT count(*), sum(income), avg(income) FROM t WHERE age > 1000",
    ),
    "group_nothing_matches": (
        T.filter(col("age") > 1000).group_by("district").agg(n=count()),
        "SELECT district, count(*) FROM t WHERE age > 1000 GROUP BY district",
    ),
    "count_distinct": (
        T.group_by("district").agg(
            d=count_distinct("age"),
            b=count_distinct(col("age").bucket([18, 60])),
            r=count_distinct("resident_id"),
        ),
        "SELECT district, count(DISTINCT age), count(DISTINCT CASE WHEN age IS NULL THEN NULL "
        "WHEN age < 18 THEN '< 18' WHEN age < 60 THEN '[18, 60)' ELSE '>= 60' END), "
        "count(DISTINCT resident_id) FROM t GROUP BY district",
    ),
    "var_std": (
        T.group_by("district").agg(v=var("income"), s=std("age"), w=var(col("age") * 1.5)),
        "SELECT district, var_samp(income), stddev_samp(age), var_samp(age * 1.5) FROM t "
        "GROUP BY district",
    ),
    "var_of_one_value_is_null": (
        T.filter(col("age") == 3).group_by("district").agg(v=var("age"), s=std("income")),
        "SELECT district, var_samp(age), stddev_samp(income) FROM t WHERE age = 3 "
        "GROUP BY district",
    ),
    "min_max_attribute": (
        T.filter(col("age") > 50).agg(lo=min_("district"), hi=max_("district")),
        "SELECT min(district), max(district) FROM t WHERE age > 50",
    ),
    "min_max_nothing_matches": (
        T.filter(col("age") > 1000).agg(
            lo=min_("district"), q=quantile("income", 0.5), d=count_distinct("age"), v=var("age")
        ),
        "SELECT min(district), quantile_cont(income, 0.5), count(DISTINCT age), var_samp(age) "
        "FROM t WHERE age > 1000",
    ),
    "quantile": (
        T.group_by("district").agg(
            med=quantile("income", 0.5),
            p9=quantile("age", 0.9),
            lo=quantile("age", 0.0),
            hi=quantile("income", 1),
        ),
        "SELECT district, quantile_cont(income, 0.5), quantile_cont(age, 0.9), "
        "quantile_cont(age, 0.0), quantile_cont(income, 1.0) FROM t GROUP BY district",
    ),
    "histogram": (
        T.histogram("age", [18, 35, 60]),
        f"SELECT {BANDS} AS bin, count(*) FROM t GROUP BY bin",
    ),
    "cast_abs_round_case": (
        T.derive(
            a=(col("age") - 50).abs(),
            r=col("income").round(-2),
            f=col("age").cast("float"),
            i=(col("income") / 7).cast("int"),
            c=case((col("age") >= 65, "老"), (col("age") >= 18, "成"), default="少"),
        )
        .group_by("c")
        .agg(a=sum_("a"), r=sum_("r"), f=mean("f"), i=sum_("i")),
        "SELECT CASE WHEN age >= 65 THEN '老' WHEN age >= 18 THEN '成' ELSE '少' END AS c, "
        "sum(abs(age - 50)), sum(round(income, -2)), avg(age::DOUBLE), "
        "sum((income / 7)::BIGINT) FROM t GROUP BY c",
    ),
    "derive_select_unused_identifier": (
        T.derive(rid=col("resident_id"), a2=col("age") * 2)
        .select("district", "a2", "rid")
        .group_by("district")
        .agg(s=sum_("a2")),
        "SELECT district, sum(age * 2) FROM t GROUP BY district",
    ),
}


def _checked(t: Table, ds: DatasetInfo) -> CheckedPlan:
    return check_plan(t._node, {"people": ds})


def _released_values(table: pa.Table) -> list[tuple[Any, ...]]:
    names = [n for n in table.column_names if not n.startswith("__c:")]
    return list(zip(*(table.column(n).to_pylist() for n in names)))


def _sort_key(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple((v is None, v if v is not None else 0) for v in row)


def duckdb_rows(ds: DatasetInfo, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect()
    con.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet({list(ds.partitions)!r})")
    return con.execute(sql).fetchall()


def test_the_dataset_has_several_partitions_and_the_last_matches_few_filters(
    people: DatasetInfo,
) -> None:
    assert len(people.partitions) == ROWS // PART
    last = pq.read_table(people.partitions[-1], columns=["district"])
    assert set(last.column("district").to_pylist()) == {FAR}


@pytest.mark.parametrize("case", sorted(CASES))
def test_local_executor_equals_duckdb(people: DatasetInfo, case: str) -> None:
    t, sql = CASES[case]
    result = LocalExecutor().aggregate(_checked(t, people))
    ours = sorted(_released_values(result.table), key=_sort_key)
    theirs = sorted(duckdb_rows(people, sql), key=_sort_key)
    assert len(ours) == len(theirs), (ours, theirs)
    for mine, expected in zip(ours, theirs):
        assert len(mine) == len(expected)
        assert all(same_cell(a, b) for a, b in zip(mine, expected)), (mine, expected)
    assert result.rows_scanned == ROWS


def test_contributor_counts_are_non_null_counts(people: DatasetInfo) -> None:
    t = T.group_by("district").agg(n=count(), s=sum_("income"), m=mean("age"))
    table = LocalExecutor().aggregate(_checked(t, people)).table
    ours = sorted(
        zip(*(table.column(c).to_pylist() for c in ("district", "__c:n", "__c:s", "__c:m"))),
        key=_sort_key,
    )
    theirs = sorted(
        duckdb_rows(
            people, "SELECT district, count(*), count(income), count(age) FROM t GROUP BY district"
        ),
        key=_sort_key,
    )
    assert ours == theirs
    assert table.column("n").to_pylist() == table.column("__c:n").to_pylist()


def test_groups_come_back_sorted_by_key_with_nulls_last(people: DatasetInfo) -> None:
    t = T.group_by("district").agg(n=count())
    keys = LocalExecutor().aggregate(_checked(t, people)).table.column("district").to_pylist()
    assert keys == sorted(DISTRICTS + [FAR]) + [None]


def test_an_empty_whole_table_result_is_one_row_of_zero_count(people: DatasetInfo) -> None:
    t = T.filter(col("age") > 1000).agg(n=count(), s=sum_("income"))
    table = LocalExecutor().aggregate(_checked(t, people)).table
    assert table.to_pylist() == [{"n": 0, "__c:n": 0, "s": None, "__c:s": 0}]


def test_float_results_are_identical_from_run_to_run(people: DatasetInfo) -> None:
    # A released value must not wobble in its last bits between two runs of one job.
    checked = _checked(CASES["bucket"][0], people)
    first = LocalExecutor().aggregate(checked).table
    assert all(LocalExecutor().aggregate(checked).table.equals(first) for _ in range(40))


def test_result_types(people: DatasetInfo) -> None:
    t = T.group_by("district").agg(n=count(), s=sum_("age"), f=sum_("income"), m=mean("age"))
    schema = LocalExecutor().aggregate(_checked(t, people)).table.schema
    assert [(f.name, str(f.type)) for f in schema] == [
        ("district", "string"),
        ("n", "int64"),
        ("__c:n", "int64"),
        ("s", "int64"),
        ("__c:s", "int64"),
        ("f", "double"),
        ("__c:f", "int64"),
        ("m", "double"),
        ("__c:m", "int64"),
    ]


@pytest.mark.parametrize(
    "case", ["filter_group_count_sum_mean", "bucket", "whole_table", "whole_table_nothing_matches"]
)
def test_ray_executor_gives_the_same_table_as_local(
    people: DatasetInfo, ray_local: None, case: str
) -> None:
    checked = _checked(CASES[case][0], people)
    local = LocalExecutor().aggregate(checked)
    remote = RayExecutor(in_place_max_rows=0).aggregate(checked)
    assert remote.table.equals(local.table)
    assert remote.rows_scanned == local.rows_scanned == ROWS


def test_contributor_counts_of_new_aggregates(people: DatasetInfo) -> None:
    t = T.group_by("district").agg(
        d=count_distinct("age"), q=quantile("income", 0.5), lo=min_("district"), v=var("age")
    )
    table = LocalExecutor().aggregate(_checked(t, people)).table
    ours = sorted(
        zip(
            *(
                table.column(c).to_pylist()
                for c in ("district", "__c:d", "__c:q", "__c:lo", "__c:v")
            )
        ),
        key=_sort_key,
    )
    theirs = sorted(
        duckdb_rows(
            people,
            "SELECT district, count(*), count(income), "
            "count(district), count(age) FROM t GROUP BY district",
        ),
        key=_sort_key,
    )
    assert ours == theirs


def test_a_quantile_of_a_sensitive_column_is_marked_for_coarsening(people: DatasetInfo) -> None:
    t = T.agg(q=quantile("income", 0.5), a=quantile("age", 0.5), m=mean("income"))
    checked = _checked(t, people)
    assert checked.coarsen == ("q",)
    schema = LocalExecutor().aggregate(checked).table.schema
    assert schema.field("q").metadata == {internal.COARSEN_KEY: b"2"}
    assert not schema.field("a").metadata and not schema.field("m").metadata


def test_quantile_cont_interpolates_linearly() -> None:
    assert compute.quantile_cont([1, 2, 3, 4], 0.5) == 2.5
    assert compute.quantile_cont([10], 0.3) == 10.0
    assert compute.quantile_cont([0, 10], 0.25) == 2.5
    assert compute.quantile_cont([1, 5, 9], 1.0) == 9.0


def test_a_small_scan_runs_in_place_on_ray_with_the_same_result(
    people: DatasetInfo, ray_local: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sandbox.engine import executor as ex

    checked = _checked(CASES["filter_group_count_sum_mean"][0], people)
    fanned: list[Any] = []
    real_call = ex._RayRunner.call
    monkeypatch.setattr(
        ex._RayRunner,
        "call",
        lambda self, fn, *a, **k: fanned.append(fn) or real_call(self, fn, *a, **k),
    )
    small = ex.RayExecutor().aggregate(checked)
    assert fanned == []  # no Ray task per partition
    wide = ex.RayExecutor(in_place_max_rows=0).aggregate(checked)
    assert fanned  # … unless told to fan out
    assert small.table.equals(wide.table) and small.rows_scanned == wide.rows_scanned == ROWS


# --- text columns read as dictionaries ---------------------------------------------------------


def _wide(tmp_path: Any) -> DatasetInfo:
    """One partition large enough that its few-valued text columns are stored as dictionaries
    (and its unique IDs are not)."""
    rng = np.random.default_rng(5)
    n = 200_000
    district = pa.array(
        [
            DISTRICTS[i] if keep else None
            for i, keep in zip(rng.integers(0, 3, n), rng.random(n) > 0.01)
        ],
        pa.string(),
    )
    table = pa.table(
        {
            "resident_id": [f"4399{i:010d}" for i in range(n)],
            "district": district,
            "x": pa.array(rng.integers(-5, 50, n), pa.int64()),
        }
    )
    from sandbox.catalog.models import ColumnInfo

    columns = (
        ColumnInfo("resident_id", "string", "identifier"),
        ColumnInfo("district", "string", "attribute"),
        ColumnInfo("x", "int64", "attribute"),
    )
    return partitioned(tmp_path, [table], columns, name="w", title="字典")


def test_few_valued_text_is_read_as_a_dictionary_and_unique_ids_are_not(tmp_path: Any) -> None:
    from sandbox.engine import prune

    ds = _wide(tmp_path)
    f = prune.footer(ds.partitions[0])
    assert prune.dictionary_columns(f, ["resident_id", "district", "x"]) == ["district"]
    table = prune.read(f, ["resident_id", "district"], None)
    assert pa.types.is_dictionary(table.schema.field("district").type)
    assert table.schema.field("resident_id").type == pa.string()


def test_dictionary_reads_give_the_same_results_as_plain_ones(tmp_path: Any) -> None:
    from plans import dictionaries

    ds = _wide(tmp_path)
    t = Table(p.Scan("w"), NoChannel())
    plans = [
        t.filter(col("district").isin(["城关区", "新城区"]) & (col("x") > 3))
        .group_by("district")
        .agg(n=count(), s=sum_("x"), d=count_distinct("district")),
        t.filter(col("district").startswith("湖") | (col("district") < "新"))
        .derive(c=case((col("district") == "城关区", "城"), default=col("district")))
        .group_by("c")
        .agg(n=count(), lo=min_("district"), hi=max_("x")),
        t.filter(col("district").is_null() | (col("district") != "湖滨区")).agg(
            n=count(), k=count_distinct("district")
        ),
    ]
    for plan in plans:
        checked = dataclasses.replace(check_plan(plan._node, {"w": ds}), disclosure_stats=True)
        with dictionaries(False):
            plain = LocalExecutor().aggregate(checked).table
        with dictionaries(True):
            encoded = LocalExecutor().aggregate(checked).table
        assert encoded.equals(plain), plan._node
        assert all(not pa.types.is_dictionary(f.type) for f in encoded.schema)


def test_partition_work_stops_at_the_jobs_deadline(ray_local: None, tmp_path: Any) -> None:
    """Ray tasks still running when a job's time is up are cancelled, not waited for."""
    import time as clock

    import ray

    from sandbox.engine.executor import DeadlinePassed, _Deadlined, _RayRunner

    @ray.remote(num_cpus=1)
    def slow() -> int:
        clock.sleep(30)
        return 1

    runner = _Deadlined(_RayRunner(ray), clock.monotonic() + 0.5)
    handle = slow.remote()
    started = clock.monotonic()
    with pytest.raises(DeadlinePassed):
        runner.get([handle])
    assert clock.monotonic() - started < 5
    with pytest.raises((ray.exceptions.TaskCancelledError, ray.exceptions.WorkerCrashedError)):
        ray.get(handle, timeout=10)


@pytest.mark.parametrize("edges", [1, 5, 12, 13, 40])
def test_bands_are_those_a_binary_search_finds(edges: int) -> None:
    """Few edges are compared one by one, many searched: both give each value the number of
    edges at or below it, with NaN past the last edge and nulls null."""
    rng = np.random.default_rng(edges)
    bounds = tuple(sorted(set(np.round(rng.normal(0, 1000, edges), 1).tolist())))
    special = [math.nan, math.inf, -math.inf, -0.0, 0.0, *bounds]
    values = np.concatenate([rng.normal(0, 1500, 2000), rng.choice(special, 500)])
    nulls = rng.random(len(values)) < 0.05
    bands = compute._bucket(pa.array(values, mask=nulls), bounds)
    expected = np.searchsorted(np.asarray(bounds), values, side="right")
    got = bands.indices.to_numpy(zero_copy_only=False)
    assert got[~nulls].tolist() == expected[~nulls].tolist()
    assert bands.is_null().to_numpy(zero_copy_only=False).tolist() == nulls.tolist()
