"""Conditional counts (count_if, mean_of, count_nonnull): the values are those of the data,
the condition's columns are a filter use, and a condition true of everyone but one person
does not give that person away."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from conftest import World

CONDITIONS = """\
r = table("population").group_by("district").agg(
    n=count(),
    old=count_if(col("birth_date") < "1960-01-01"),
    share_old=mean_of(col("birth_date") < "1960-01-01"),
    local=count_if(col("hukou_type") == params["hukou"]),
    known=count_nonnull("hukou_type"),
).collect()
emit("r", r)
"""


def _rows(city: dict[str, Any]) -> list[dict[str, Any]]:
    return city["population"].table.to_pylist()  # type: ignore[no-any-return]


def test_conditional_counts_are_those_of_the_data(local_world: World, city: dict[str, Any]) -> None:
    w = local_world
    cid = w.active_contract()
    people = _rows(city)
    hukou = Counter(r["hukou_type"] for r in people).most_common(1)[0][0]
    job = w.run(cid, CONDITIONS, params={"hukou": hukou}).json()
    assert job["status"] == "succeeded", job["error"]
    out = job["outputs"]["r"]
    assert [c["name"] for c in out["columns"]] == [
        "district",
        "n",
        "old",
        "share_old",
        "local",
        "known",
    ]
    cut = dt.date(1960, 1, 1)
    for district, n, old, share_old, local, known in out["rows"]:
        mine = [r for r in people if r["district"] == district]
        assert n == len(mine)
        truth_old = sum(1 for r in mine if r["birth_date"] is not None and r["birth_date"] < cut)
        assert old in (truth_old, None)
        if share_old is not None:
            assert abs(share_old - truth_old / len(mine)) < 1e-9
        assert local in (sum(1 for r in mine if r["hukou_type"] == hukou), None)
        assert known in (sum(1 for r in mine if r["hukou_type"] is not None), None)
    assert any(v is not None for row in out["rows"] for v in row[2:])


def test_a_condition_is_a_filter_use_of_its_columns(local_world: World) -> None:
    """birth_date is granted for filtering only (tests/conftest.py GRANTS): counting the rows
    where a condition on it holds is allowed, summing it is not."""
    w = local_world
    cid = w.active_contract()
    ok = w.run(
        cid,
        'emit("r", table("population").agg(old=count_if(col("birth_date") < "1960-01-01"))'
        ".collect())",
    ).json()
    assert ok["status"] == "succeeded", ok["error"]
    refused = w.run(
        cid,
        'emit("r", table("population").agg(y=sum(col("birth_date").year())).collect())',
    )
    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "contract_scope", refused.text
    assert "birth_date" in refused.json()["error"]


def test_count_if_of_a_value_is_refused_with_a_suggestion(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()
    job = w.run(cid, 'emit("r", table("population").agg(x=count_if(col("district"))).collect())')
    body = job.json()
    assert body["status"] == "rejected", body
    assert "needs a condition" in body["error"]["message"]
    assert body["usage"]["rows_scanned"] == 0
