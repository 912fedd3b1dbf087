"""The classic attacks on aggregate releases, over HTTP against a real instance: differencing
two filters that differ by one resident, a tracker built from complementary filters, and
subtracting released cells from a released total. Each must fail to reveal the target."""

from __future__ import annotations

import datetime as dt
import queue
from collections import Counter
from typing import Any

import pytest
from conftest import World


def _target(city: Any) -> dict[str, Any]:
    """A resident with income whose (district, birth date, gender) no one else shares."""
    t = city["population"].table.to_pylist()
    seen = Counter((r["district"], r["birth_date"], r["gender"]) for r in t)
    return next(
        r for r in t if r["income"] > 0 and seen[(r["district"], r["birth_date"], r["gender"])] == 1
    )


def _is_target(r: dict[str, Any]) -> str:
    return (
        f'(col("birth_date") == "{r["birth_date"].isoformat()}") & '
        f'(col("gender") == "{r["gender"]}")'
    )


def _sum_job(where: str) -> str:
    return (
        f'res = table("population").filter({where}).agg(n=count(), total=sum("income"))'
        '.collect()\nemit("r", res)\n'
    )


def _run(w: World, cid: str, code: str) -> dict[str, Any]:
    r = w.run(cid, code)
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["status"] == "succeeded", job["error"]
    return job


def _cells(job: dict[str, Any]) -> list[Any]:
    return job["outputs"]["r"]["rows"][0]


def _rules(w: World, job: dict[str, Any]) -> list[str]:
    full = w.client.get(f"/v1/jobs/{job['id']}", headers=w.h(w.regulator)).json()
    return [c["rule"] for rel in full["disclosure"]["releases"] for c in rel["suppressed"]]


def test_two_filters_differing_by_one_resident_do_not_reveal_her_income(
    world: World, city: Any
) -> None:
    target = _target(city)
    cid = world.active_contract()
    district = f'(col("district") == "{target["district"]}")'
    first = _run(world, cid, _sum_job(district))
    second = _run(world, cid, _sum_job(f"{district} & ~({_is_target(target)})"))
    n, total = _cells(first)
    assert n is not None and total is not None  # the district is released …
    assert _cells(second) == [None, None]  # … and the district minus one is not
    assert _rules(world, second) == ["difference", "difference"]
    # The operator learns that a rule applied, not by how many people the sets differ.
    own = world.client.get(f"/v1/jobs/{second['id']}", headers=world.h(world.operator)).json()
    cells = own["disclosure"]["releases"][0]["suppressed"]
    assert [c["rule"] for c in cells] == ["difference", "difference"]
    assert all("differs_by" not in c for c in cells)


def test_the_same_attack_inside_one_job_fails_too(world: World, city: Any) -> None:
    target = _target(city)
    cid = world.active_contract()
    district = f'(col("district") == "{target["district"]}")'
    code = (
        f'a = table("population").filter({district}).agg(total=sum("income")).collect()\n'
        f'b = table("population").filter({district} & ~({_is_target(target)}))'
        '.agg(total=sum("income")).collect()\n'
        'emit("a", a)\nemit("b", b)\n'
        'emit("diff", None if b.rows[0][0] is None else a.rows[0][0] - b.rows[0][0])\n'
    )
    job = _run(world, cid, code)
    assert job["outputs"]["b"]["rows"] == [[None]]
    assert job["outputs"]["diff"]["value"] is None


def test_a_tracker_of_complementary_filters_does_not_isolate_the_target(
    world: World, city: Any
) -> None:
    target = _target(city)
    cid = world.active_contract()
    p = f'(col("hukou_type") != "{target["hukou_type"]}")'
    jobs = [
        _run(world, cid, _sum_job(p)),
        _run(
            world,
            cid,
            _sum_job(
                f'~({p}) & ~({_is_target(target)} & (col("district") == "{target["district"]}"))'
            ),
        ),
        _run(
            world,
            cid,
            'emit("r", table("population").agg(n=count(), total=sum("income")).collect())\n',
        ),
    ]
    released = [_cells(j) for j in jobs]
    everyone = sum(r["income"] for r in city["population"].table.to_pylist())
    # Whatever was released, everyone − P − (not P and not target) is not her income.
    assert any(total is None for _, total in released)
    assert "difference" in _rules(world, jobs[-1])
    if all(total is not None for _, total in released[:2]):
        assert released[2][1] is None or released[2][1] == everyone


def test_a_published_total_minus_released_cells_does_not_give_away_a_small_cell(
    world: World, city: Any
) -> None:
    cid = world.active_contract()
    # 北山区 has 600 residents; the first job releases their total, the second splits them.
    total = _run(
        world,
        cid,
        'emit("r", table("population").filter(col("district") == "北山区")'
        ".agg(n=count()).collect())\n",
    )
    split = world.run(
        cid,
        'emit("r", table("population").filter(col("district") == "北山区")'
        '.filter(col("birth_date") >= "1940-01-01")'
        '.group_by("hukou_type", "gender").agg(n=count()).collect())\n',
    ).json()
    assert split["status"] == "succeeded", split
    rows = split["outputs"]["r"]["rows"]
    hidden = [r for r in rows if r[2] is None]
    released = sum(r[2] for r in rows if r[2] is not None)
    # Either nothing is hidden, or at least two cells are: the total minus the released cells
    # is then a sum of several unknowns.
    assert len(hidden) != 1
    assert _cells(total)[0] >= released


def test_ordinary_analysis_goes_on_unhindered(world: World, city: Any) -> None:
    cid = world.active_contract()
    code = (
        'emit("r", table("population").group_by("district")'
        '.agg(n=count(), avg=mean("income")).collect())\n'
    )
    first, again = _run(world, cid, code), _run(world, cid, code)
    assert first["outputs"] == again["outputs"]
    assert all(r[1] is not None for r in first["outputs"]["r"]["rows"])
    older = _run(
        world,
        cid,
        'emit("r", table("population").filter(col("birth_date") < '
        '"1960-01-01").group_by("district").agg(n=count()).collect())\n',
    )
    cutoff = dt.date(1960, 1, 1)
    expected = Counter(
        r["district"] for r in city["population"].table.to_pylist() if r["birth_date"] < cutoff
    )
    assert {r[0]: r[1] for r in older["outputs"]["r"]["rows"]} == dict(expected)


@pytest.mark.parametrize("rules", ["1:50,2:67"])
def test_a_dominated_sum_is_suppressed(world: World, city: Any, rules: str) -> None:
    cid = world.active_contract()
    rows = city["population"].table.to_pylist()
    # Incomes of the oldest residents of one district: few earners, so one often dominates.
    by_cell: dict[tuple[str, str], list[int]] = {}
    for r in rows:
        by_cell.setdefault((r["district"], r["hukou_type"]), []).append(r["income"])
    code = (
        'emit("r", table("population").group_by("district", "hukou_type")'
        '.agg(n=count(), total=sum("income")).collect())\n'
    )
    job = _run(world, cid, code)
    full = world.client.get(f"/v1/jobs/{job['id']}", headers=world.h(world.regulator)).json()
    cells = full["disclosure"]["releases"][0]["suppressed"]
    out_rows = job["outputs"]["r"]["rows"]
    for c in cells:
        if c["rule"] != "dominance":
            continue
        incomes = sorted(by_cell[(out_rows[c["row"]][0], out_rows[c["row"]][1])], reverse=True)
        share = sum(incomes[: c["n"]]) / sum(incomes)
        assert share > c["k"] and c["share"] == pytest.approx(share, abs=1e-4)
    for _i, row in enumerate(out_rows):
        incomes = sorted(by_cell[(row[0], row[1])], reverse=True)
        dominated = sum(incomes) > 0 and (
            incomes[0] > 0.5 * sum(incomes) or sum(incomes[:2]) > 0.67 * sum(incomes)
        )
        if dominated:
            assert row[3] is None


def test_two_concurrent_jobs_cannot_difference_each_other(
    local_world: World, city: Any, jobs_started: queue.Queue[str]
) -> None:
    """Two jobs of one operator at once: the gate audits and records each release at
    collect time, so whichever collects second is refused, and its code never sees it."""
    import threading

    w = local_world
    target = _target(city)
    cid = w.active_contract()
    district = f'(col("district") == "{target["district"]}")'
    slow = "x = 0\nfor i in range(3 * 10**6):\n    x += 1\n"
    results: dict[str, Any] = {}

    def run(name: str, code: str) -> None:
        results[name] = w.run(cid, code).json()

    second = threading.Thread(
        target=run, args=("minus_one", slow + _sum_job(f"{district} & ~({_is_target(target)})"))
    )
    second.start()
    jobs_started.get(timeout=30)  # the slow job runs: it collects after the district's release
    run("district", _sum_job(district))
    second.join(timeout=60)
    first, late = results["district"], results["minus_one"]
    assert first["status"] == "succeeded" and _cells(first)[1] is not None
    # The slow job collects after the district's release: it is suppressed, not withheld.
    assert late["status"] == "succeeded" and _cells(late) == [None, None]
