"""The example analyses in examples/analyses/ run as written on one instance of the demo city,
and what they release agrees with the city's own tables.

Every file in the folder is run (a new example is picked up by itself), in two ways:

- each as its analyst would first run it: by an operator of its own, under a contract with
  exactly the grants below. The release audit keeps one partition of people per operator over
  all its releases, so an example run after the others by the same operator has cells hidden
  that it would release alone, and which ones depends on the order. Values are checked on
  these runs.
- all of them one after the other under ONE contract of one operator with the same grants:
  the grants are enough for every example, and each still succeeds with its outputs, whatever
  the audit hides because of the ones before it.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import World, make_world
from factories import city_sql

EXAMPLES = Path(__file__).parents[2] / "examples" / "analyses"
FILES = sorted(EXAMPLES.glob("*.py"))
# An example's parameters, declared in the file as `# params: {...}`: what the README passes
# to `sandbox jobs submit --params`.
PARAMS = re.compile(r"^# params: (\{.*\})$", re.MULTILINE)

# Exactly the uses the examples need, and nothing more.
GRANTS = {
    "population": {
        "resident_id": ["join"],
        "birth_date": ["group_by", "filter"],
        "district": ["group_by"],
        "hukou_type": ["group_by"],
        "income": ["group_by", "aggregate"],
    },
    "social_insurance": {
        "resident_id": ["join", "aggregate"],
        "credit_code": ["join"],
        "contribution_base": ["aggregate"],
        "months_paid": ["filter"],
        "insured_since": ["group_by", "filter"],
    },
    "enterprises": {
        "credit_code": ["join"],
        "industry": ["group_by"],
        "employees": ["aggregate"],
        "established": ["filter"],
        "deregistered": ["filter"],
    },
}

AS_OF = dt.date(2026, 1, 1)


def _params(path: Path) -> dict[str, Any]:
    found = PARAMS.search(path.read_text(encoding="utf-8"))
    return json.loads(found.group(1)) if found else {}


def _run(w: World, cid: str, path: Path, op: dict[str, Any]) -> dict[str, Any]:
    r = w.client.post(
        "/v1/jobs?wait=true",
        headers=w.h(op),
        json={
            "contract_id": cid,
            "code": path.read_text(encoding="utf-8"),
            "params": _params(path),
        },
    )
    body: dict[str, Any] = r.json()
    if "status" not in body:  # refused at submission: the error envelope names the job
        job = w.client.get(f"/v1/jobs/{body['job_id']}", headers=w.h(op)).json()
        return {**job, "refusal": body}
    return body


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory, city: dict[str, Any]) -> Iterator[World]:
    """One instance with the city's three datasets, on the in-process executor."""
    for w in make_world(tmp_path_factory.mktemp("examples"), city, "local"):
        for name in ("social_insurance", "enterprises"):
            ds = city[name]
            r = w.ingest(name, ds.table, ds.level, ds.columns, ds.title)
            assert r.status_code == 201, r.text
        yield w


@pytest.fixture(scope="module")
def first_runs(instance: World) -> dict[str, dict[str, Any]]:
    """Each example run by an operator of its own, by the file's stem."""
    w = instance
    runs = {}
    for i, path in enumerate(FILES):
        op, key = w.register_operator(f"示例运营单位{i}", f"授权运营-2026-{100 + i}")
        runs[path.stem] = _run(w, w.activate(op, key, GRANTS), path, op)
    return runs


@pytest.fixture(scope="module")
def together(instance: World) -> dict[str, dict[str, Any]]:
    """Every example, in file order, under one contract of the instance's operator."""
    w = instance
    cid = w.active_contract(GRANTS)
    return {path.stem: _run(w, cid, path, w.operator) for path in FILES}


CASES = [pytest.param(path.stem, id=path.stem) for path in FILES]


def _succeeded(job: dict[str, Any], name: str) -> None:
    assert job["status"] == "succeeded", job.get("error") or job.get("refusal")
    assert job["outputs"], job
    for output, body in job["outputs"].items():
        assert body["rows"], (output, body)


def test_there_are_at_least_twelve_examples() -> None:
    assert len(FILES) >= 12, FILES


def test_every_example_says_what_it_answers() -> None:
    for path in FILES:
        text = path.read_text(encoding="utf-8")
        assert text.startswith('"""'), path.name
        for part in ("Question:", "Parameters:", "Outputs:"):
            assert part in text, (path.name, part)
        # Every parameter the job reads is declared, with the value the tests and README use.
        for name in re.findall(r'params\["(\w+)"\]', text):
            assert name in _params(path), (path.name, name)
        assert text.count(".collect()") <= 2, path.name


def test_every_example_passes_the_check_before_paying(instance: World) -> None:
    """What `sandbox jobs check` answers for each, under the contract the README points to."""
    w = instance
    op, key = w.register_operator("核查示例的运营单位", "授权运营-2026-099")
    cid = w.activate(op, key, GRANTS)
    for path in FILES:
        body = {"contract_id": cid, "code": path.read_text(encoding="utf-8")}
        r = w.client.post("/v1/checks", headers=w.h(op), json={**body, "params": _params(path)})
        assert r.status_code == 200, (path.name, r.text)
        assert r.json()["ok"] and r.json()["problems"] == [], (path.name, r.json())


@pytest.mark.parametrize("name", CASES)
def test_each_example_run_first_releases_its_tables(
    first_runs: dict[str, dict[str, Any]], name: str
) -> None:
    job = first_runs[name]
    _succeeded(job, name)
    for output, body in job["outputs"].items():
        cells = sum(len(r) for r in body["rows"])
        # Run first, an analysis keeps most of its cells; only groups too small are hidden
        # (the city's rarest industries have few firms old enough to count for survival).
        assert len(body["suppressed"]) <= cells // 6, (output, body["suppressed"])


@pytest.mark.parametrize("name", CASES)
def test_every_example_runs_under_one_contract(
    together: dict[str, dict[str, Any]], name: str
) -> None:
    job = together[name]
    _succeeded(job, name)
    # Whatever the rules hid, after the releases before it, is empty and says by which rule.
    assert all(s["rule"] for r in job["disclosure"]["releases"] for s in r["suppressed"])
    for output, body in job["outputs"].items():
        names = [c["name"] for c in body["columns"]]
        for i, column in body["suppressed"]:
            assert body["rows"][i][names.index(column)] is None, (output, i, column)


# --- values, against an independent computation on the city's tables -------------------------


def _rows(body: dict[str, Any]) -> list[dict[str, Any]]:
    names = [c["name"] for c in body["columns"]]
    return [dict(zip(names, r)) for r in body["rows"]]


def _output(runs: dict[str, dict[str, Any]], name: str, output: str) -> list[dict[str, Any]]:
    job = runs[name]
    assert job["status"] == "succeeded", job.get("error") or job.get("refusal")
    return _rows(job["outputs"][output])


def _age(born: dt.date) -> int:
    return AS_OF.year - born.year - ((AS_OF.month, AS_OF.day) < (born.month, born.day))


def _near_quantile(released: float, exact: float) -> bool:
    """A quantile of a sensitive column is released as the mean of a few order statistics
    around its position, to two significant figures: close to the exact one, not equal."""
    return abs(released - exact) <= 0.05 * max(abs(exact), 100)


def _people(city: dict[str, Any]) -> list[dict[str, Any]]:
    return city["population"].table.to_pylist()  # type: ignore[no-any-return]


def test_income_by_hukou(first_runs: dict[str, dict[str, Any]], city: dict[str, Any]) -> None:
    rows = _output(first_runs, "income_by_hukou", "income_by_hukou")
    truth = {
        h: (n, mean, median)
        for h, n, mean, median in city_sql(
            city,
            "SELECT hukou_type, count(*), avg(income), quantile_cont(income, 0.5) "
            "FROM population GROUP BY 1",
        )
    }
    assert {r["hukou_type"] for r in rows} == set(truth)
    for r in rows:
        n, mean, median = truth[r["hukou_type"]]
        assert r["n"] == n
        assert r["mean_income"] == math.floor(mean + 0.5)  # whole yuan, half away from zero
        assert _near_quantile(r["median_income"], median)
    means = [r["mean_income"] for r in rows]
    assert means == sorted(means, reverse=True)


def test_ageing_shares_add_up_within_each_district(
    first_runs: dict[str, dict[str, Any]], city: dict[str, Any]
) -> None:
    rows = _output(first_runs, "ageing_by_district", "ageing_by_district")

    def band(born: dt.date) -> str:
        age = _age(born)
        return "< 15" if age < 15 else "[15, 65)" if age < 65 else ">= 65"

    people = _people(city)
    truth = Counter((p["district"], band(p["birth_date"])) for p in people)
    residents = Counter(p["district"] for p in people)
    shares: dict[str, list[float]] = {}
    for r in rows:
        n = truth[(r["district"], r["age_band"])]
        assert r["n"] == n
        assert abs(r["share_of_district"] - n / residents[r["district"]]) < 1e-9
        shares.setdefault(r["district"], []).append(r["share_of_district"])
    assert set(shares) == set(residents)
    for district, parts in shares.items():
        assert len(parts) == 3 and abs(sum(parts) - 1.0) < 1e-9, (district, parts)
    assert [r["district"] for r in rows] == sorted(r["district"] for r in rows)


def test_cross_tab_totals_and_pivot(
    first_runs: dict[str, dict[str, Any]], city: dict[str, Any]
) -> None:
    job = first_runs["cross_tab_row_percentages"]
    assert job["status"] == "succeeded", job.get("error")
    long = job["outputs"]["district_by_hukou"]
    people = _people(city)
    cells = Counter((p["district"], p["hukou_type"]) for p in people)
    districts = Counter(p["district"] for p in people)
    hukou = Counter(p["hukou_type"] for p in people)
    margins = set(long["margins"])
    for i, r in enumerate(_rows(long)):
        d, h = r["district"], r["hukou_type"]
        if i not in margins:
            assert r["n"] == cells[(d, h)]
            assert abs(r["row_pct"] - cells[(d, h)] / districts[d]) < 1e-9
        elif h is None:
            assert r["n"] == (districts[d] if d is not None else len(people))
        else:
            assert d is None and r["n"] == hukou[h]
    assert len(margins) == len(districts) + len(hukou) + 1
    pivoted = _rows(job["outputs"]["district_by_hukou_n"])
    for r in pivoted:
        if r["district"] is not None:
            assert all(r[h] == cells[(r["district"], h)] for h in hukou)


def test_histogram_bands_in_edge_order(
    first_runs: dict[str, dict[str, Any]], city: dict[str, Any]
) -> None:
    rows = _output(first_runs, "income_histogram", "income_histogram")
    edges = [1, 3000, 5000, 8000, 12000, 20000]
    labels = [f"< {edges[0]}"]
    labels += [f"[{a}, {b})" for a, b in zip(edges, edges[1:])]
    labels += [f">= {edges[-1]}"]
    assert [r["bin"] for r in rows] == labels
    incomes = [p["income"] for p in _people(city)]
    bounds = [-math.inf, *edges, math.inf]
    for r, low, high in zip(rows, bounds, bounds[1:]):
        assert r["n"] == sum(1 for v in incomes if low <= v < high), r


def test_top_industries_are_the_largest_employers(
    first_runs: dict[str, dict[str, Any]], city: dict[str, Any]
) -> None:
    truth = city_sql(
        city,
        "SELECT industry, sum(employees), count(*) FROM enterprises GROUP BY 1 ORDER BY 2 DESC",
    )
    every = {r["industry"]: r for r in _output(first_runs, "top_industries", "industries")}
    # The five largest among the industries whose sum was released, largest first.
    shown = [i for i, _, _ in truth if every[i]["employees"] is not None]
    top = _output(first_runs, "top_industries", "top_industries")
    assert [r["industry"] for r in top] == shown[:5]
    for r in top:
        (employees, firms) = [(e, f) for i, e, f in truth if i == r["industry"]][0]
        assert r["employees"] == employees and r["firms"] in (firms, None)


def test_enterprise_survival_by_industry(
    first_runs: dict[str, dict[str, Any]], city: dict[str, Any]
) -> None:
    truth = {
        industry: (firms, survived)
        for industry, firms, survived in city_sql(
            city,
            "SELECT industry, count(*), count(*) FILTER (WHERE deregistered IS NULL OR "
            "date_diff('year', established, deregistered) - CASE WHEN strftime(deregistered, "
            "'%m%d') < strftime(established, '%m%d') THEN 1 ELSE 0 END >= 5) "
            "FROM enterprises WHERE date_diff('year', established, DATE '2024-12-31') - CASE "
            "WHEN '1231' < strftime(established, '%m%d') THEN 1 ELSE 0 END >= 5 GROUP BY 1",
        )
    }
    out = _output(first_runs, "enterprise_survival_by_industry", "survival_by_industry")
    assert {r["industry"] for r in out} <= set(truth) and len(out) >= 5
    shown = [r["survival_5y"] for r in out if r["survival_5y"] is not None]
    assert shown == sorted(shown, reverse=True)
    for r in out:
        firms, survived = truth[r["industry"]]
        assert r["firms"] in (firms, None) and r["survived"] in (survived, None)
        if r["survival_5y"] is not None:
            assert r["survival_5y"] == round(survived / firms, 3)


def test_elderly_share_and_income_quantiles(
    first_runs: dict[str, dict[str, Any]], city: dict[str, Any]
) -> None:
    people = _people(city)
    residents = Counter(p["district"] for p in people)
    old = Counter(p["district"] for p in people if _age(p["birth_date"]) >= 65)
    for r in _output(first_runs, "elderly_share_by_district", "elderly_share_by_district"):
        d = r["district"]
        assert (r["residents"], r["aged_65_plus"]) == (residents[d], old[d])
        assert abs(r["share_65_plus"] - old[d] / residents[d]) < 1e-9
    quantiles = city_sql(
        city,
        "SELECT district, quantile_cont(income, [0.25, 0.5, 0.75, 0.9]) FROM population GROUP BY 1",
    )
    truth = dict(quantiles)
    for r in _output(first_runs, "income_quantiles_by_district", "income_quantiles_by_district"):
        released = [r["p25"], r["p50"], r["p75"], r["p90"]]
        assert all(map(_near_quantile, released, truth[r["district"]])), r
        assert released == sorted(released)


def test_insurance_by_industry_and_by_year(
    first_runs: dict[str, dict[str, Any]], city: dict[str, Any]
) -> None:
    truth = {
        i: (n, base)
        for i, n, base in city_sql(
            city,
            """SELECT e.industry, count(DISTINCT s.resident_id), avg(s.contribution_base)
                 FROM social_insurance s JOIN enterprises e ON e.credit_code = s.credit_code
                GROUP BY 1""",
        )
    }
    rows = _output(first_runs, "insurance_by_industry", "insurance_by_industry")
    assert rows and {r["industry"] for r in rows} <= set(truth)
    for r in rows:
        n, base = truth[r["industry"]]
        assert r["insured"] == n and r["mean_base"] == math.floor(base + 0.5)
    counts = [r["insured"] for r in rows]
    assert counts == sorted(counts, reverse=True)

    per_year = dict(
        city_sql(
            city,
            "SELECT year(insured_since), count(*) FROM social_insurance "
            "WHERE year(insured_since) >= 2005 GROUP BY 1",
        )
    )
    change = _output(first_runs, "new_insured_year_over_year", "new_insured_change")
    assert [r["year"] for r in change] == sorted(per_year)
    for r in change:
        assert r["n"] == per_year[r["year"]]
        before = per_year.get(r["year"] - 1)
        if before is None:
            assert r["change"] is None
        else:
            assert abs(r["change"] - (r["n"] / before - 1)) < 1e-9


def test_years_insured(first_runs: dict[str, dict[str, Any]], city: dict[str, Any]) -> None:
    since = city["social_insurance"].table["insured_since"].to_pylist()
    bands = Counter(min(5, sum(_age(d) >= e for e in (1, 5, 10, 20, 30))) for d in since)
    rows = _output(first_runs, "years_insured", "years_insured")
    labels = ["< 1", "[1, 5)", "[5, 10)", "[10, 20)", "[20, 30)", ">= 30"]
    assert [r["years_band"] for r in rows] == [b for b in labels if bands[labels.index(b)]]
    for r in rows:
        n = bands[labels.index(r["years_band"])]
        assert r["n"] == n and abs(r["share"] - n / len(since)) < 1e-9


def test_coverage_and_uninsured_by_district(
    first_runs: dict[str, dict[str, Any]], city: dict[str, Any]
) -> None:
    people = _people(city)
    insured = set(city["social_insurance"].table["resident_id"].to_pylist())
    residents = Counter(p["district"] for p in people)
    covered = Counter(p["district"] for p in people if p["resident_id"] in insured)
    coverage = _output(
        first_runs, "insurance_coverage_by_district", "insurance_coverage_by_district"
    )
    assert {r["district"] for r in coverage} == set(residents)
    for r in coverage:
        d = r["district"]
        assert (r["residents"], r["insured"]) == (residents[d], covered[d])
        assert abs(r["coverage"] - covered[d] / residents[d]) < 1e-9
    uninsured = _output(first_runs, "uninsured_by_district", "uninsured_by_district")
    for r in uninsured:
        assert r["uninsured"] == residents[r["district"]] - covered[r["district"]]
