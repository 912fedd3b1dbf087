"""Differencing across versions: a release on one version of a dataset and the same query on
the next, after one resident was added, removed or changed, must not give that resident away.
The release history knows people across versions (their entity numbers come from a keyed
mapping of their identifier), and a person whose values changed is, for sums and other
magnitudes, a different contributor in the new version (catalog.revisions)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from conftest import World

from tests.factories import parquet_bytes

SUM = (
    'emit("r", table("population").filter(col("district") == "{d}")'
    '.agg(n=count(), total=sum("income")).collect())\n'
)
COUNT = 'emit("r", table("population").filter(col("district") == "{d}").agg(n=count()).collect())\n'


def publish(w: World, table: pa.Table, mode: str = "replace", **meta: Any) -> dict[str, Any]:
    r = w.client.post(
        "/v1/datasets/population/versions",
        headers=w.h(w.bureau),
        files={"file": ("population.parquet", parquet_bytes(table))},
        data={"meta": json.dumps({"mode": mode, **meta}, ensure_ascii=False)},
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def cells(w: World, cid: str, code: str) -> list[Any]:
    r = w.run(cid, code)
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["status"] == "succeeded", job["error"]
    return job["outputs"]["r"]["rows"][0]  # type: ignore[no-any-return]


def _district(table: pa.Table) -> str:
    return str(Counter(table.column("district").to_pylist()).most_common(1)[0][0])


def _newcomer(table: pa.Table, district: str, income: int) -> pa.Table:
    row = table.filter(pc.equal(table.column("district"), district)).slice(0, 1).to_pylist()[0]
    row |= {"resident_id": "990000199001010019", "name": "新居民", "income": income}
    return pa.Table.from_pylist([row], schema=table.schema)


def _without(table: pa.Table, resident: str) -> pa.Table:
    return table.filter(pc.not_equal(table.column("resident_id"), resident))


def _with_income(table: pa.Table, resident: str, income: int) -> pa.Table:
    incomes = [
        income if rid == resident else v
        for rid, v in zip(
            table.column("resident_id").to_pylist(), table.column("income").to_pylist(), strict=True
        )
    ]
    return table.set_column(
        table.schema.get_field_index("income"), "income", pa.array(incomes, table["income"].type)
    )


def _someone(table: pa.Table, district: str) -> dict[str, Any]:
    rows = table.filter(pc.equal(table.column("district"), district)).to_pylist()
    return next(r for r in rows if r["income"])


@pytest.mark.parametrize("mode", ["replace", "append"])
def test_a_resident_added_in_a_new_version_is_not_given_away(
    local_world: World, city: Any, mode: str
) -> None:
    w, pop = local_world, city["population"].table
    cid = w.active_contract()
    district = _district(pop)
    n1, total1 = cells(w, cid, SUM.format(d=district))
    assert n1 is not None and total1 is not None
    newcomer = _newcomer(pop, district, 54321)
    published = publish(
        w, newcomer if mode == "append" else pa.concat_tables([pop, newcomer]), mode
    )
    assert published["version"] == 2 and published["row_count"] == pop.num_rows + 1
    n2, total2 = cells(w, cid, SUM.format(d=district))
    # Without the history across versions, total2 - total1 is her income.
    assert (n2, total2) == (None, None)
    assert cells(w, cid, COUNT.format(d=district)) == [None]


def test_a_resident_removed_in_a_new_version_is_not_given_away(
    local_world: World, city: Any
) -> None:
    w, pop = local_world, city["population"].table
    cid = w.active_contract()
    district = _district(pop)
    target = _someone(pop, district)
    assert cells(w, cid, SUM.format(d=district))[1] is not None
    publish(w, _without(pop, target["resident_id"]))
    assert cells(w, cid, SUM.format(d=district)) == [None, None]


def test_a_resident_whose_income_changed_is_not_given_away(local_world: World, city: Any) -> None:
    w, pop = local_world, city["population"].table
    cid = w.active_contract()
    district = _district(pop)
    target = _someone(pop, district)
    _, total1 = cells(w, cid, SUM.format(d=district))
    assert total1 is not None
    published = publish(w, _with_income(pop, target["resident_id"], target["income"] + 12345))
    assert published["revised"] == 1
    # The same people: a count is the same count; but a sum would show her change.
    _, total2 = cells(w, cid, SUM.format(d=district))
    assert total2 is None
    # Nor through the mean, or a sum of the district split another way.
    mean = cells(
        w,
        cid,
        'emit("r", table("population").filter(col("district") == "'
        + district
        + '").agg(m=mean("income")).collect())\n',
    )
    assert mean == [None]


def test_a_resident_who_moved_district_is_not_given_away(local_world: World, city: Any) -> None:
    w, pop = local_world, city["population"].table
    cid = w.active_contract()
    district = _district(pop)
    target = _someone(pop, district)
    assert cells(w, cid, COUNT.format(d=district))[0] is not None
    moved = [
        "外区" if rid == target["resident_id"] else d
        for rid, d in zip(
            pop.column("resident_id").to_pylist(), pop.column("district").to_pylist(), strict=True
        )
    ]
    publish(w, pop.set_column(pop.schema.get_field_index("district"), "district", pa.array(moved)))
    assert cells(w, cid, COUNT.format(d=district)) == [None]


def test_a_version_that_changes_many_residents_together_is_released(
    local_world: World, city: Any
) -> None:
    # Utility: a refresh in which many people changed (≥ the threshold) reveals no one.
    w, pop = local_world, city["population"].table
    cid = w.active_contract()
    district = _district(pop)
    assert cells(w, cid, SUM.format(d=district))[1] is not None
    raised = pc.add(pop.column("income"), 7)
    published = publish(w, pop.set_column(pop.schema.get_field_index("income"), "income", raised))
    assert published["revised"] > 100
    n, total = cells(w, cid, SUM.format(d=district))
    assert n is not None and total is not None


def test_a_version_that_changes_someone_elsewhere_keeps_the_district_released(
    local_world: World, city: Any
) -> None:
    w, pop = local_world, city["population"].table
    cid = w.active_contract()
    district = _district(pop)
    first = cells(w, cid, SUM.format(d=district))
    other = next(r for r in pop.to_pylist() if r["district"] != district and r["income"])
    publish(w, _with_income(pop, other["resident_id"], other["income"] + 1))
    assert cells(w, cid, SUM.format(d=district)) == first


def test_a_dataset_without_identifiers_follows_its_rows_by_content(local_world: World) -> None:
    w = local_world
    rows = [
        {"区县": "城关区" if i % 2 else "湖滨区", "行业": f"行业{i % 7}", "营业额": float(1000 + i)}
        for i in range(400)
    ]
    table = pa.Table.from_pylist(rows)
    columns = {
        "区县": {"role": "attribute"},
        "行业": {"role": "attribute"},
        "营业额": {"role": "sensitive", "lower": 0, "upper": 1e6},
    }
    assert w.ingest("商户", table, "L2", columns).status_code == 201
    grants = {"商户": {"区县": ["group_by", "filter"], "营业额": ["aggregate"]}}
    cid = w.active_contract(grants)
    code = (
        'emit("r", table("商户").filter(col("区县") == "城关区")'
        '.agg(n=count(), total=sum("营业额")).collect())\n'
    )
    assert cells(w, cid, code)[1] == sum(r["营业额"] for r in rows if r["区县"] == "城关区")
    one_more = pa.Table.from_pylist(rows + [{"区县": "城关区", "行业": "行业1", "营业额": 77777.0}])
    r = w.client.post(
        "/v1/datasets/商户/versions",
        headers=w.h(w.bureau),
        files={"file": ("商户.parquet", parquet_bytes(one_more))},
        data={"meta": json.dumps({"mode": "replace"})},
    )
    assert r.status_code == 201, r.text
    assert cells(w, cid, code) == [None, None]
