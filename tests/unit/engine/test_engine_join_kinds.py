"""Left and anti joins: validation (schemas, refusals, what counts for a cell), the engine
(broadcast and partitioned, null keys) and the disclosure statistics of unmatched rows."""

from __future__ import annotations

import dataclasses
from typing import Any

import pyarrow as pa
import pytest
from factories import ingested
from plans import NoChannel
from pyroaring import BitMap64

from sandbox.catalog.models import DatasetInfo
from sandbox.engine import join, protection
from sandbox.engine.executor import LocalExecutor
from sandbox.engine.validate import CheckedPlan, check_plan
from sandbox.errors import DisclosureRefused, PlanError
from sandbox.language import plan as p
from sandbox.language.api import Table, case, col, count, count_distinct, lit, mean, sum_
from sandbox.pipeline import driver

PIDS = [f"p{i:02d}" for i in range(12)]


def t(name: str) -> Table:
    return Table(p.Scan(name), NoChannel())


@pytest.fixture(scope="module")
def town(tmp_path_factory: pytest.TempPathFactory) -> dict[str, DatasetInfo]:
    """Twelve people (four partitions, one with a null id); scores: one row each for p00,
    p01, p02 (p02's value null) and an unknown person; visits: p00 three times, p01 once.
    (A null id makes a column not unique: only the left side of a left join has one.)"""
    root = tmp_path_factory.mktemp("kinds")
    people = pa.table(
        {
            "pid": [*PIDS[:11], None],
            "district": ["城关区", "湖滨区"] * 6,
            "income": [float(1000 * i) for i in range(12)],
        }
    )
    scores = pa.table(
        {
            "pid": ["p00", "p01", "p02", "p99"],
            "v": pa.array([1.0, 2.0, None, 5.0]),
            "tier": ["a", "b", "a", "c"],
        }
    )
    visits = pa.table({"pid": ["p00", "p00", "p01", "p00"], "day": [1, 2, 3, 4]})
    ident = {"pid": "identifier"}
    return {
        "people": ingested(
            root,
            "people",
            people,
            {
                "pid": {"role": "identifier"},
                "district": {"role": "attribute"},
                "income": {"role": "attribute"},
            },
            level="L3",
            partition_rows=3,
        ),
        "scores": ingested(
            root,
            "scores",
            scores,
            {
                **{k: {"role": r} for k, r in ident.items()},
                "v": {"role": "attribute"},
                "tier": {"role": "attribute"},
            },
            level="L2",
            partition_rows=2,
        ),
        "visits": ingested(
            root,
            "visits",
            visits,
            {"pid": {"role": "identifier"}, "day": {"role": "attribute"}},
            level="L2",
            partition_rows=2,
        ),
    }


def _checked(town: dict[str, DatasetInfo], table: Table, stats: bool = False) -> CheckedPlan:
    checked = check_plan(table._node, town)
    return dataclasses.replace(checked, disclosure_stats=True) if stats else checked


def _rows(
    town: dict[str, DatasetInfo], table: Table, broadcast: int, stats: bool = False
) -> list[dict[str, Any]]:
    result = LocalExecutor(broadcast).aggregate(_checked(town, table, stats))
    return sorted(result.table.to_pylist(), key=lambda r: str(list(r.values())[:1]))


STRATEGIES = pytest.mark.parametrize("broadcast", [10**9, 0], ids=["broadcast", "partitioned"])


# --- validation ---------------------------------------------------------------------------


def test_the_catalog_records_the_ids_of_scores_alone_as_unique(
    town: dict[str, DatasetInfo],
) -> None:
    unique = {n: c.unique for n in town if (c := town[n].column("pid")) is not None}
    assert unique == {"people": False, "scores": True, "visits": False}


def test_an_anti_join_has_the_left_columns_alone(town: dict[str, DatasetInfo]) -> None:
    anti = t("people").join(t("scores"), on="pid", how="anti")
    checked = _checked(town, anti.group_by("district").agg(n=count(), s=sum_("income")))
    assert checked.output_kinds == (("district", "string"), ("n", "int"), ("s", "float"))
    with pytest.raises(PlanError, match="no column 'v'"):
        _checked(town, anti.agg(s=sum_("v")))


def test_the_right_key_of_left_and_anti_joins_is_a_join_use(town: dict[str, DatasetInfo]) -> None:
    for how in ("left", "anti"):
        q = t("people").join(t("scores").select("pid"), on="pid", how=how).agg(n=count())
        assert _checked(town, q).usage["scores"] == {"pid": frozenset({"join"})}


def test_a_left_join_keeps_the_right_columns(town: dict[str, DatasetInfo]) -> None:
    q = t("people").join(t("scores"), on="pid", how="left").group_by("tier").agg(m=mean("v"))
    assert _checked(town, q).output_kinds == (("tier", "string"), ("m", "float"))


def test_a_left_join_onto_many_rows_per_key_is_refused(town: dict[str, DatasetInfo]) -> None:
    with pytest.raises(DisclosureRefused, match="at most once"):
        _checked(town, t("people").join(t("visits"), on="pid", how="left").agg(n=count()))
    # The right side may be filtered, derived and selected, not joined.
    ok = t("scores").filter(col("v") > 0).derive(w=col("v") * 2).select("pid", "w")
    _checked(town, t("people").join(ok, on="pid", how="left").agg(n=count()))
    joined = t("scores").join(t("people").select("pid", "district"), on="pid")
    with pytest.raises(DisclosureRefused, match="at most once"):
        _checked(town, t("visits").join(joined, on="pid", how="left").agg(n=count()))
    # An anti join repeats nothing: many rows per key are fine.
    _checked(town, t("people").join(t("visits"), on="pid", how="anti").agg(n=count()))


@pytest.mark.parametrize("how", ["left", "anti"])
def test_a_key_made_of_literals_is_refused_for_every_kind(
    town: dict[str, DatasetInfo], how: str
) -> None:
    right = t("scores").derive(k=lit(1)).select("k", "v")
    with pytest.raises(DisclosureRefused, match="not computed from any column"):
        _checked(town, t("people").derive(k=lit(1)).join(right, on="k", how=how).agg(n=count()))


def test_many_to_many_is_noted_for_every_kind(town: dict[str, DatasetInfo]) -> None:
    left = t("visits").derive(d=col("day")).select("pid", "d")
    q = left.join(t("visits").select("pid"), on="pid", how="anti").agg(n=count())
    assert _checked(town, q).many_to_many == (("pid",),)


def test_only_aggregates_of_right_columns_count_matched_rows_alone(
    town: dict[str, DatasetInfo],
) -> None:
    padded = case((col("v").is_null(), 0.0), default=col("v"))
    q = (
        t("people")
        .join(t("scores").select("pid", "v"), on="pid", how="left")
        .derive(w=padded)
        .agg(n=count(), s=sum_("income"), m=mean("v"), w=sum_("w"))
    )
    checked = _checked(town, q)
    assert checked.matched_only == (frozenset(), frozenset(), frozenset({1}), frozenset({1}))
    assert checked.unmatched == ((1, 0),)


def test_a_literal_of_the_right_side_is_null_where_nothing_matched(
    town: dict[str, DatasetInfo],
) -> None:
    """A right-side column made of a literal still tells who matched."""
    right = t("scores").derive(m=lit(1)).select("pid", "m")
    flag = case((col("m").is_null(), 0), default=1)
    q = (
        t("people")
        .join(right, on="pid", how="left")
        .derive(flag=flag)
        .agg(f=sum_("flag"), k=count_distinct("pid"))
    )
    # The key is the left's own: counting it does not depend on who matched.
    assert _checked(town, q).matched_only == (frozenset({1}), frozenset())


def test_an_inner_join_counts_as_before(town: dict[str, DatasetInfo]) -> None:
    q = t("people").join(t("scores"), on="pid").agg(s=sum_("v"))
    checked = _checked(town, q)
    assert (checked.matched_only, checked.unmatched) == ((frozenset(),), ())


# --- the engine ---------------------------------------------------------------------------


def test_join_tables_left_keeps_unmatched_and_null_key_rows() -> None:
    left = pa.table({"k": pa.array([1, None, 2, 3], pa.int64()), "a": [10, 20, 30, 40]})
    right = pa.table({"k": pa.array([1, 3, None], pa.int32()), "b": ["x", "z", "n"]})
    for unique in (False, True):
        got = join.join_tables(left, right, ["k"], unique, "left")
        assert got.column_names == ["k", "a", "b"]
        assert sorted(got.to_pylist(), key=lambda r: r["a"]) == [
            {"k": 1, "a": 10, "b": "x"},
            {"k": None, "a": 20, "b": None},
            {"k": 2, "a": 30, "b": None},
            {"k": 3, "a": 40, "b": "z"},
        ]


def test_join_tables_left_is_the_same_whichever_side_is_larger() -> None:
    small = pa.table({"k": ["x", None], "a": [1, 2]})
    large = pa.table({"k": ["y", "x", "z", None], "b": [10, 20, 30, 40]})
    got = join.join_tables(small, large, ["k"], how="left")
    assert got.column_names == ["k", "a", "b"]
    assert sorted(got.to_pylist(), key=lambda r: r["a"]) == [
        {"k": "x", "a": 1, "b": 20},
        {"k": None, "a": 2, "b": None},
    ]


@pytest.mark.parametrize("keys", [["k"], ["k", "j"]])
def test_join_tables_anti_keeps_the_unmatched_left_rows_and_columns(keys: list[str]) -> None:
    left = pa.table(
        {"k": [1, None, 2, 3, 1], "j": ["a", "a", "a", None, "b"], "a": [1, 2, 3, 4, 5]}
    )
    right = pa.table({"k": [1, 3, None], "j": ["a", None, "a"], "b": [7, 8, 9]})
    got = join.join_tables(left, right, keys, how="anti")
    assert got.column_names == ["k", "j", "a"]
    # A null in any key matches nothing, and keeps its row.
    assert got.column("a").to_pylist() == ([2, 3] if len(keys) == 1 else [2, 3, 4, 5])


def test_split_keeps_null_key_rows_in_the_first_part_when_asked() -> None:
    table = pa.table({"k": ["a", None, "b", None, "c"]})
    kept = join.split(table, ["k"], 3, keep_null_keys=True)
    assert sum(part.num_rows for part in kept) == 5
    assert kept[0].column("k").null_count == 2
    assert sum(part.num_rows for part in join.split(table, ["k"], 3)) == 3


@STRATEGIES
def test_a_left_join_keeps_every_left_row(town: dict[str, DatasetInfo], broadcast: int) -> None:
    q = (
        t("people")
        .join(t("scores"), on="pid", how="left")
        .group_by("district")
        .agg(n=count(), s=sum_("v"), k=count_distinct("tier"))
    )
    got = {r["district"]: (r["n"], r["s"], r["k"]) for r in _rows(town, q, broadcast)}
    # p00 (城关区) has 1.0, p01 (湖滨区) 2.0, p02 (城关区) a null value; the null id nothing.
    assert got == {"城关区": (6, 1.0, 1), "湖滨区": (6, 2.0, 1)}


@STRATEGIES
def test_an_anti_join_keeps_the_left_rows_without_a_match(
    town: dict[str, DatasetInfo], broadcast: int
) -> None:
    q = t("people").join(t("scores"), on="pid", how="anti").agg(n=count(), s=sum_("income"))
    (row,) = _rows(town, q, broadcast)
    # p00, p01, p02 match; the null id matches nothing and stays.
    assert (row["n"], row["s"]) == (9, float(sum(1000 * i for i in range(3, 12))))
    q = t("visits").join(t("people"), on="pid", how="anti").agg(n=count())
    assert _rows(town, q, broadcast)[0]["n"] == 0


@STRATEGIES
def test_a_chain_of_left_and_anti_joins(town: dict[str, DatasetInfo], broadcast: int) -> None:
    q = (
        t("people")
        .join(t("scores").select("pid", "tier"), on="pid", how="left")
        .join(t("visits").select("pid"), on="pid", how="anti")
        .group_by("tier")
        .agg(n=count())
    )
    got = {r["tier"]: r["n"] for r in _rows(town, q, broadcast)}
    # p00 and p01 visited; p02 (tier a) did not; nine people have no score.
    assert got == {"a": 1, None: 9}


# --- who counts ---------------------------------------------------------------------------


@STRATEGIES
def test_left_join_cells_count_left_people_and_right_values_only_where_matched(
    town: dict[str, DatasetInfo], broadcast: int
) -> None:
    one = t("scores").filter(col("pid") == "p00").select("pid", "v")
    padded = case((col("v").is_null(), 0.0), default=col("v"))
    q = (
        t("people")
        .join(one, on="pid", how="left")
        .derive(w=padded, flag=case((col("v").is_null(), 0), default=1))
        .agg(n=count(), s=sum_("income"), v=sum_("v"), w=sum_("w"), f=sum_("flag"))
    )
    (row,) = _rows(town, q, broadcast, stats=True)
    assert (row["n"], row["v"], row["w"], row["f"]) == (12, 1.0, 1.0, 1)
    # Everyone counts for what does not depend on the right side; for the rest, the one
    # person who matched, however the unmatched rows were padded.
    assert (row["__c:n"], row["__c:s"]) == (12, 12)
    assert (row["__c:v"], row["__c:w"], row["__c:f"]) == (1, 1, 1)
    # The right side's people: the match, and everyone else standing in for themselves.
    left_people = BitMap64.deserialize(row[protection.ids(0)])
    assert len(BitMap64.deserialize(row[protection.ids(1)])) == len(left_people) == 12


@STRATEGIES
def test_anti_join_cells_count_the_left_people(
    town: dict[str, DatasetInfo], broadcast: int
) -> None:
    one = t("scores").filter(col("pid") == "p00").select("pid")
    q = t("people").join(one, on="pid", how="anti").agg(n=count(), s=sum_("income"))
    (row,) = _rows(town, q, broadcast, stats=True)
    assert (row["n"], row["__c:n"], row["__c:s"]) == (11, 11, 11)
    assert row[protection.ids(1)] == row[protection.ids(0)]


def test_entities_of_unmatched_rows_are_their_left_rows() -> None:
    table = pa.table(
        {
            protection.entity(0): pa.array([5, 6, 7], pa.uint64()),
            protection.entity(1): pa.array([9, None, None], pa.uint64()),
        }
    )
    assert protection.entities_of(table, 1, {1: 0}).tolist() == [9, 6, 7]
    assert protection.entities_of(table, 2, {2: 0}).tolist() == [5, 6, 7]
    assert protection.matched(table, 1).tolist() == [True, False, False]
    assert protection.matched(table, 2).tolist() == [False, False, False]


def test_cells_of_right_columns_carry_the_people_who_matched_for_the_audit(
    town: dict[str, DatasetInfo],
) -> None:
    right = t("scores").filter(col("v") > 0).derive(m=lit(1)).select("pid", "m")
    q = t("people").join(right, on="pid", how="left").agg(n=count(), f=sum_("m"))
    (row,) = _rows(town, q, 10**9, stats=True)
    assert row["f"] == 2  # p00 and p01; p99 matches no one
    assert len(BitMap64.deserialize(row[protection.matched_set(1, "f")])) == 2
    assert protection.matched_set(1, "n") not in row


def test_detection_sees_how_many_matched_a_left_join(town: dict[str, DatasetInfo]) -> None:
    """The regulator's detection counts the people each read selected: for a left join's
    right side, those who matched, not everyone standing in for themselves."""
    one = t("scores").filter(col("pid") == "p00").select("pid", "v")
    q = t("people").join(one, on="pid", how="left").agg(n=count(), s=sum_("v"))
    table = LocalExecutor().aggregate(_checked(town, q, stats=True)).table
    assert [driver._selected(table, j) for j in (0, 1)] == [12, 1]
    only_count = t("people").join(one, on="pid", how="left").agg(n=count())
    table = LocalExecutor().aggregate(_checked(town, only_count, stats=True)).table
    assert [driver._selected(table, j) for j in (0, 1)] == [12, 12]
