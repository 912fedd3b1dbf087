"""Joins on the identifier that numbered both sides' people are cut by the right side's
partitions' ranges of entity numbers and matched on the numbers (engine.join): random people
and random rows about them, ingested as the catalog ingests, joined inner and left, equal
DuckDB's SQL over the same Parquet partitions. The right side ingested first has apart ranges
(the cut by numbers is taken); ingested second it may not (the key hashes are used): both
must give SQL's answer."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from factories import ingested
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plans import NoChannel, same_cell

from sandbox.catalog.models import DatasetInfo
from sandbox.engine import join
from sandbox.engine.executor import Executor, LocalExecutor, RayExecutor
from sandbox.engine.validate import CheckedPlan, check_plan
from sandbox.language import plan as p
from sandbox.language.api import Table, col, count, mean, sum_

PEOPLE = ["城关区-001", "城关区-002", "湖滨区-1", "a", "b", "", "Z", "很长的一个身份号码" * 3]

person = st.fixed_dictionaries(
    {
        "district": st.sampled_from(["北", "南"]),
        "income": st.integers(0, 40).map(lambda i: i / 4),
    }
)
record = st.fixed_dictionaries(
    {
        "pid": st.none() | st.sampled_from(PEOPLE + ["nobody"]),
        "kind": st.sampled_from(["甲", "乙"]),
        "amount": st.none() | st.integers(-20, 20),
    }
)


def _people(draw_rows: list[dict[str, Any]], ids: list[str]) -> pa.Table:
    return pa.table(
        {
            "pid": ids,
            "district": [r["district"] for r in draw_rows],
            "income": [r["income"] for r in draw_rows],
        }
    )


def _plan(how: str, keyed: bool, filtered: bool) -> tuple[Table, list[str], str]:
    records = Table(p.Scan("records"), NoChannel())
    people = Table(p.Scan("people"), NoChannel())
    if filtered:
        people = people.filter(col("income") >= 2)
    joined = records.join(people, on="pid", how=how)
    keys = ["district", "kind"] if keyed else ["kind"]
    table = joined.group_by(*keys).agg(n=count(), s=sum_("amount"), m=mean("income"))
    where = "WHERE income >= 2" if filtered else ""
    sql_join = "LEFT JOIN" if how == "left" else "JOIN"
    sql = (
        f"SELECT {', '.join(keys)}, count(*), sum(amount), avg(income) FROM records "
        f"{sql_join} (SELECT * FROM people {where}) USING (pid) GROUP BY {', '.join(keys)}"
    )
    return table, [*keys, "n", "s", "m"], sql


def _compare(
    executor: Executor,
    people: list[dict[str, Any]],
    records: list[dict[str, Any]],
    cuts: tuple[int, int],
    people_first: bool,
    how: str,
    keyed: bool,
    filtered: bool,
) -> bool:
    """Whether the join was cut by entity numbers (after checking it against DuckDB)."""
    ids = PEOPLE[: len(people)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)

        def people_ds() -> DatasetInfo:
            return ingested(
                root,
                "people",
                _people(people, ids),
                {
                    "pid": {"role": "identifier"},
                    "district": {"role": "attribute"},
                    "income": {"role": "attribute"},
                },
                level="L2",
                partition_rows=cuts[0],
            )

        def records_ds() -> DatasetInfo:
            table = pa.Table.from_pylist(
                records,
                schema=pa.schema(
                    [("pid", pa.string()), ("kind", pa.string()), ("amount", pa.int64())]
                ),
            )
            return ingested(
                root,
                "records",
                table,
                {
                    "pid": {"role": "identifier"},
                    "kind": {"role": "attribute"},
                    "amount": {"role": "attribute"},
                },
                level="L2",
                partition_rows=cuts[1],
            )

        if people_first:
            right = people_ds()
            left = records_ds()
        else:
            left = records_ds()
            right = people_ds()
        table, names, sql = _plan(how, keyed, filtered)
        checked = dataclasses.replace(
            check_plan(table._node, {"records": left, "people": right}), disclosure_stats=True
        )
        result = executor.aggregate(checked)
        cut = _cut_by_numbers(checked)
        ours = sorted(
            zip(*(result.table.column(n).to_pylist() for n in names)), key=lambda r: str(r[:2])
        )
        con = duckdb.connect()
        for ds in (left, right):
            con.execute(
                f"CREATE VIEW {ds.name} AS SELECT * FROM read_parquet({list(ds.partitions)!r})"
            )
        theirs = sorted(con.execute(sql).fetchall(), key=lambda r: str(r[:2]))
        con.close()
    assert len(ours) == len(theirs), (sql, ours, theirs)
    for mine, expected in zip(ours, theirs):
        assert all(same_cell(a, b) for a, b in zip(mine, expected)), (sql, mine, expected)
    return cut


class _Planning(join.LocalRunner):
    """Plans without running anything."""

    def call(self, fn: Any, *args: Any, returns: int = 1) -> Any:
        return None if returns == 1 else [None] * returns


def _cut_by_numbers(checked: CheckedPlan) -> bool:
    """Whether the plan's join is cut by entity numbers (its pieces carry the columns)."""
    planner = join.Planner(checked, _Planning(), broadcast_max_rows=0)
    return any(
        isinstance(part.piece, join.JoinPieces)
        and part.piece.entities is not None
        or isinstance(part.piece, join.Steps)
        and isinstance(part.piece.base, join.JoinPieces)
        and part.piece.base.entities is not None
        for part in planner.parts(checked.plan.input)
    )


people_rows = st.lists(person, min_size=1, max_size=len(PEOPLE))
record_rows = st.integers(1, 30).flatmap(lambda n: st.lists(record, min_size=n, max_size=n))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    people=people_rows,
    records=record_rows,
    cuts=st.tuples(st.integers(1, 4), st.integers(1, 12)),
    people_first=st.booleans(),
    how=st.sampled_from(["inner", "left"]),
    keyed=st.booleans(),
    filtered=st.booleans(),
)
def test_joins_on_the_identifier_equal_duckdb(
    people: list[dict[str, Any]],
    records: list[dict[str, Any]],
    cuts: tuple[int, int],
    people_first: bool,
    how: str,
    keyed: bool,
    filtered: bool,
) -> None:
    cut = _compare(
        LocalExecutor(broadcast_max_rows=0),
        people,
        records,
        cuts,
        people_first,
        how,
        keyed,
        filtered,
    )
    if people_first:
        # Numbered in one pass, in order: the people's partitions hold apart ranges.
        assert cut


@pytest.mark.parametrize("how", ["inner", "left"])
def test_joins_on_the_identifier_on_ray_equal_duckdb(ray_local: None, how: str) -> None:
    executor = RayExecutor(broadcast_max_rows=0, in_place_max_rows=0)

    @settings(
        max_examples=4,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(people=people_rows, records=record_rows, keyed=st.booleans())
    def check(people: list[dict[str, Any]], records: list[dict[str, Any]], keyed: bool) -> None:
        assert _compare(executor, people, records, (2, 5), True, how, keyed, False)

    check()
