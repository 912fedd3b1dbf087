"""Shares and totals: the values are those of the data, totals are rows of their own marked
as margins, and every total and share is protected as a cell is."""

from __future__ import annotations

from collections import Counter
from typing import Any

from conftest import World

CROSS = """\
r = (
    table("population")
    .group_by("district", "gender")
    .agg(n=count(), pct=share(count(), within="district"), s=sum("income"))
    .with_totals()
    .collect()
)
emit("r", r)
"""


def test_a_cross_tab_with_totals_and_row_shares(local_world: World, city: dict[str, Any]) -> None:
    w = local_world
    cid = w.active_contract()
    job = w.run(cid, CROSS).json()
    assert job["status"] == "succeeded", job["error"]
    out = job["outputs"]["r"]
    people = city["population"].table.to_pylist()
    cells = Counter((r["district"], r["gender"]) for r in people)
    districts = Counter(r["district"] for r in people)
    genders = Counter(r["gender"] for r in people)
    margins = set(out["margins"])
    assert margins, out
    hidden = {tuple(c) for c in out["suppressed"]}
    seen_total = False
    for i, (district, gender, n, pct, s) in enumerate(out["rows"]):
        if i not in margins:
            assert (district, gender) in cells
            assert n in (cells[(district, gender)], None)
            if pct is not None:
                assert abs(pct - cells[(district, gender)] / districts[district]) < 1e-9
            continue
        if district is not None and gender is None:
            assert n in (districts[district], None)
            assert pct in (1.0, None)
        elif district is None and gender is not None:
            assert n in (genders[gender], None)
            assert pct is None and (i, "pct") not in hidden  # no district to be a share of
        else:
            assert district is None and gender is None
            assert n == len(people)
            truth = sum(r["income"] for r in people if r["income"] is not None)
            assert s is None or abs(s - truth) < 1e-6 * max(1.0, abs(truth))
            seen_total = True
    assert seen_total
    # Totals come after the cells they add up.
    assert min(margins) > max(set(range(len(out["rows"]))) - margins)


def test_shares_of_the_whole_table(local_world: World, city: dict[str, Any]) -> None:
    w = local_world
    cid = w.active_contract()
    job = w.run(
        cid,
        'emit("all", table("population").agg(n=count(), p=share(count())).collect())\n'
        'emit("by", table("population").group_by("gender").agg(p=share(count())).collect())',
    ).json()
    assert job["status"] == "succeeded", job["error"]
    assert job["outputs"]["all"]["rows"] == [[len(city["population"].table), 1.0]]
    genders = Counter(city["population"].table.column("gender").to_pylist())
    total = sum(genders.values())
    for g, p in job["outputs"]["by"]["rows"]:
        assert abs(p - genders[g] / total) < 1e-12
    assert "margins" not in job["outputs"]["by"]


def test_totals_and_shares_are_refused_with_a_reason_when_they_cannot_be_taken(
    local_world: World,
) -> None:
    w = local_world
    cid = w.active_contract()
    for code, message in (
        ('table("population").agg(p=share(mean("income"), within="x"))', "share() takes count()"),
        (
            'table("population").group_by("district").agg(p=share(count(), within="gender"))',
            "not a group key",
        ),
        ('table("population").with_totals()', "with_totals() comes after agg()"),
        (
            'table("population").group_by("district").agg(n=count()).with_totals("gender")',
            "not a group key",
        ),
    ):
        job = w.run(cid, f'emit("r", {code}.collect())').json()
        assert job["status"] == "rejected", (code, job)
        assert message in job["error"]["message"], (code, job["error"])
        assert job["usage"]["rows_scanned"] == 0
