"""Attacks on the release gate, each by a determined operator through the public HTTP API only.

Every test registers a fresh operator (its own Ed25519 key, its own active contract), since a
contract's release history is what the difference check compares against: attacks must not
see one another's releases. The operator knows one resident's district, birth date and
gender (the target of `tests/system/test_http_differencing.py`) and public facts about the
synthetic city (minors have no income), and tries to learn what disclosure control is there
to hide: her income or social insurance base, exact values of quasi-identifiers, or a single
bit about her through anything the service lets it observe.

Two forms of assertion:

- an estimate computed from what was released must not be the truth
  (`estimate is None or abs(estimate - truth) > 1.0`);
- for an oracle, the same code run with a params value that is true of the target and one
  that is false must leave the operator with identical observations (HTTP status, job status,
  error, outputs, its disclosure report, usage and charge apart from compute time).

Channels: quantiles (1), lineage through case() and other "coarsening" group keys (2),
dominance-blind differencing (3), limits and failures as oracles (4), several datasets of the
same people (5), timing (6), and robustness of the params document (7).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from conftest import World, auth, make_world
from httpx import Response

from .conftest import assert_flagged

USES = ["group_by", "filter", "aggregate", "join"]
ENVELOPE = {"ok", "status", "code", "error"}


# --- the instance and its operators ---------------------------------------------------------


@pytest.fixture(scope="module")
def gate(
    tmp_path_factory: pytest.TempPathFactory, city: dict[str, Any], ray_local: None
) -> Iterator[World]:
    """One instance for the module: population and social insurance (same residents)."""
    for w in make_world(
        tmp_path_factory.mktemp("release-gate"),
        city,
        "ray",
        raise_server_exceptions=False,
        partition_rows=6000,
    ):
        si = city["social_insurance"]
        r = w.ingest(si.name, si.table, si.level, si.columns, si.title)
        assert r.status_code == 201, r.text
        yield w


@pytest.fixture(scope="module")
def everything(city: dict[str, Any]) -> dict[str, Any]:
    """Grants every use of every column of both datasets: what stops an attack must be the
    disclosure rules, which hold whatever a contract grants."""
    return {
        name: {c: USES for c in city[name].columns} for name in ("population", "social_insurance")
    }


@dataclass
class Operator:
    world: World
    principal: dict[str, Any]
    contract: str

    @property
    def headers(self) -> dict[str, str]:
        return auth(self.principal["token"])

    def submit(self, code: str, params: dict[str, Any] | None = None) -> Response:
        return self.world.client.post(
            "/v1/jobs?wait=true",
            headers=self.headers,
            json={"contract_id": self.contract, "code": code, "params": params or {}},
        )

    def job(self, code: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """A job that ran (whatever its outcome)."""
        r = self.submit(code, params)
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    def view(self, job_id: str) -> dict[str, Any]:
        r = self.world.client.get(f"/v1/jobs/{job_id}", headers=self.headers)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]


Fresh = Callable[..., Operator]
_names = itertools.count(1)


@pytest.fixture
def fresh(
    gate: World, everything: dict[str, Any], request: pytest.FixtureRequest
) -> Iterator[Fresh]:
    """A factory of new operators, each registered by the bureau with its own Ed25519 key and
    holding one active contract (by default granting `everything`). Afterwards: the attack
    raised at least one flag for the regulator (detection, the second line), unless it never
    reached a job (`no_flag`: refused as malformed at submission)."""
    made: list[Operator] = []

    def make(grants: dict[str, Any] | None = None) -> Operator:
        n = next(_names)
        who, key = gate.register_operator(f"攻击测试运营方{n}", f"授权运营-2026-A{n:03d}")
        made.append(Operator(gate, who, gate.activate(who, key, grants or everything)))
        return made[-1]

    yield make
    if request.node.get_closest_marker("no_flag") is None:
        assert_flagged(gate, [op.principal for op in made])


@pytest.fixture
def op(fresh: Fresh) -> Operator:
    return fresh()


# --- the target and what the attacker knows -------------------------------------------------


@pytest.fixture(scope="module")
def people(city: dict[str, Any]) -> list[dict[str, Any]]:
    return city["population"].table.to_pylist()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def insured(city: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["resident_id"]: r for r in city["social_insurance"].table.to_pylist()}


@pytest.fixture(scope="module")
def target(people: list[dict[str, Any]], insured: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """As test_http_differencing._target: a resident with income whose (district, birth date,
    gender) no one else shares; she is also insured, for the attacks across datasets."""
    seen = Counter((r["district"], r["birth_date"], r["gender"]) for r in people)
    t = next(
        r
        for r in people
        if r["income"] > 0 and seen[(r["district"], r["birth_date"], r["gender"])] == 1
    )
    assert t["resident_id"] in insured, "the target must also be insured"
    return t


def is_target(t: dict[str, Any]) -> str:
    """A condition true of the target's row alone (what the attacker knows about her)."""
    return (
        f'(col("district") == "{t["district"]}") & '
        f'(col("birth_date") == "{t["birth_date"].isoformat()}") & '
        f'(col("gender") == "{t["gender"]}")'
    )


def in_district(t: dict[str, Any]) -> str:
    return f'(col("district") == "{t["district"]}")'


# Children of the target's district born in one year: public knowledge says they earn nothing.
KIDS_FROM, KIDS_TO = dt.date(2020, 1, 1), dt.date(2021, 1, 1)


def kids(t: dict[str, Any]) -> str:
    return (
        f'{in_district(t)} & (col("birth_date") >= "{KIDS_FROM.isoformat()}") & '
        f'(col("birth_date") < "{KIDS_TO.isoformat()}")'
    )


def target_and_kids(t: dict[str, Any]) -> str:
    """A set of at least the threshold's people whose whole income is the target's."""
    return f"(({is_target(t)}) | ({kids(t)}))"


@pytest.fixture(scope="module")
def kid_rows(people: list[dict[str, Any]], target: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [
        r
        for r in people
        if r["district"] == target["district"] and KIDS_FROM <= r["birth_date"] < KIDS_TO
    ]
    assert len(rows) >= 10, "the kids must be enough to pass the threshold on their own"
    assert all(r["income"] == 0 for r in rows)
    return rows


def cells(job: dict[str, Any], name: str) -> list[list[Any]]:
    out = job.get("outputs") or {}
    return out[name]["rows"] if name in out else []


def cell(job: dict[str, Any], name: str, row: int = 0, column: int = 0) -> Any:
    rows = cells(job, name)
    return rows[row][column] if len(rows) > row else None


def wrong(estimate: float | None, truth: float) -> bool:
    return estimate is None or abs(estimate - truth) > 1.0


# --- observations, for oracles --------------------------------------------------------------

VOLATILE = {
    "id",
    "job_id",
    "contract_id",
    "operator_id",
    "created_at",
    "finished_at",
    "compute_seconds",
}
IDS = re.compile(r"\b[jcod]-[0-9a-f]{12}\b")


def _scrub(x: Any) -> Any:
    """Drop what differs between any two jobs (ids, times, compute seconds and what they
    cost); everything else the operator can see is kept."""
    if isinstance(x, dict):
        if "lines" in x:  # a quote or charge: without the compute-time line and the totals
            x = {k: v for k, v in x.items() if k not in ("amount", "list_amount")}
            x["lines"] = [ln for ln in x["lines"] if ln.get("unit") != "compute_seconds"]
        return {k: _scrub(v) for k, v in x.items() if k not in VOLATILE}
    if isinstance(x, list):
        return [_scrub(v) for v in x]
    if isinstance(x, str):
        return IDS.sub("<id>", x)
    return x


def observe(o: Operator, code: str, params: dict[str, Any]) -> dict[str, Any]:
    """Everything an operator sees of one submission: the response and the job read back."""
    r = o.submit(code, params)
    body = r.json()
    job_id = body.get("id") if r.status_code == 201 else body.get("job_id")
    return _scrub(
        {"http": r.status_code, "response": body, "job": o.view(job_id) if job_id else None}
    )


def assert_same_for_both_secrets(
    fresh: Fresh,
    code: str,
    true_params: dict[str, Any],
    false_params: dict[str, Any],
    grants: dict[str, Any] | None = None,
) -> None:
    """Each secret gets its own fresh operator, so neither run sees the other's releases."""
    seen_true = observe(fresh(grants), code, true_params)
    seen_false = observe(fresh(grants), code, false_params)
    assert seen_true == seen_false, (
        "what the operator observes depends on the secret:\n"
        f"true:  {json.dumps(seen_true, ensure_ascii=False)[:1500]}\n"
        f"false: {json.dumps(seen_false, ensure_ascii=False)[:1500]}"
    )


def secrets(t: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """params making `income > x` true of the target, and false."""
    return {"x": t["income"] - 1000}, {"x": t["income"] + 1000}


def secret_holds(t: dict[str, Any]) -> str:
    return f'({is_target(t)}) & (col("income") > params["x"])'


# === 1. quantiles ===========================================================================


def test_quantile_offset_moved_over_jobs_by_params_converges_to_the_exact_income(
    op: Operator, target: dict[str, Any]
) -> None:
    """Quantiles, offset over params: quantile(income − offset, 1.0) refined job by job."""
    code = (
        f'q = table("population").filter({in_district(target)}).agg(q=quantile(case(('
        f'{is_target(target)}, col("income") - params["offset"]), default=-1000000), 1.0))'
        '.collect()\nemit("q", q)\n'
    )
    estimate: float | None = 0.0
    for _ in range(3):
        value = cell(op.job(code, {"offset": estimate}), "q")
        if value is None:
            estimate = None
            break
        estimate += value
    assert wrong(estimate, target["income"]), estimate


@pytest.mark.parametrize("sign, q", [(1, 1.0), (-1, 0.0)], ids=["max-q1", "min-of-negated-q0"])
def test_quantile_offset_adapted_inside_one_job_over_a_small_group(
    op: Operator, target: dict[str, Any], kid_rows: list[dict[str, Any]], sign: int, q: float
) -> None:
    """Quantiles, adaptive offset in one job: quantile(±income − offset, 1.0 or 0.0) over her
    small group, each collect() offset by the previous coarsened extreme."""
    s = f'table("population").filter({target_and_kids(target)})'
    value = f'(col("income") * {sign})'
    code = (
        f"a = {s}.agg(q=quantile({value}, {q})).collect()\n"
        "first = a.rows[0][0] or 0\n"
        f"b = {s}.agg(q=quantile({value} - first, {q})).collect()\n"
        "second = b.rows[0][0] or 0\n"
        f"c = {s}.agg(q=quantile({value} - (first + second), {q})).collect()\n"
        'emit("a", a)\nemit("b", b)\nemit("c", c)\n'
    )
    job = op.job(code)
    parts = [cell(job, n) for n in ("a", "b", "c")]
    estimate = None if None in parts else sign * sum(parts)
    assert wrong(estimate, target["income"]), (parts, job.get("error"))


def test_quantile_of_the_hundreds_and_the_rest_separately_gives_every_digit(
    op: Operator, target: dict[str, Any], kid_rows: list[dict[str, Any]]
) -> None:
    """Quantiles, digit split: maxima of floor(income/100) and of income mod 100, each
    short enough to survive 2-significant-figure coarsening."""
    hundreds = '((col("income") / 100) - 0.495).round()'
    code = (
        f'r = table("population").filter({target_and_kids(target)}).agg('
        f'hi=quantile({hundreds}, 1.0), lo=quantile(col("income") - {hundreds} * 100, 1.0))'
        '.collect()\nemit("r", r)\n'
    )
    job = op.job(code)
    hi, lo = cell(job, "r", 0, 0), cell(job, "r", 0, 1)
    estimate = None if hi is None or lo is None else hi * 100 + lo
    assert wrong(estimate, target["income"]), (hi, lo, job.get("error"))


def _year_month(d: dt.date) -> int:
    return d.year * 100 + d.month


YEAR_MONTH = '(col("birth_date").year() * 100 + col("birth_date").month())'


def test_quantile_of_a_quasi_identifier_gives_the_extreme_min_refuses(
    fresh: Fresh, people: list[dict[str, Any]]
) -> None:
    """Quantiles, quasi-identifier extreme: quantile(year·100 + month of birth, 0.0) is the
    oldest resident's exact birth month, the value min() of it refuses to release."""
    oldest = min(_year_month(r["birth_date"]) for r in people)
    assert sum(_year_month(r["birth_date"]) == oldest for r in people) == 1  # one person's
    by_min = fresh().job(
        f'emit("r", table("population").agg(n=count(), m=min({YEAR_MONTH})).collect())\n'
    )
    by_quantile = fresh().job(
        f'emit("r", table("population").agg(n=count(), m=quantile({YEAR_MONTH}, 0.0)).collect())\n'
    )
    estimates = [cell(by_min, "r", 0, 1), cell(by_quantile, "r", 0, 1)]
    assert all(e is None or e != oldest for e in estimates), estimates


def test_quantile_of_a_quasi_identifier_per_district_names_each_oldest_birth_month(
    op: Operator, people: list[dict[str, Any]]
) -> None:
    """Quantiles, quasi-identifier per group: the oldest birth month of every district, each
    one resident's exact value, released uncoarsened."""
    job = op.job(
        f'emit("r", table("population").group_by("district").agg(n=count(), '
        f"oldest=quantile({YEAR_MONTH}, 0.0)).collect())\n"
    )
    by_district: dict[str, list[int]] = {}
    for r in people:
        by_district.setdefault(r["district"], []).append(_year_month(r["birth_date"]))
    singled_out = []
    for district, _, oldest in cells(job, "r"):
        values = by_district[district]
        if oldest is not None and oldest == min(values) and values.count(min(values)) == 1:
            singled_out.append((district, oldest))
    assert not singled_out, singled_out


# === 2. lineage through case() and other "coarse" group keys ================================


def _exact_dates_released(job: dict[str, Any], name: str) -> set[dt.date]:
    out = set()
    for row in cells(job, name):
        try:
            out.add(dt.date.fromisoformat(str(row[0])))
        except ValueError:
            pass
    return out


@pytest.mark.parametrize(
    "key",
    [
        'case((col("gender") == "男", col("birth_date")), default=col("birth_date"))',
        'case((col("birth_date").is_null(), col("birth_date")), default=col("birth_date"))',
        'case((col("gender") == "男", col("birth_date").cast("string")), '
        'default=col("birth_date").cast("string"))',
        'case((col("income") >= 0, case((col("gender") == "女", col("birth_date")), '
        'default=col("birth_date"))), default=col("birth_date"))',
    ],
    ids=["case-of-date", "case-on-null-test", "case-of-cast-string", "nested-case"],
)
def test_case_over_a_birth_date_does_not_list_exact_birth_dates(
    op: Operator, target: dict[str, Any], people: list[dict[str, Any]], key: str
) -> None:
    """Lineage through case(): a case() of birth_date counts as coarsened, so grouping by it
    lists the district's exact birth dates (every count suppressed, every key released)."""
    job = op.job(
        f'emit("r", table("population").filter({in_district(target)})'
        f'.derive(bd={key}).group_by("bd").agg(n=count()).collect())\n'
    )
    released = _exact_dates_released(job, "r")
    held = Counter(r["birth_date"] for r in people if r["district"] == target["district"])
    unique = {d for d, n in held.items() if n == 1}
    assert len(released & set(held)) <= 100, len(released)
    assert not released & unique, sorted(released & unique)[:5]


def test_case_over_insured_since_does_not_list_exact_dates_of_social_insurance(
    op: Operator, city: dict[str, Any]
) -> None:
    """Lineage through case(), second dataset: the quasi-identifier insured_since of social
    insurance, grouped by through a case()."""
    job = op.job(
        'emit("r", table("social_insurance").filter(col("months_paid") >= 300)'
        '.derive(d=case((col("months_paid") > 0, col("insured_since")), '
        'default=col("insured_since"))).group_by("d").agg(n=count()).collect())\n'
    )
    released = _exact_dates_released(job, "r")
    held = Counter(
        r["insured_since"]
        for r in city["social_insurance"].table.to_pylist()
        if r["months_paid"] >= 300
    )
    unique = {d for d, n in held.items() if n == 1}
    assert len(released & set(held)) <= 100, len(released)
    assert not released & unique, sorted(released & unique)[:5]


def test_grouping_by_the_sensitive_column_does_not_release_her_income_as_a_key(
    op: Operator, target: dict[str, Any]
) -> None:
    """Group keys, sensitive column: group_by("income") over the target alone; the count is
    suppressed but the key is released."""
    job = op.job(
        f'emit("r", table("population").filter({is_target(target)})'
        '.group_by("income").agg(n=count()).collect())\n'
    )
    keys = [row[0] for row in cells(job, "r")]
    estimate = keys[0] if len(keys) == 1 else None
    assert wrong(estimate, target["income"]), keys


def test_a_case_key_carrying_income_does_not_release_her_income(
    op: Operator, target: dict[str, Any]
) -> None:
    """Group keys, lineage through case(): a key that is the target's income and −1 for the
    rest of her district."""
    job = op.job(
        f'emit("r", table("population").filter({in_district(target)})'
        f'.derive(k=case(({is_target(target)}, col("income")), default=-1))'
        '.group_by("k").agg(n=count()).collect())\n'
    )
    keys = [row[0] for row in cells(job, "r") if row[0] != -1]
    estimate = keys[0] if len(keys) == 1 else None
    assert wrong(estimate, target["income"]), keys


def _bands(job: dict[str, Any]) -> list[tuple[int, int]]:
    out = []
    for row in cells(job, "r"):
        m = re.fullmatch(r"\[(\d+), (\d+)\)", str(row[0]))
        if m:
            out.append((int(m.group(1)), int(m.group(2))))
    return out


def test_a_one_yuan_wide_bucket_is_not_a_coarsening(op: Operator, target: dict[str, Any]) -> None:
    """Group keys, bucket(): bands of 1 000 yuan, then bands one yuan wide inside hers; every
    bucket() counts as coarse, and the band's label is her exact income."""
    code = (
        f'emit("r", table("population").filter({is_target(target)})'
        '.derive(b=col("income").bucket(params["edges"]))'
        '.group_by("b").agg(n=count()).collect())\n'
    )
    coarse = _bands(op.job(code, {"edges": list(range(0, 200_001, 1000))}))
    estimate = None
    if len(coarse) == 1:
        low, high = coarse[0]
        fine = _bands(op.job(code, {"edges": list(range(low, high + 1))}))
        estimate = fine[0][0] if len(fine) == 1 and fine[0][1] - fine[0][0] == 1 else None
    assert wrong(estimate, target["income"]), (coarse, estimate)


# === 3. dominance-blind differencing =========================================================


def test_a_dominated_cell_is_recovered_as_the_difference_of_two_large_sums(
    op: Operator, target: dict[str, Any], kid_rows: list[dict[str, Any]]
) -> None:
    """Dominance-blind differencing, sums: her group's sum is hidden for dominance, but the
    district and the district without the group differ by ≥ threshold rows and by exactly
    her income."""
    s = target_and_kids(target)
    code = (
        f's = table("population").filter({s}).agg(n=count(), t=sum("income")).collect()\n'
        f'a = table("population").filter({in_district(target)}).agg(t=sum("income"))'
        ".collect()\n"
        f'b = table("population").filter({in_district(target)} & ~{s}).agg(t=sum("income"))'
        ".collect()\n"
        'emit("s", s)\nemit("a", a)\nemit("b", b)\n'
    )
    job = op.job(code)
    assert cell(job, "s", 0, 1) is None  # the group's own sum is suppressed …
    a, b = cell(job, "a"), cell(job, "b")
    estimate = None if a is None or b is None else a - b
    assert wrong(estimate, target["income"]), (a, b)


def test_a_dominated_cell_is_recovered_from_two_means_and_counts(
    op: Operator, target: dict[str, Any], kid_rows: list[dict[str, Any]]
) -> None:
    """Dominance-blind differencing, means: count × mean of the district and of the district
    without her group."""
    s = target_and_kids(target)
    agg = '.agg(n=count(), m=mean("income")).collect()'
    code = (
        f'a = table("population").filter({in_district(target)}){agg}\n'
        f'b = table("population").filter({in_district(target)} & ~{s}){agg}\n'
        'emit("a", a)\nemit("b", b)\n'
    )
    job = op.job(code)
    (na, ma), (nb, mb) = (cells(job, n)[0] if cells(job, n) else [None, None] for n in "ab")
    estimate = None if None in (na, ma, nb, mb) else na * ma - nb * mb
    assert wrong(estimate, target["income"]), (na, ma, nb, mb)


def test_a_dominated_cell_is_recovered_from_two_grouped_tables(
    op: Operator, target: dict[str, Any], kid_rows: list[dict[str, Any]]
) -> None:
    """Dominance-blind differencing, grouped tables: sums by district with and without her
    group (every other row identical, so released again)."""
    s = target_and_kids(target)
    code = (
        'a = table("population").group_by("district").agg(t=sum("income")).collect()\n'
        f'b = table("population").filter(~{s}).group_by("district").agg(t=sum("income"))'
        '.collect()\nemit("a", a)\nemit("b", b)\n'
    )
    job = op.job(code)
    a = {row[0]: row[1] for row in cells(job, "a")}
    b = {row[0]: row[1] for row in cells(job, "b")}
    x, y = a.get(target["district"]), b.get(target["district"])
    estimate = None if x is None or y is None else x - y
    assert wrong(estimate, target["income"]), (x, y)


def test_a_dominated_group_does_not_give_her_income_through_its_variance(
    op: Operator, target: dict[str, Any], kid_rows: list[dict[str, Any]]
) -> None:
    """Dominance-blind, var/std: her group's sum is hidden for dominance, but the variance of
    {x, 0, …, 0} is x²/n."""
    code = (
        f'emit("r", table("population").filter({target_and_kids(target)})'
        '.agg(n=count(), t=sum("income"), v=var("income"), s=std("income")).collect())\n'
    )
    job = op.job(code)
    n, total, v, s = (cells(job, "r") or [[None] * 4])[0]
    assert total is None  # dominance did hide the sum …
    estimates = [
        math.sqrt(n * v) if n and v is not None else None,
        s * math.sqrt(n) if n and s is not None else None,
    ]
    assert all(wrong(e, target["income"]) for e in estimates), (n, v, s)


# === 4. limits and failures as oracles =======================================================


def _groups_cutoff(people: list[dict[str, Any]], t: dict[str, Any]) -> dt.date:
    """A birth-date cutoff below which (district, gender, hukou, birth year, birth month) take
    exactly 10 000 values, the target's among them and shared. An attacker finds it from
    released group counts, len(result), a few cutoffs at a time."""

    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        return (
            r["district"],
            r["gender"],
            r["hukou_type"],
            r["birth_date"].year,
            r["birth_date"].month,
        )

    ordered = sorted(people, key=lambda r: r["birth_date"])
    seen: Counter[tuple[Any, ...]] = Counter()
    for day, rows in itertools.groupby(ordered, key=lambda r: r["birth_date"]):
        for r in rows:
            seen[key(r)] += 1
        if len(seen) == 10_000 and day >= t["birth_date"] and seen[key(t)] >= 2:
            return day + dt.timedelta(days=1)
    raise AssertionError("no cutoff gives exactly 10 000 groups")


def test_the_released_rows_limit_is_not_an_oracle(
    fresh: Fresh, target: dict[str, Any], people: list[dict[str, Any]]
) -> None:
    """Limits as oracles, released rows: 10 000 groups, plus one more only when the secret
    about the target holds."""
    cutoff = _groups_cutoff(people, target)
    code = (
        f'r = table("population").filter(col("birth_date") < "{cutoff.isoformat()}")'
        '.derive(y=col("birth_date").year(), mo=col("birth_date").month(), '
        f'm=case(({secret_holds(target)}, "T"), default="F"))'
        '.group_by("district", "gender", "hukou_type", "y", "mo", "m").agg(n=count())'
        '.collect()\nemit("groups", len(r))\n'
    )
    assert_same_for_both_secrets(fresh, code, *secrets(target))


def test_a_failing_cast_in_an_unused_column_after_a_filter_is_not_an_oracle(
    fresh: Fresh, target: dict[str, Any]
) -> None:
    """Limits as oracles, failed cast: int of a district name, in a derived column nobody
    uses, after a filter that keeps the target only when the secret holds."""
    code = (
        f'r = table("population").filter({secret_holds(target)})'
        '.derive(unused=col("district").cast("int")).agg(n=count()).collect()\n'
        'emit("r", r)\n'
    )
    assert_same_for_both_secrets(fresh, code, *secrets(target))


def test_an_overflow_after_a_filter_is_not_an_oracle(fresh: Fresh, target: dict[str, Any]) -> None:
    """Limits as oracles, arithmetic overflow: income × 10¹⁶ overflows only on rows the
    secret's filter keeps."""
    code = (
        f'r = table("population").filter({secret_holds(target)})'
        '.derive(big=col("income") * 10000000000000000).agg(n=count(), t=sum("big"))'
        '.collect()\nemit("r", r)\n'
    )
    assert_same_for_both_secrets(fresh, code, *secrets(target))


def test_an_infinite_cast_in_an_unused_column_is_not_an_equality_oracle(
    fresh: Fresh, target: dict[str, Any]
) -> None:
    """Limits as oracles, failed cast without a filter: int(1 / (income − x)) in an unused
    column (its sources are all read) is infinite, and fails, only when x is her income."""
    code = (
        f'r = table("population").filter(col("birth_date") > "1900-01-01")'
        f".derive(unused=case(({is_target(target)}, "
        'lit(1) / (col("income") - params["x"])), default=0.0).cast("int"))'
        '.group_by("district", "gender").agg(n=count(), t=sum("income")).collect()\n'
        'emit("r", r)\n'
    )
    assert_same_for_both_secrets(fresh, code, {"x": target["income"]}, {"x": target["income"] + 1})


@pytest.mark.no_flag  # refused by the contract check, before anything is read
def test_an_unused_column_over_an_ungranted_column_is_not_evaluated(
    fresh: Fresh, target: dict[str, Any]
) -> None:
    """Limits as oracles, ungranted column: a failing cast of hukou_type, which the contract
    does not grant, in an unused column after the secret's filter."""
    grants = {
        "population": {
            "district": ["filter"],
            "gender": ["filter"],
            "birth_date": ["filter"],
            "income": ["filter", "aggregate"],
        }
    }
    code = (
        f'r = table("population").filter({secret_holds(target)})'
        '.derive(unused=col("hukou_type").cast("int")).agg(n=count()).collect()\n'
        'emit("r", r)\n'
    )
    assert_same_for_both_secrets(fresh, code, *secrets(target), grants=grants)


def test_the_keys_of_a_released_table_are_caught_as_an_oracle_before_a_search_completes(
    op: Operator, target: dict[str, Any]
) -> None:
    """Limits as oracles, group keys: a group "T" exists only when the secret holds, so whether
    its row is left out (and its partner hidden) is one bit per job. Exact mode cannot hide a
    bit a denial gives (auditing's own limit); detection flags every such job and suspends the
    contract long before a bisection of her income (18 jobs for 200 000 yuan) completes."""
    code = (
        f'r = table("population").derive(m=case(({secret_holds(target)}, "T"), '
        'default="F")).group_by("m").agg(n=count()).collect()\nemit("r", r)\n'
    )
    low, high, jobs = 0, 200_000, 0
    while high - low > 1:
        mid = (low + high) // 2
        r = op.submit(code, {"x": mid})
        if r.status_code != 201:
            assert r.status_code == 403 and r.json()["code"] == "contract_inactive", r.text
            break
        jobs += 1
        hidden = any(
            c["rule"] == "secondary"
            for rel in r.json()["disclosure"]["releases"]
            for c in rel["suppressed"]
        )
        low, high = (mid, high) if hidden else (low, mid)
    assert high - low > 1 and jobs < 10, (low, high, jobs)
    w = op.world
    contract = w.client.get(f"/v1/contracts/{op.contract}", headers=op.headers).json()
    assert contract["status"] == "suspended"
    assert "pinpoint" in assert_flagged(w, [op.principal])


# === 5. several datasets of the same people ==================================================


def test_income_differenced_between_population_and_social_insurance(
    op: Operator, target: dict[str, Any]
) -> None:
    """Several datasets, income: the insured of her district counted from social insurance,
    and the same people but her counted from population; each history sees one release."""
    code = (
        f'pop = table("population").filter({in_district(target)})'
        '.select("resident_id", "income")\n'
        'a = table("social_insurance").select("resident_id").join(pop, on="resident_id")'
        '.agg(t=sum("income")).collect()\n'
        f'b = table("population").filter({in_district(target)} & ~({is_target(target)}))'
        '.select("resident_id", "income")'
        '.join(table("social_insurance").select("resident_id"), on="resident_id")'
        '.agg(t=sum("income")).collect()\n'
        'emit("a", a)\nemit("b", b)\n'
    )
    job = op.job(code)
    a, b = cell(job, "a"), cell(job, "b")
    estimate = None if a is None or b is None else a - b
    assert wrong(estimate, target["income"]), (a, b, job.get("error"))


def test_contribution_base_differenced_between_the_two_datasets(
    op: Operator, target: dict[str, Any], insured: dict[str, dict[str, Any]]
) -> None:
    """Several datasets, contribution base: social insurance joined to her district, and
    population (her district, without her) joined to social insurance."""
    code = (
        f'who = table("population").filter({in_district(target)}).select("resident_id")\n'
        'a = table("social_insurance").join(who, on="resident_id")'
        '.agg(t=sum("contribution_base")).collect()\n'
        f'b = table("population").filter({in_district(target)} & ~({is_target(target)}))'
        '.select("resident_id").join(table("social_insurance")'
        '.select("resident_id", "contribution_base"), on="resident_id")'
        '.agg(t=sum("contribution_base")).collect()\n'
        'emit("a", a)\nemit("b", b)\n'
    )
    job = op.job(code)
    a, b = cell(job, "a"), cell(job, "b")
    estimate = None if a is None or b is None else a - b
    assert wrong(estimate, insured[target["resident_id"]]["contribution_base"]), (a, b)


def test_whole_table_totals_of_two_datasets_do_not_difference_to_her_base(
    fresh: Fresh, target: dict[str, Any], insured: dict[str, dict[str, Any]]
) -> None:
    """Several datasets, whole tables and two jobs: the total of social insurance, then
    everyone insured but her through population."""
    op = fresh()
    a = cell(
        op.job('emit("a", table("social_insurance").agg(t=sum("contribution_base")).collect())\n'),
        "a",
    )
    b = cell(
        op.job(
            f'emit("b", table("population").filter(~({is_target(target)}))'
            '.select("resident_id").join(table("social_insurance")'
            '.select("resident_id", "contribution_base"), on="resident_id")'
            '.agg(t=sum("contribution_base")).collect())\n'
        ),
        "b",
    )
    estimate = None if a is None or b is None else a - b
    assert wrong(estimate, insured[target["resident_id"]]["contribution_base"]), (a, b)


def test_mean_and_count_differenced_across_datasets(op: Operator, target: dict[str, Any]) -> None:
    """Several datasets, means: count × mean of her district's insured from social insurance
    and, without her, from population."""
    agg = '.agg(n=count(), m=mean("income")).collect()'
    code = (
        f'pop = table("population").filter({in_district(target)})'
        '.select("resident_id", "income")\n'
        'a = table("social_insurance").select("resident_id").join(pop, on="resident_id")'
        f"{agg}\n"
        f'b = table("population").filter({in_district(target)} & ~({is_target(target)}))'
        '.select("resident_id", "income")'
        f'.join(table("social_insurance").select("resident_id"), on="resident_id"){agg}\n'
        'emit("a", a)\nemit("b", b)\n'
    )
    job = op.job(code)
    (na, ma), (nb, mb) = (cells(job, n)[0] if cells(job, n) else [None, None] for n in "ab")
    estimate = None if None in (na, ma, nb, mb) else na * ma - nb * mb
    assert wrong(estimate, target["income"]), (na, ma, nb, mb)


# === 6. timing ===============================================================================


AMPLIFIERS = {
    "count": "agg(n=count())",
    "quantile": 'agg(q=quantile("inc2", 0.5))',
}


@pytest.mark.parametrize("aggregate", sorted(AMPLIFIERS))
def test_compute_seconds_do_not_tell_whether_a_join_fanned_out(
    fresh: Fresh, target: dict[str, Any], aggregate: str
) -> None:
    """Timing, join fan-out: her row alone joins 20 000 × 628 rows, only when the
    secret holds (12 million joined rows); the released cell is suppressed either way."""
    code = (
        f'left = table("population").derive(k=case(({secret_holds(target)}, 1), '
        'default=0)).select("k", "income")\n'
        'right = table("population").derive(k=lit(1), inc2=col("income")).select("k", "inc2")\n'
        'old = table("population").filter(col("birth_date") < "1945-01-01")'
        '.derive(k=lit(1)).select("k")\n'
        f'r = left.join(right, on="k").join(old, on="k").{AMPLIFIERS[aggregate]}.collect()\n'
        'emit("r", r)\n'
    )
    fresh().job(code, secrets(target)[1])  # warm the workers' scan caches
    seconds: dict[bool, list[float]] = {True: [], False: []}
    outputs: dict[bool, list[Any]] = {True: [], False: []}
    for _ in range(3):
        for holds, params in zip((True, False), secrets(target)):
            job = fresh().job(code, params)
            seconds[holds].append(float(job["usage"]["compute_seconds"]))
            outputs[holds].append(job["outputs"])
    assert outputs[True] == outputs[False]  # nothing else tells them apart …
    # … and the reported compute times of the two secrets must not separate them.
    assert min(seconds[True]) <= max(seconds[False]) and min(seconds[False]) <= max(
        seconds[True]
    ), seconds


@pytest.mark.parametrize("aggregate", sorted(AMPLIFIERS))
def test_compute_seconds_are_one_coarse_step_whichever_way_a_filter_goes(
    fresh: Fresh, target: dict[str, Any], aggregate: str
) -> None:
    """Timing, selectivity: a filter that keeps her alone when the secret holds, or her
    whole district otherwise, changes how much the engine sorts and sums after it; the
    report shows one coarse step for both."""
    code = (
        'r = table("population").derive(inc2=col("income") * 1.5)'
        f'.filter(({secret_holds(target)}) | ({in_district(target)}) & lit(params["wide"]))'
        f".{AMPLIFIERS[aggregate]}.collect()\n"
        'emit("r", r)\n'
    )
    quantum = Decimal(repr(fresh().world.ctx.settings.timing_quantum_seconds))
    fresh().job(code, {"wide": True, **secrets(target)[0]})  # warm the workers' caches
    reported: dict[bool, list[Decimal]] = {True: [], False: []}
    for _ in range(3):
        for wide in (True, False):
            job = fresh().job(code, {"wide": wide, **secrets(target)[0]})
            assert job["status"] == "succeeded", job
            reported[wide].append(Decimal(job["usage"]["compute_seconds"]))
    assert all(s % quantum == 0 for s in reported[True] + reported[False]), reported
    # A busy machine may push one run a step further; the usual step is the same.
    assert min(reported[True]) == min(reported[False]) == quantum, reported


# === 7. robustness of the params document ====================================================
# Refused as malformed before any job exists: nothing for detection to see.


def assert_envelope_4xx(r: Response) -> None:
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert ENVELOPE <= set(body), body
    assert body["ok"] is False and body["status"] == r.status_code, body
    assert re.fullmatch(r"[a-z][a-z0-9_]*", body["code"]), body
    assert isinstance(body["error"], str) and body["error"].strip(), body


COUNT = 'emit("n", table("population").agg(n=count()).collect())\n'


def _raw(o: Operator, params_json: str) -> Response:
    text = (
        f'{{"contract_id": {json.dumps(o.contract)}, "code": {json.dumps(COUNT)}, '
        f'"params": {params_json}}}'
    )
    return o.world.client.post(
        "/v1/jobs?wait=true",
        content=text.encode(),
        headers={**o.headers, "Content-Type": "application/json"},
    )


@pytest.mark.no_flag
@pytest.mark.parametrize(
    "number", [2**53 + 1, 2**64, -(2**63) - 1, 10**30], ids=["2^53+1", "2^64", "-2^63-1", "10^30"]
)
def test_an_integer_beyond_what_params_can_hold_is_a_clear_4xx(op: Operator, number: int) -> None:
    """Robustness, big integers: valid JSON integers beyond 2^53 in params."""
    assert_envelope_4xx(op.submit(COUNT, {"year": number}))


@pytest.mark.no_flag
@pytest.mark.parametrize("literal", ["1e400", "-1e400", "NaN", "Infinity"])
def test_a_number_no_double_can_hold_is_a_clear_4xx(op: Operator, literal: str) -> None:
    """Robustness, non-finite numbers: 1e400 (valid JSON, overflows a double) and the
    non-JSON NaN / Infinity literals in params."""
    assert_envelope_4xx(_raw(op, f'{{"x": {literal}}}'))


def _refused_or_clean(o: Operator, r: Response) -> None:
    """A 4xx envelope, or a job that ran to an end the operator caused, not a service fault."""
    if r.status_code != 201:
        assert_envelope_4xx(r)
        return
    job = r.json()
    assert job["status"] in ("succeeded", "failed", "rejected"), job["status"]
    error = job.get("error") or {}
    assert error.get("fault") != "service", error
    assert "failed in the service" not in json.dumps(error), error


@pytest.mark.no_flag
@pytest.mark.parametrize(
    "params",
    [
        {"blob": "数" * 2_000_000},
        {"values": list(range(500_000))},
    ],
    ids=["6MB-string", "500k-list"],
)
def test_megabytes_of_params_are_refused_or_run_cleanly(
    op: Operator, params: dict[str, Any]
) -> None:
    """Robustness, huge params: megabytes of params."""
    _refused_or_clean(op, op.submit(COUNT, params))


@pytest.mark.no_flag
@pytest.mark.parametrize("depth", [300, 900, 5000, 100_000])
def test_deeply_nested_params_are_refused_or_run_cleanly(op: Operator, depth: int) -> None:
    """Robustness, deep nesting: params nested hundreds to 100 000 levels deep."""
    _refused_or_clean(op, _raw(op, '{"x": ' + "[" * depth + "]" * depth + "}"))
