"""Joins in validation (per-side typing, lineage, roles, usage), in the engine (broadcast and
partitioned hash joins, in-process and on Ray) and in the driver (budget, threshold, privacy)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from factories import ingested
from plans import NoChannel, lookups
from pyroaring import BitMap64

from contracts.document import ContractDocument
from sandbox.catalog.models import ColumnInfo, DatasetInfo
from sandbox.common.hashing import key_hash
from sandbox.engine import compute, join, protection
from sandbox.engine.executor import LocalExecutor, RayExecutor
from sandbox.engine.validate import CheckedPlan, ScanInfo, check_group_key, check_plan
from sandbox.errors import DisclosureRefused, PlanError
from sandbox.jail.process import Limits
from sandbox.language import plan as p
from sandbox.language.api import Table, col, count, count_distinct, mean, sum_
from sandbox.pipeline.driver import JobSpec, run_job


def _ds(name: str, level: str, rows: int, *columns: ColumnInfo) -> DatasetInfo:
    return DatasetInfo(
        name=name,
        title=name,
        provider_id="pr-1",
        level=level,
        row_count=rows,
        columns=columns,
        partitions=(),
    )


PEOPLE = _ds(
    "people",
    "L3",
    100,
    ColumnInfo("resident_id", "string", "identifier"),
    ColumnInfo("district", "string", "attribute"),
    ColumnInfo("age", "int64", "quasi_identifier", distinct=90),
    ColumnInfo("birth_date", "date32[day]", "quasi_identifier"),
    ColumnInfo("income", "double", "sensitive"),
)
INSURED = _ds(
    "insured",
    "L2",
    80,
    ColumnInfo("resident_id", "string", "identifier"),
    ColumnInfo("credit_code", "string", "identifier"),
    ColumnInfo("district", "string", "attribute"),
    ColumnInfo("base", "double", "sensitive"),
    ColumnInfo("months", "int64", "attribute"),
)
FIRMS = _ds(
    "firms",
    "L1",
    10,
    ColumnInfo("credit_code", "string", "identifier"),
    ColumnInfo("industry", "string", "attribute"),
    ColumnInfo("employees", "int32", "attribute"),
    ColumnInfo("share", "float64", "attribute"),
    ColumnInfo("founded", "date32[day]", "attribute"),
)
CATALOG = {d.name: d for d in (PEOPLE, INSURED, FIRMS)}


def t(name: str) -> Table:
    return Table(p.Scan(name), NoChannel())


def check(table: Table) -> CheckedPlan:
    return check_plan(table._node, CATALOG)


def q3() -> Table:
    """Insured people joined with their records and their employers, by industry."""
    people = t("people").select("resident_id", "income")
    firms = t("firms").select("credit_code", "industry")
    return (
        t("insured")
        .select("resident_id", "credit_code", "base")
        .join(people, on="resident_id")
        .join(firms, on="credit_code")
    )


# --- validation -------------------------------------------------------------------------


def test_usage_covers_every_dataset_read_with_join_keys_used_for_join_on_both_sides() -> None:
    checked = check(q3().group_by("industry").agg(n=count(), m=mean("income"), b=sum_("base")))
    assert checked.usage == {
        "firms": {"credit_code": {"join"}, "industry": {"group_by"}},
        "insured": {"base": {"aggregate"}, "credit_code": {"join"}, "resident_id": {"join"}},
        "people": {"income": {"aggregate"}, "resident_id": {"join"}},
    }


def test_the_primary_dataset_is_the_left_most_and_every_read_has_its_own_columns() -> None:
    checked = check(q3().group_by("industry").agg(n=count()))
    assert checked.dataset is INSURED
    assert checked.scan_columns == ("resident_id", "credit_code")
    assert checked.datasets == (INSURED, PEOPLE, FIRMS)
    assert checked.reads == (
        ScanInfo(INSURED, ("resident_id", "credit_code")),
        ScanInfo(PEOPLE, ("resident_id",)),
        ScanInfo(FIRMS, ("credit_code", "industry")),
    )
    assert checked.output_kinds == (("industry", "string"), ("n", "int"))


def test_a_plan_without_joins_still_reads_one_dataset() -> None:
    checked = check(t("people").group_by("district").agg(n=count()))
    assert checked.datasets == (PEOPLE,)
    assert checked.reads == (ScanInfo(PEOPLE, ("district",)),)
    assert checked.usage == {"people": {"district": {"group_by"}}}


def test_a_table_joined_with_itself_keeps_its_two_reads_apart() -> None:
    left = t("people").select("resident_id", "income")
    right = t("people").select("resident_id", "district")
    checked = check(left.join(right, on="resident_id").group_by("district").agg(n=count()))
    assert checked.reads == (
        ScanInfo(PEOPLE, ("resident_id",)),
        ScanInfo(PEOPLE, ("resident_id", "district")),
    )
    assert checked.datasets == (PEOPLE,)
    assert checked.usage == {"people": {"district": {"group_by"}, "resident_id": {"join"}}}


def test_a_column_on_both_sides_that_is_no_key_is_ambiguous() -> None:
    with pytest.raises(PlanError) as info:
        check(t("insured").join(t("people"), on="resident_id").agg(n=count()))
    message = info.value.message
    assert "'district'" in message and "both tables" in message
    assert "select()" in message and "derive()" in message


def test_renaming_one_side_resolves_the_ambiguity() -> None:
    people = t("people").derive(home=col("district")).select("resident_id", "home", "income")
    joined = t("insured").join(people, on="resident_id")
    checked = check(joined.group_by("district", "home").agg(n=count()))
    assert checked.usage["people"]["district"] == {"group_by"}
    assert checked.usage["insured"]["district"] == {"group_by"}


@pytest.mark.parametrize(
    ("left", "right", "side"),
    [
        ("insured", "firms", "right"),
        ("firms", "people", "left"),
    ],
)
def test_a_join_key_missing_on_one_side_names_the_side(left: str, right: str, side: str) -> None:
    with pytest.raises(PlanError, match=f"no column 'resident_id' in the {side} table"):
        check(t(left).join(t(right), on="resident_id").agg(n=count()))


def test_join_keys_of_incompatible_kinds_name_the_column_and_kinds() -> None:
    firms = t("firms").derive(resident_id=col("founded")).select("resident_id", "industry")
    with pytest.raises(PlanError) as info:
        check(t("people").join(firms, on="resident_id").agg(n=count()))
    message = info.value.message
    assert "'resident_id'" in message and "string in the left" in message
    assert "date in the right" in message


def test_numbers_join_numbers_and_the_key_becomes_a_float() -> None:
    firms = t("firms").derive(k=col("employees")).select("k", "industry")
    other = t("firms").derive(k=col("share")).select("k", "founded")
    checked = check(firms.join(other, on="k").agg(n=count(), s=sum_("k")))
    assert checked.output_kinds == (("n", "int"), ("s", "float"))


def test_a_boolean_cannot_join_a_number() -> None:
    left = t("firms").derive(k=col("employees") > 3).select("k", "industry")
    right = t("firms").select("employees").derive(k=col("employees")).select("k")
    with pytest.raises(PlanError, match="bool in the left table and int in the right"):
        check(left.join(right, on="k").agg(n=count()))


def test_an_unknown_dataset_on_the_right_is_refused() -> None:
    with pytest.raises(PlanError, match="'nowhere' is not available"):
        check(t("people").join(t("nowhere"), on="resident_id").agg(n=count()))


def test_identifier_join_keys_stay_identifiers_after_the_join() -> None:
    joined = (
        t("insured")
        .select("resident_id", "base")
        .join(t("people").select("resident_id", "income"), on="resident_id")
    )
    with pytest.raises(DisclosureRefused, match="identifier column 'resident_id'"):
        check(joined.group_by("resident_id").agg(n=count()))
    with pytest.raises(DisclosureRefused, match="identifier column 'resident_id'"):
        check(joined.agg(s=sum_("resident_id")))
    # Counting distinct people releases a count only.
    checked = check(joined.agg(people=count_distinct("resident_id")))
    assert checked.usage["people"]["resident_id"] == {"join", "aggregate"}


def test_a_derived_copy_of_the_joined_identifier_cannot_be_grouped_by() -> None:
    joined = (
        t("insured")
        .select("resident_id", "base")
        .join(t("people").select("resident_id", "income"), on="resident_id")
    )
    laundered = joined.derive(x=col("resident_id")).select("x", "income")
    with pytest.raises(DisclosureRefused) as info:
        check(laundered.group_by("x").agg(n=count()))
    assert "'x'" in info.value.message and "'resident_id'" in info.value.message


def test_a_key_that_is_an_identifier_on_one_side_only_is_one_after_the_join() -> None:
    # Left: an attribute renamed to the right's identifier name; the merged key carries both.
    left = t("firms").derive(credit_code=col("industry")).select("credit_code", "share")
    right = t("insured").select("credit_code", "base")
    with pytest.raises(DisclosureRefused, match="identifier column 'credit_code'"):
        check(left.join(right, on="credit_code").group_by("credit_code").agg(n=count()))


def test_raw_quasi_identifiers_stay_too_fine_to_group_by_through_a_join() -> None:
    joined = (
        t("insured")
        .select("resident_id", "base")
        .join(t("people").select("resident_id", "birth_date"), on="resident_id")
    )
    with pytest.raises(DisclosureRefused, match="quasi-identifier 'birth_date'"):
        check(joined.group_by("birth_date").agg(n=count()))
    check(joined.derive(born=col("birth_date").year()).group_by("born").agg(n=count()))


def test_quantiles_of_a_sensitive_column_from_the_right_are_coarsened() -> None:
    from sandbox.language.api import quantile

    joined = (
        t("insured")
        .select("resident_id", "months")
        .join(t("people").select("resident_id", "income"), on="resident_id")
    )
    checked = check(joined.agg(q=quantile("income", 0.5), m=quantile("months", 0.5)))
    assert checked.coarsen == ("q",)


def test_an_aggregate_inside_a_join_side_is_refused() -> None:
    node = p.Aggregate(
        p.Join(
            p.Aggregate(p.Scan("people"), ("district",), (("n", p.Agg("count")),)),
            p.Scan("firms"),
            ("district",),
        ),
        (),
        (("n", p.Agg("count")),),
    )
    with pytest.raises(PlanError, match="cannot be aggregated again"):
        check_plan(node, CATALOG)


def test_check_group_key_still_refuses_a_raw_identifier() -> None:
    with pytest.raises(DisclosureRefused):
        check_group_key(PEOPLE, "resident_id")
    check_group_key(PEOPLE, "district")


# --- hash partitioning ------------------------------------------------------------------


def _hashes(values: pa.Array) -> list[int]:
    return key_hash(values).tolist()


def test_numbers_hash_by_value_whatever_their_type() -> None:
    ints = pa.array([0, 3, -7, 2**40], pa.int64())
    assert _hashes(ints) == _hashes(pa.array([0.0, 3.0, -7.0, 2.0**40]))
    assert _hashes(pa.array([0, 3, -7], pa.int8())) == _hashes(pa.array([0.0, 3.0, -7.0]))
    assert _hashes(pa.array([-0.0])) == _hashes(pa.array([0], pa.int16()))
    assert len(set(_hashes(ints))) == 4


def test_dates_hash_like_midnight_timestamps() -> None:
    days = [dt.date(1960, 1, 1), dt.date(2024, 12, 31)]
    midnights = [dt.datetime(d.year, d.month, d.day) for d in days]
    assert _hashes(pa.array(days, pa.date32())) == _hashes(pa.array(midnights, pa.timestamp("ms")))


def test_text_hashes_by_bytes_across_string_types_and_slices() -> None:
    words = ["", "城关区", "a", "ab", "ba", "", "湖滨区" * 40]
    small, large = pa.array(words, pa.string()), pa.array(words, pa.large_string())
    assert _hashes(small) == _hashes(large)
    assert _hashes(small.slice(2, 3)) == _hashes(pa.array(words[2:5]))
    assert len(set(_hashes(small))) == len(set(words))


def test_text_of_one_width_hashes_as_it_does_among_other_widths() -> None:
    ids = ["439906198209121842", "439902196505257248", "城关区0", "91439903MA8A855U5C"]
    ids = [i for i in ids if len(i.encode()) == 18] + ["439901200001011234"]
    mixed = pa.array([*ids, "a", ""])  # the per-byte path
    assert _hashes(pa.array(ids)) == _hashes(mixed)[: len(ids)]
    assert _hashes(pa.array(ids[1:3])) == _hashes(pa.array(ids).slice(1, 2))
    assert _hashes(pa.array(["", ""])) == _hashes(pa.array(["", "", "x"]))[:2]


def test_split_keeps_every_non_null_key_row_once_and_equal_keys_together() -> None:
    table = pa.table(
        {
            "k": pa.array([f"k{i % 37}" for i in range(500)] + [None] * 5),
            "row": pa.array(range(505), pa.int64()),
        }
    )
    parts = join.split(table, ["k"], 7)
    assert len(parts) == 7
    rows = sorted(r for part in parts for r in part.column("row").to_pylist())
    assert rows == list(range(500))
    homes = {}
    for i, part in enumerate(parts):
        for k in part.column("k").to_pylist():
            assert homes.setdefault(k, i) == i
        assert part.column("row").to_pylist() == sorted(part.column("row").to_pylist())
    assert sum(1 for part in parts if part.num_rows) > 3, "keys spread over the buckets"


def test_join_tables_drops_null_keys_matches_numbers_across_types_and_keeps_null_columns() -> None:
    left = pa.table(
        {
            "k": pa.array([1, None, 2, 2], pa.int64()),
            "a": [1, 2, 3, 4],
            "__e0": pa.array([10, 11, 12, 13], pa.uint64()),
        }
    )
    right = pa.table(
        {
            "k": pa.array([None, 2.0, 2.0, 5.0]),
            "b": ["x", "y", "z", "w"],
            "nothing": pa.nulls(4),
            "__e1": pa.array([0, 1, 2, 3], pa.uint64()),
        }
    )
    out = join.join_tables(left, right, ["k"])
    # Both sides' people travel with the joined rows.
    assert out.column_names == ["k", "a", "__e0", "b", "__e1", "nothing"]
    got = sorted(zip(*(out.column(c).to_pylist() for c in ("k", "a", "__e0", "b", "__e1"))))
    assert got == [
        (2.0, 3, 12, "y", 1),
        (2.0, 3, 12, "z", 2),
        (2.0, 4, 13, "y", 1),
        (2.0, 4, 13, "z", 2),
    ]
    assert out.column("nothing").null_count == 4


# --- the engine ---------------------------------------------------------------------------


def _dataset(
    root: Path,
    name: str,
    table: pa.Table,
    roles: dict[str, str],
    partition_rows: int,
    level: str = "L2",
) -> DatasetInfo:
    return ingested(
        root,
        name,
        table,
        {c: {"role": r} for c, r in roles.items()},
        level=level,
        partition_rows=partition_rows,
    )


@pytest.fixture(scope="module")
def town(tmp_path_factory: pytest.TempPathFactory) -> dict[str, DatasetInfo]:
    """Ten people (four partitions); jobs: person 0 holds six, person 1 one, an unknown
    person one, a null key one; firms: two of three firms have jobs."""
    root = tmp_path_factory.mktemp("town")
    people = pa.table(
        {
            "pid": [f"p{i}" for i in range(10)],
            "district": ["城关区", "湖滨区"] * 5,
            "income": [float(1000 * i) for i in range(10)],
        }
    )
    jobs = pa.table(
        {
            "pid": ["p0"] * 6 + ["p1", "p99", None],
            "firm": ["f1", "f2", "f1", "f2", "f1", "f3", "f2", "f1", "f1"],
            "pay": [10, 20, 30, 40, 50, 60, 70, 80, 90],
        }
    )
    firms = pa.table({"firm": ["f1", "f2", "f3"], "industry": ["制造业", "金融业", "教育"]})
    ident = {"pid": "identifier"}
    return {
        "people": _dataset(
            root,
            "people",
            people,
            {**ident, "district": "attribute", "income": "attribute"},
            3,
            "L3",
        ),
        "jobs": _dataset(
            root, "jobs", jobs, {**ident, "firm": "identifier", "pay": "attribute"}, 4
        ),
        "firms": _dataset(root, "firms", firms, {"firm": "identifier", "industry": "attribute"}, 2),
    }


class RecordingRunner(join.LocalRunner):
    """The in-process runner, noting which task bodies ran."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    def call(self, fn: Any, *args: Any, returns: int = 1) -> Any:
        self.ran.append(fn.__name__)
        return super().call(fn, *args, returns=returns)


def _town_plan(town: dict[str, DatasetInfo], table: Table, stats: bool = False) -> CheckedPlan:
    checked = check_plan(table._node, town)
    return dataclasses.replace(checked, disclosure_stats=True) if stats else checked


def _people_jobs() -> Table:
    return t("people").join(t("jobs"), on="pid")


def test_a_small_right_side_is_broadcast_once(town: dict[str, DatasetInfo]) -> None:
    runner = RecordingRunner()
    checked = _town_plan(town, _people_jobs().group_by("district").agg(n=count()))
    join.run(checked, runner)
    jobs_parts, people_parts = len(town["jobs"].partitions), len(town["people"].partitions)
    assert (
        runner.ran == ["part_task"] * jobs_parts + ["concat_task"] + ["partial_task"] * people_parts
    )


def test_a_large_right_side_is_hash_partitioned(town: dict[str, DatasetInfo]) -> None:
    runner = RecordingRunner()
    checked = _town_plan(town, _people_jobs().group_by("district").agg(n=count()))
    join.run(checked, runner, broadcast_max_rows=town["jobs"].row_count - 1)
    n_people, n_jobs = len(town["people"].partitions), len(town["jobs"].partitions)
    buckets = max(n_people, n_jobs)
    assert runner.ran == ["split_task"] * (n_people + n_jobs) + ["partial_task"] * buckets


def test_a_right_side_that_joins_is_never_broadcast(town: dict[str, DatasetInfo]) -> None:
    runner = RecordingRunner()
    right = t("jobs").join(t("firms"), on="firm")
    checked = _town_plan(town, t("people").join(right, on="pid").agg(n=count()))
    join.run(checked, runner, broadcast_max_rows=10**9)
    assert "concat_task" in runner.ran  # firms, inside the right side, is broadcast
    assert runner.ran.count("split_task") == len(town["people"].partitions) + len(
        town["jobs"].partitions
    )


@pytest.mark.parametrize("broadcast", [10**9, 0], ids=["broadcast", "partitioned"])
def test_a_chain_of_joins_counts_matches_and_every_dataset_read(
    town: dict[str, DatasetInfo], broadcast: int
) -> None:
    firms = t("firms").select("firm", "industry")
    q = (
        t("jobs")
        .join(t("people").select("pid", "income"), on="pid")
        .join(firms, on="firm")
        .group_by("industry")
        .agg(n=count(), pay=sum_("pay"), income=sum_("income"))
    )
    result = LocalExecutor(broadcast).aggregate(_town_plan(town, q))
    got = {r["industry"]: (r["n"], r["pay"], r["income"]) for r in result.table.to_pylist()}
    # p99 and the null key match no one; p0's six jobs and p1's one remain.
    assert got == {
        "制造业": (3, 10 + 30 + 50, 0.0),
        "金融业": (3, 20 + 40 + 70, 1000.0),
        "教育": (1, 60, 0.0),
    }
    assert result.rows_by_dataset == {"jobs": 9, "people": 10, "firms": 3}
    assert result.rows_scanned == 22


@pytest.mark.parametrize("broadcast", [10**9, 0], ids=["broadcast", "partitioned"])
def test_contributors_of_a_join_are_distinct_primary_rows(
    town: dict[str, DatasetInfo], broadcast: int
) -> None:
    """p0 matches six jobs: a cell of seven joined rows has two contributing people."""
    q = _people_jobs().agg(n=count(), pay=sum_("pay"), k=count_distinct("firm"))
    table = LocalExecutor(broadcast).aggregate(_town_plan(town, q, stats=True)).table
    row = table.to_pylist()[0]
    assert (row["n"], row["pay"], row["k"]) == (7, 10 + 20 + 30 + 40 + 50 + 60 + 70, 3)
    assert (row["__c:n"], row["__c:pay"], row["__c:k"]) == (2, 2, 2)
    contributors = set(BitMap64.deserialize(row[protection.IDS]))
    # People p0 and p1: rows 0 and 1 of the first partition of people.
    assert contributors == {0, 1}


def test_contributors_of_an_aggregate_count_only_rows_with_a_value(tmp_path: Path) -> None:
    people = _dataset(
        tmp_path, "people", pa.table({"pid": ["a", "b", "c"]}), {"pid": "identifier"}, 10
    )
    scores = _dataset(
        tmp_path,
        "scores",
        pa.table({"pid": ["a", "a", "a", "b", "c"], "v": pa.array([1.0, 2.0, 3.0, None, None])}),
        {"pid": "identifier", "v": "attribute"},
        10,
    )
    q = t("people").join(t("scores"), on="pid").agg(n=count(), m=mean("v"))
    checked = dataclasses.replace(
        check_plan(q._node, {"people": people, "scores": scores}), disclosure_stats=True
    )
    row = LocalExecutor().aggregate(checked).table.to_pylist()[0]
    assert (row["n"], row["m"]) == (5, 2.0)
    assert (row["__c:n"], row["__c:m"]) == (3, 1)  # only a has values


def test_a_table_joined_with_itself_is_metered_once(town: dict[str, DatasetInfo]) -> None:
    left = t("people").select("pid", "income")
    right = t("people").derive(d=col("district")).select("pid", "d")
    q = left.join(right, on="pid").group_by("d").agg(n=count(), s=sum_("income"))
    result = LocalExecutor().aggregate(_town_plan(town, q))
    assert {r["d"]: (r["n"], r["s"]) for r in result.table.to_pylist()} == {
        "城关区": (5, 20000.0),
        "湖滨区": (5, 25000.0),
    }
    assert result.rows_by_dataset == {"people": 10}


def test_joined_results_are_the_same_every_run(town: dict[str, DatasetInfo]) -> None:
    q = _people_jobs().group_by("district").agg(m=mean("income"), p=sum_("pay"))
    checked = _town_plan(town, q, stats=True)
    first = LocalExecutor(0).aggregate(checked).table
    assert all(LocalExecutor(0).aggregate(checked).table.equals(first) for _ in range(5))


def test_ray_runs_a_join_the_way_the_loop_does(
    town: dict[str, DatasetInfo], ray_local: None
) -> None:
    q = (
        t("jobs")
        .join(t("people").select("pid", "district"), on="pid")
        .join(t("firms"), on="firm")
        .group_by("district", "industry")
        .agg(n=count())
    )
    checked = _town_plan(town, q, stats=True)
    local = LocalExecutor().aggregate(checked)
    for broadcast in (10**9, 0):
        remote = RayExecutor(broadcast, in_place_max_rows=0).aggregate(checked)
        assert remote.table.drop_columns([protection.IDS]).equals(
            local.table.drop_columns([protection.IDS])
        )
        assert remote.rows_by_dataset == local.rows_by_dataset


# --- the driver ---------------------------------------------------------------------------

JOINED_COUNT = (
    "j = table('jobs').join(table('people').select('pid'), on='pid')\n"
    "emit('joined', j.agg(n=count()).collect())\n"
)
TOWN_GRANTS = {
    "jobs": {"pid": ["join"], "firm": ["join"], "pay": ["aggregate"]},
    "people": {"pid": ["join"], "district": ["group_by"]},
    "firms": {"firm": ["join"], "industry": ["group_by"]},
}


def _contract(**terms: Any) -> ContractDocument:
    return ContractDocument(
        id="c-1",
        version=1,
        operator_id="op-1",
        datasets=TOWN_GRANTS,
        purpose="就业结构分析",
        purpose_class="commercial",
        valid_from="2026-01-01T00:00:00Z",
        valid_to="2030-01-01T00:00:00Z",
        quotas={},
        spend_cap=None,
        issued_at="2026-01-01T00:00:00Z",
        **terms,
    )


def _spec(town: dict[str, DatasetInfo], code: str, **changes: Any) -> JobSpec:
    base = JobSpec(
        job_id="j-1",
        code=code,
        params={},
        contract=_contract(),
        datasets=town,
        thresholds={"L1": 1, "L2": 5, "L3": 10},
        limits=Limits(cpu_seconds=5, memory_bytes=512 * 2**20, wall_seconds=10.0),
        max_rows=100,
        max_outputs=3,
    )
    return dataclasses.replace(base, **changes)


def test_a_joined_cell_needs_the_strictest_threshold_and_is_metered_per_dataset(
    town: dict[str, DatasetInfo],
) -> None:
    code = JOINED_COUNT + "emit('alone', table('jobs').agg(p=sum('pay')).collect())\n"
    result = run_job(_spec(town, code), LocalExecutor())
    assert result.status == "succeeded", result.error
    # Seven job rows matched a person: two people, too few for people (L3, 10) and for jobs.
    assert result.outputs["joined"]["rows"] == [[None]]
    joined, alone = result.disclosure["releases"]
    assert joined["dataset"] == "jobs" and joined["joined"] == ["people"]
    assert [(c["rule"], c["threshold"], c["contributors"]) for c in joined["suppressed"]] == [
        ("min_contributors", 10, 2)
    ]
    # Nine jobs, but held by four people (p0 six, p1, p99 and an unnamed one): thresholds
    # count people, so L2's 5 is not reached.
    assert result.outputs["alone"]["rows"] == [[None]]
    assert "joined" not in alone
    assert [(c["rule"], c["contributors"]) for c in alone["suppressed"]] == [
        ("min_contributors", 4)
    ]
    assert result.usage["rows_by_dataset"] == {"jobs": 9 + 9, "people": 10}
    assert result.usage["rows_by_level"] == {"L2": 18, "L3": 10}


def test_a_join_beyond_the_quoted_rows_is_refused_naming_the_datasets(
    town: dict[str, DatasetInfo],
) -> None:
    result = run_job(_spec(town, JOINED_COUNT, max_rows=9 + 10 - 1), LocalExecutor())
    assert result.status == "rejected"
    assert result.error.code == "quota_exceeded"
    assert "19 more rows of 'jobs', 'people'" in result.error.message
    assert result.usage["rows_scanned"] == 0


def test_a_join_with_a_differentially_private_dataset_is_refused(
    town: dict[str, DatasetInfo],
) -> None:
    contract = _contract(privacy={"people": {"epsilon": "1", "per_job_epsilon": "0.5"}})
    result = run_job(
        _spec(town, JOINED_COUNT, contract=contract, epsilon={"people": "0.5"}), LocalExecutor()
    )
    assert result.status == "rejected"
    assert result.error.code == "disclosure_refused"
    message = result.error.message
    assert "'people'" in message and "differential privacy" in message and "join()" in message
    assert result.usage["rows_scanned"] == 0


def test_a_join_key_not_granted_for_join_is_out_of_scope(town: dict[str, DatasetInfo]) -> None:
    grants = {**TOWN_GRANTS, "people": {"pid": ["filter"]}}
    contract = dataclasses.replace(_contract(), datasets=grants)
    result = run_job(_spec(town, JOINED_COUNT, contract=contract), LocalExecutor())
    assert result.status == "rejected"
    assert result.error.code == "contract_scope"
    assert "'pid'" in result.error.message and "join" in result.error.message


def test_join_tables_gives_the_same_rows_and_columns_whichever_side_is_larger() -> None:
    small = pa.table({"a": [1, 2], "k": ["x", "y"]})
    large = pa.table({"k": ["y", "x", "x", "z"], "b": [10, 20, 30, 40]})
    one, other = join.join_tables(small, large, ["k"]), join.join_tables(large, small, ["k"])
    assert one.column_names == ["a", "k", "b"] and other.column_names == ["k", "b", "a"]
    assert sorted(one.to_pylist(), key=str) == sorted(other.to_pylist(), key=str)
    assert sorted((r["a"], r["b"]) for r in one.to_pylist()) == [(1, 20), (1, 30), (2, 10)]


# --- lookups on a unique right key ------------------------------------------------------------


class _Planning:
    """A runner that only plans: tasks are not run, their handles are placeholders."""

    def put(self, value: Any) -> Any:
        return value

    def call(self, fn: Any, *args: Any, returns: int = 1) -> Any:
        return None if returns == 1 else [None] * returns

    def get(self, handles: list[Any]) -> list[Any]:
        return handles


def _joins_of(checked: CheckedPlan) -> list[join.JoinPieces]:
    planner = join.Planner(checked, _Planning())
    found: list[join.JoinPieces] = []

    def walk(piece: Any) -> None:
        if isinstance(piece, join.JoinPieces):
            found.append(piece)
            walk(piece.left)
        elif isinstance(piece, join.Steps):
            walk(piece.base)

    for part in planner.parts(checked.plan.input):
        walk(part.piece)
    return found


def _unique_catalog() -> dict[str, DatasetInfo]:
    def unique_id(ds: DatasetInfo, name: str) -> DatasetInfo:
        return dataclasses.replace(
            ds,
            columns=tuple(
                dataclasses.replace(c, unique=True) if c.name == name else c for c in ds.columns
            ),
            partitions=("part-0.parquet",),
        )

    return {
        "people": unique_id(PEOPLE, "resident_id"),
        "firms": unique_id(FIRMS, "credit_code"),
        "insured": dataclasses.replace(INSURED, partitions=("part-0.parquet",)),
    }


def test_a_right_side_keyed_by_a_unique_identifier_is_looked_up() -> None:
    plan = q3().group_by("industry").agg(n=count())._node
    looked_up = [j.unique_right for j in _joins_of(check_plan(plan, _unique_catalog()))]
    assert looked_up == [True, True]  # firms by credit_code, and people by resident_id
    # Without the catalog's word, or when the key is computed, it is a general hash join.
    assert [
        j.unique_right
        for j in _joins_of(
            check_plan(
                plan,
                {
                    n: dataclasses.replace(d, partitions=("part-0.parquet",))
                    for n, d in CATALOG.items()
                },
            )
        )
    ] == [False, False]


def test_a_lookup_join_keeps_sql_semantics() -> None:
    left = pa.table(
        {
            "k": pa.array([1, None, 2, 3, 1], pa.int64()),
            "v": [10, 20, 30, 40, 50],
            protection.entity(0): pa.array([0, 1, 2, 3, 4], pa.uint64()),
        }
    )
    right = pa.table({"k": pa.array([1, 3, None, 9], pa.int32()), "w": ["a", "c", "n", "z"]})
    looked = join.join_tables(left, right, ["k"], unique_right=True)
    hashed = join.join_tables(left, right, ["k"])
    assert looked.column_names == hashed.column_names == ["k", "v", protection.entity(0), "w"]
    assert looked.to_pylist() == [
        {"k": 1, "v": 10, protection.entity(0): 0, "w": "a"},
        {"k": 3, "v": 40, protection.entity(0): 3, "w": "c"},
        {"k": 1, "v": 50, protection.entity(0): 4, "w": "a"},
    ]
    assert sorted(looked.to_pylist(), key=str) == sorted(hashed.to_pylist(), key=str)


def test_a_lookup_whose_right_keys_repeat_fails_loudly_instead_of_dropping_rows() -> None:
    left = pa.table({"k": pa.array(["a", "b"]), "v": [1, 2]})
    right = pa.table({"k": pa.array(["a", "a"]), "w": [10, 20]})
    with pytest.raises(AssertionError, match="not unique"):
        join._vectorised_lookup(left, right, "k", keep_unmatched=False)


@pytest.mark.parametrize("vectorised", [False, True])
def test_a_lookup_where_every_key_is_found_keeps_every_left_row_in_order(vectorised: bool) -> None:
    left = pa.table({"k": pa.array(["b", "a", "b", "c"]), "v": [1, 2, 3, 4]})
    right = pa.table({"k": pa.array(["c", "a", "b", "z"]), "w": [30, 10, 20, 99]})
    with lookups(vectorised):
        inner = join.join_tables(left, right, ["k"], unique_right=True)
        outer = join.join_tables(left, right, ["k"], unique_right=True, how="left")
    expected = [("b", 1, 20), ("a", 2, 10), ("b", 3, 20), ("c", 4, 30)]
    for joined in (inner, outer):
        assert list(zip(*(joined.column(c).to_pylist() for c in ("k", "v", "w")))) == expected


# --- joins cut and matched by entity numbers ----------------------------------------------

E0, E1 = protection.entity(0), protection.entity(1)


def test_a_lookup_by_numbers_still_compares_the_keys_of_the_pairs_it_finds() -> None:
    """Two values whose hashes collide share a number: "b" and "x" below. The pair the number
    finds is compared by key and dropped; an inner join loses the row, a left one keeps it."""
    left = pa.table(
        {"k": ["a", "b", "c", None], "v": [1, 2, 3, 4], E0: pa.array([5, 7, 9, 11], pa.uint64())}
    )
    right = pa.table(
        {"k": ["a", "x", "c"], "w": [10, 20, 30], E1: pa.array([5, 7, 9], pa.uint64())}
    )
    inner = join.join_tables(left, right, ["k"], unique_right=True, entities=(E0, E1))
    assert [(r["k"], r["w"]) for r in inner.to_pylist()] == [("a", 10), ("c", 30)]
    outer = join.join_tables(left, right, ["k"], True, "left", entities=(E0, E1))
    assert [(r["k"], r["w"]) for r in outer.to_pylist()] == [
        ("a", 10),
        ("b", None),
        ("c", 30),
        (None, None),
    ]


def test_right_rows_sharing_a_number_are_matched_by_their_keys_instead() -> None:
    left = pa.table({"k": ["a", "b"], "v": [1, 2], E0: pa.array([3, 3], pa.uint64())})
    right = pa.table({"k": ["b", "a"], "w": [20, 10], E1: pa.array([3, 3], pa.uint64())})
    joined = join.join_tables(left, right, ["k"], unique_right=True, entities=(E0, E1))
    assert [(r["k"], r["w"]) for r in joined.to_pylist()] == [("a", 10), ("b", 20)]


def test_numbers_sparse_over_their_range_are_matched_by_their_keys_instead() -> None:
    """An array over 0…10¹² would not fit: the keys are matched as they would be without."""
    left = pa.table({"k": ["a", "b"], E0: pa.array([0, 10**12], pa.uint64())})
    right = pa.table({"k": ["b", "a"], "w": [2, 1], E1: pa.array([10**12, 0], pa.uint64())})
    assert join._entity_matches(left, right, "k", (E0, E1)) is None
    joined = join.join_tables(left, right, ["k"], unique_right=True, entities=(E0, E1))
    assert [(r["k"], r["w"]) for r in joined.to_pylist()] == [("a", 1), ("b", 2)]


def test_a_split_by_numbers_sends_each_row_to_the_range_holding_it() -> None:
    table = pa.table({"v": list(range(7)), E0: pa.array([0, 15, 3, 40, 10, 20, 99], pa.uint64())})
    # Partition 1 is empty; 2 holds 10–20, 0 holds 0–5, 3 holds 30–40; 99 is in none.
    bounds = ((0, 5), (1, 0), (10, 20), (30, 40))
    parts = join.split_by_entity(table, E0, bounds, keep_unmatched=False)
    assert [part.column("v").to_pylist() for part in parts] == [[0, 2], [], [1, 4, 5], [3]]
    kept = join.split_by_entity(table, E0, bounds, keep_unmatched=True)
    assert [part.column("v").to_pylist() for part in kept] == [[0, 2, 6], [], [1, 4, 5], [3]]


def _jobs_people() -> Table:
    return t("jobs").join(t("people").select("pid", "income", "district"), on="pid")


def test_a_join_on_the_identifier_both_sides_were_numbered_by_is_cut_by_numbers(
    town: dict[str, DatasetInfo], monkeypatch: pytest.MonkeyPatch
) -> None:
    """People were ingested in one pass (apart ranges): each task reads one partition of
    people where it lies, and only the jobs move; the answer is the hash join's."""
    q = _jobs_people().group_by("district").agg(n=count(), s=sum_("income"), p=sum_("pay"))
    checked = _town_plan(town, q, stats=True)
    runner = RecordingRunner()
    by_numbers = join.run(checked, runner, broadcast_max_rows=0)
    n_jobs, n_people = len(town["jobs"].partitions), len(town["people"].partitions)
    assert runner.ran == ["entity_split_task"] * n_jobs + ["partial_task"] * n_people
    monkeypatch.setattr(join.Planner, "_entity_bounds", lambda self, *args: None)
    runner = RecordingRunner()
    by_hash = join.run(checked, runner, broadcast_max_rows=0)
    assert "entity_split_task" not in runner.ran
    merged = [compute.merge_all(checked, r.partials)[0] for r in (by_numbers, by_hash)]
    assert by_numbers.rows_by_dataset == by_hash.rows_by_dataset == {"jobs": 9, "people": 10}
    assert sorted(merged[0].to_pylist(), key=str) == sorted(merged[1].to_pylist(), key=str)


def test_joins_not_on_the_numbering_identifier_are_cut_by_key_hashes(
    town: dict[str, DatasetInfo],
) -> None:
    runner = RecordingRunner()
    # firm is the jobs' second identifier: their people were numbered by pid.
    q = t("jobs").join(t("firms"), on="firm").agg(n=count())
    join.run(_town_plan(town, q, stats=True), runner, broadcast_max_rows=0)
    assert "entity_split_task" not in runner.ran and "split_task" in runner.ran
    # Without the disclosure statistics the numbers are not read.
    runner = RecordingRunner()
    join.run(_town_plan(town, _jobs_people().agg(n=count())), runner, broadcast_max_rows=0)
    assert "entity_split_task" not in runner.ran
    # A left key redefined by a derive (the numbers were the old key's): by key hashes, and
    # the firms' codes match no one.
    runner = RecordingRunner()
    q = t("jobs").derive(pid=col("firm")).join(t("people").select("pid"), on="pid").agg(n=count())
    result = join.run(_town_plan(town, q, stats=True), runner, broadcast_max_rows=0)
    assert "entity_split_task" not in runner.ran
    assert sum(partial.num_rows for partial in result.partials) == 0


def test_overlapping_ranges_of_numbers_are_cut_by_key_hashes(tmp_path: Path) -> None:
    """People added in two passes whose numbers interleave (the second pass met some of them
    before, in another dataset): the ranges overlap, so the key hashes cut the join."""
    first = _dataset(tmp_path, "visits", pa.table({"pid": ["b", "d"]}), {"pid": "identifier"}, 10)
    people = _dataset(
        tmp_path,
        "people",
        pa.table({"pid": ["a", "b", "c", "d"], "income": [1.0, 2.0, 3.0, 4.0]}),
        {"pid": "identifier", "income": "attribute"},
        2,
    )
    catalog = {"visits": first, "people": people}
    checked = dataclasses.replace(
        check_plan(t("visits").join(t("people"), on="pid").agg(s=sum_("income"))._node, catalog),
        disclosure_stats=True,
    )
    runner = RecordingRunner()
    result = join.run(checked, runner, broadcast_max_rows=0)
    assert "entity_split_task" not in runner.ran
    assert compute.merge_all(checked, result.partials)[0].column("s").to_pylist() == [6.0]


# --- final tasks grouped per slot ---------------------------------------------------------


class SlottedRunner(RecordingRunner):
    def __init__(self, slots: int) -> None:
        super().__init__()
        self.slots = slots


@pytest.mark.parametrize("slots", [0, 1, 3, 4, 100])
def test_partitions_beyond_the_slots_are_read_in_one_task_per_slot(
    town: dict[str, DatasetInfo], slots: int
) -> None:
    """People has four partitions: with fewer slots, each slot's task reads consecutive
    partitions, the shares differing by one at most; the partials and rows are the same."""
    q = t("people").group_by("district").agg(n=count(), s=sum_("income"))
    checked = _town_plan(town, q, stats=True)
    plain = join.run(checked, RecordingRunner())
    runner = SlottedRunner(slots)
    grouped = join.run(checked, runner)
    n = len(town["people"].partitions)
    assert n == 4
    if 0 < slots < n:
        # A slot's one partition is a task of its own, as without slots.
        assert len(runner.ran) == slots and runner.ran[0] == "partials_task"
    else:
        assert runner.ran == ["partial_task"] * n
    assert [p.to_pylist() for p in grouped.partials] == [p.to_pylist() for p in plain.partials]
    assert grouped.rows_by_dataset == plain.rows_by_dataset == {"people": 10}


def test_parts_with_inputs_are_never_grouped(town: dict[str, DatasetInfo]) -> None:
    runner = SlottedRunner(1)
    join.run(_town_plan(town, _people_jobs().agg(n=count())), runner)
    assert "partials_task" not in runner.ran


def test_groups_of_parts_are_consecutive_and_even() -> None:
    parts = [join.Part(join.Read(0, i)) for i in range(10)]
    sizes = [[part.piece.index for part in g] for g in join.batches(parts, 3)]  # type: ignore[union-attr]
    assert sizes == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]


@pytest.mark.parametrize("how", ["inner", "left"])
def test_a_right_side_of_one_person_gives_the_gate_the_same_statistics_cut_by_numbers(
    town: dict[str, DatasetInfo], monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """The attack shape of a left join (everyone, and one person's income beside her row)
    with nothing derived, so that the cut by entity numbers takes it: every statistic the
    release gate reads (each cell's people per read, contributors, who matched, the largest
    contributions) is what the hash join gives, so the gate decides the same."""
    her = t("people").filter(col("income") == 3000.0).select("pid", "income")
    q = (
        t("people")
        .select("pid", "district")
        .join(her, on="pid", how=how)
        .group_by("district")
        .agg(n=count(), s=sum_("income"), m=mean("income"))
    )
    checked = _town_plan(town, q, stats=True)
    runner = RecordingRunner()
    by_numbers = join.run(checked, runner, broadcast_max_rows=0)
    assert "entity_split_task" in runner.ran
    monkeypatch.setattr(join.Planner, "_entity_bounds", lambda self, *args: None)
    by_hash = join.run(checked, RecordingRunner(), broadcast_max_rows=0)
    tables = [compute.merge_all(checked, r.partials)[0] for r in (by_numbers, by_hash)]
    assert [c for c in tables[0].column_names if c.startswith("__")]  # the statistics
    rows = [sorted(table.to_pylist(), key=lambda r: r["district"]) for table in tables]
    assert rows[0] == rows[1]
    assert sum(r["s"] or 0 for r in rows[0]) == 3000.0
