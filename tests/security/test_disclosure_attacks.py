"""Disclosure attacks: a determined operator, through the public HTTP API only, tries to learn
one resident's income from what the sandbox releases.

The target is a resident with an income whose (district, birth date, gender) no one else
shares, so a filter on those three columns singles her out. Each attack is made by a fresh
operator with contracts of its own (the release history that difference checks consult is
kept per contract), under a lax contract that grants every use of every column: what must
stop these attacks is disclosure control, not the contract check.

Each test either computes the attacker's estimate from what was released and asserts that it
is not the target's income, or runs the same code for two secrets (a guess that is true of
the target and one that is false) and asserts that nothing the operator observes differs: the
HTTP status, the job's status, error, outputs, disclosure report, usage (other than the time
measured) and charge, and the contract's privacy budget.

Classes of attack:

1. join fan-out: one person on one side of a join, everyone on the other;
2. error oracles: whether a job errors depends on the data;
3. padding: everyone else contributes a known constant;
4. group-key presence: a key appears only when the person matches;
5. withheld is not unseen: a job whose outputs are withheld encodes what it saw into what
   the operator still observes of it (usage, report, charge, error);
6. differencing beyond pairs: unions of three or more releases, or releases split across
   contracts of one operator;
7. conditional counts, shares and totals: a condition true of all but one, a total beside
   its cells, a share beside its cell.
"""

from __future__ import annotations

import itertools
import json
import math
import queue
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from conftest import World, make_world
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from waiting import wait_until

from sandbox.catalog.synthetic import HUKOU_TYPES
from sandbox.records import releases

from .conftest import LAX_GRANTS, assert_flagged

# Every use of every column, joins included.
GRANTS = {
    "population": {column: [*uses, "join"] for column, uses in LAX_GRANTS["population"].items()}
}
PRIVATE = {"population": {"epsilon": "5.0", "per_job_epsilon": "0.5"}}
# Noisy counts of one person or none must not cross the threshold by chance: two runs would
# then differ by their noise alone.
HIGH_THRESHOLD = {"min_contributors": 100}
# Iterations of a busy loop that keeps a job running for a second or two.
SPIN = 3 * 10**6
# Numbers the registered operators' names and licences.
_registered = itertools.count(1)


# --- the instance and its attackers -------------------------------------------------------


@pytest.fixture(scope="module")
def attack_world(
    tmp_path_factory: pytest.TempPathFactory, city: dict[str, Any], ray_local: None
) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("disclosure-attacks")
    yield from make_world(tmp, city, "ray", raise_server_exceptions=False, partition_rows=6000)


@dataclass
class Operator:
    """A freshly registered operator with an Ed25519 key and contracts of its own."""

    world: World
    principal: dict[str, Any]
    key: Ed25519PrivateKey
    contracts: list[str] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return self.world.h(self.principal)

    @property
    def contract(self) -> str:
        return self.contracts[0]

    def new_contract(self, grants: dict[str, Any] | None = None, **terms: Any) -> str:
        """Apply, have it approved and signed by the bureau, sign it: an active contract."""
        cid = self.world.activate(
            self.principal, self.key, grants or GRANTS, **{"purpose": "居民收入结构研究", **terms}
        )
        self.contracts.append(cid)
        return cid

    def post(
        self,
        code: str,
        params: dict[str, Any] | None = None,
        contract: str | None = None,
        wait: bool = True,
    ) -> Any:
        return self.world.client.post(
            f"/v1/jobs{'?wait=true' if wait else ''}",
            headers=self.headers,
            json={"contract_id": contract or self.contract, "code": code, "params": params or {}},
        )

    def job(self, job_id: str) -> dict[str, Any]:
        r = self.world.client.get(f"/v1/jobs/{job_id}", headers=self.headers)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def run(
        self, code: str, params: dict[str, Any] | None = None, contract: str | None = None
    ) -> dict[str, Any]:
        """Submit and wait: the job as the operator sees it, whatever became of it. An
        attack that is refused releases nothing, a defence like any other."""
        r = self.post(code, params, contract)
        body = r.json()
        if r.status_code == 201:
            return body  # type: ignore[no-any-return]
        if body.get("job_id"):
            return self.job(body["job_id"])
        return {"status": f"http_{r.status_code}", "error": body, "outputs": {}}

    def wait(self, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
        self.world.wait_for_job(job_id, self.principal, timeout)
        return self.job(job_id)

    def budget(self, contract: str | None = None) -> dict[str, Any]:
        r = self.world.client.get(
            f"/v1/contracts/{contract or self.contract}/budget", headers=self.headers
        )
        assert r.status_code == 200, r.text
        return r.json()["privacy"]  # type: ignore[no-any-return]

    def observe(self, response: Any) -> dict[str, Any]:
        """Everything this operator can see of a submission and its aftermath, without what
        differs between any two submissions (ids, timestamps, time measured)."""
        body = response.json()
        seen: dict[str, Any] = {"http_status": response.status_code}
        job_id = body.get("id") if response.status_code == 201 else body.get("job_id")
        if response.status_code != 201:
            seen["refusal"] = {k: v for k, v in body.items() if k != "job_id"}
        if job_id:
            job = self.wait(job_id)
            seen["job"] = _stable(job)
            seen["outputs"] = {
                name: self.world.client.get(
                    f"/v1/jobs/{job_id}/outputs/{name}", headers=self.headers
                ).json()
                for name in sorted(job.get("outputs") or {})
            }
        seen["budgets"] = [self.budget(cid) for cid in self.contracts]
        text = json.dumps(seen, sort_keys=True, ensure_ascii=False)
        for i, cid in enumerate(self.contracts):
            text = text.replace(cid, f"<contract {i}>")
        text = text.replace(self.principal["id"], "<operator>")
        if job_id:
            text = text.replace(job_id, "<job>")
        return json.loads(text)  # type: ignore[no-any-return]


def _stable(job: dict[str, Any]) -> dict[str, Any]:
    job = {
        k: v
        for k, v in job.items()
        if k not in ("id", "contract_id", "operator_id", "created_at", "finished_at")
    }
    job["usage"] = {k: v for k, v in (job.get("usage") or {}).items() if k != "compute_seconds"}
    for money in ("quote", "charge"):
        if job.get(money):
            # Time is billed per second measured; every other line is what the job did.
            job[money] = [line for line in job[money]["lines"] if line["unit"] != "compute_seconds"]
    return job


@pytest.fixture
def new_operator(attack_world: World) -> Iterator[Callable[..., Operator]]:
    """Registers operators through POST /v1/principals, as the bureau, each with an active
    contract (terms as given). Afterwards: the attack raised at least one flag for the
    regulator (detection, the second line), whatever the release gate did."""
    made: list[Operator] = []

    def make(grants: dict[str, Any] | None = None, **terms: Any) -> Operator:
        count = next(_registered)
        op = Operator(
            attack_world,
            *attack_world.register_operator(f"攻击测试公司{count}", f"授权运营-2026-A{count:03d}"),
        )
        op.new_contract(grants, **terms)
        made.append(op)
        return op

    yield make
    assert_flagged(attack_world, [op.principal for op in made])


@pytest.fixture
def operator(new_operator: Callable[..., Operator]) -> Operator:
    return new_operator()


# --- the target -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    row: dict[str, Any]
    district_rows: tuple[dict[str, Any], ...]

    @property
    def income(self) -> int:
        return int(self.row["income"])

    @property
    def who(self) -> str:
        """A condition true of the target alone."""
        r = self.row
        return (
            f'((col("district") == "{r["district"]}") & '
            f'(col("birth_date") == "{r["birth_date"].isoformat()}") & '
            f'(col("gender") == "{r["gender"]}"))'
        )

    @property
    def district(self) -> str:
        return f'(col("district") == "{self.row["district"]}")'

    @property
    def district_total(self) -> int:
        return sum(int(r["income"]) for r in self.district_rows)


@pytest.fixture(scope="module")
def target(city: dict[str, Any]) -> Target:
    """As tests/system/test_http_differencing.py picks her: unique (district, birth date,
    gender), some income."""
    rows = city["population"].table.to_pylist()
    seen = Counter((r["district"], r["birth_date"], r["gender"]) for r in rows)
    row = next(
        r
        for r in rows
        if r["income"] > 0 and seen[(r["district"], r["birth_date"], r["gender"])] == 1
    )
    return Target(row, tuple(r for r in rows if r["district"] == row["district"]))


def code(text: str, target: Target) -> str:
    return text.replace("WHO", target.who).replace("DISTRICT", target.district)


def rows(job: dict[str, Any], name: str = "r") -> list[list[Any]]:
    """The rows of a released table ([] when the job released none)."""
    out = (job.get("outputs") or {}).get(name)
    return list(out["rows"]) if out else []


def cell(job: dict[str, Any], column: str, name: str = "r", row: int = 0) -> Any:
    """One released value; None when suppressed or not released at all."""
    out = (job.get("outputs") or {}).get(name)
    if not out or row >= len(out["rows"]):
        return None
    return out["rows"][row][[c["name"] for c in out["columns"]].index(column)]


def missed(estimate: float | None, truth: float) -> bool:
    """The attacker's estimate is not the truth (or there is none)."""
    return estimate is None or not math.isfinite(estimate) or abs(estimate - truth) > 1.0


def same_for_both_secrets(
    new_operator: Callable[..., Operator],
    text: str,
    secrets: tuple[dict[str, Any], dict[str, Any]],
    **terms: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The same code run by two fresh operators, with a params value that is true of the
    target and one that is false: what each observes."""
    seen = []
    for params in secrets:
        op = new_operator(**terms)
        observed = json.dumps(op.observe(op.post(text, params)), sort_keys=True, ensure_ascii=False)
        # A refusal at the plan check may quote the operator's own expression, constants
        # (params) included: that is the code speaking, not the data.
        for value in params.values():
            observed = re.sub(rf"(?<![\d.]){re.escape(str(value))}(?![\d.])", "<param>", observed)
        seen.append(json.loads(observed))
    return seen[0], seen[1]


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two observations differ, as `path: a != b` lines (for failure messages)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [
            d
            for k in sorted(set(a) | set(b), key=str)
            for d in differences(a.get(k, "<absent>"), b.get(k, "<absent>"), f"{path}.{k}")
        ]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r:.300} != {b!r:.300}"]


def assert_same(true: dict[str, Any], false: dict[str, Any]) -> None:
    """The operator observed the same whether the guess about the target was true or false."""
    assert true == false, "\n".join(differences(true, false))


# --- 1. join fan-out --------------------------------------------------------------------------


def test_fanout_mean_over_a_literal_key(operator: Operator, target: Target) -> None:
    """Join fan-out, mean: everyone joined on lit(1) to the target's row."""
    job = operator.run(
        code(
            """
one = table("population").filter(WHO).derive(k=lit(1), v=col("income")).select("k", "v")
everyone = table("population").derive(k=lit(1))
emit("r", everyone.join(one, on="k").agg(n=count(), m=mean("v")).collect())
""",
            target,
        )
    )
    assert missed(cell(job, "m"), target.income), rows(job)


def test_fanout_sum_over_count_with_a_constant_expression_key(
    operator: Operator, target: Target
) -> None:
    """Join fan-out, sum/count: the key is col("income") * 0 on both sides."""
    job = operator.run(
        code(
            """
one = table("population").filter(WHO).derive(k=col("income") * 0, v=col("income"))
everyone = table("population").derive(k=col("income") * 0).select("k", "district")
joined = everyone.join(one.select("k", "v"), on="k")
emit("r", joined.agg(n=count(), s=sum("v")).collect())
""",
            target,
        )
    )
    n, s = cell(job, "n"), cell(job, "s")
    assert missed(None if n is None or s is None or n == 0 else s / n, target.income), rows(job)


def test_fanout_key_is_the_cast_of_an_always_true_comparison(
    operator: Operator, target: Target
) -> None:
    """Join fan-out, mean: the key is (birth_date >= 1900-01-01).cast("int")."""
    job = operator.run(
        code(
            """
always = (col("birth_date") >= "1900-01-01").cast("int")
one = table("population").filter(WHO).derive(k=always, v=col("income")).select("k", "v")
everyone = table("population").derive(k=always).select("k", "hukou_type")
emit("r", everyone.join(one, on="k").agg(m=mean("v")).collect())
""",
            target,
        )
    )
    assert missed(cell(job, "m"), target.income), rows(job)


def test_fanout_on_a_low_cardinality_attribute(operator: Operator, target: Target) -> None:
    """Join fan-out, mean: joined on gender, so everyone of her gender carries her income."""
    job = operator.run(
        code(
            """
one = table("population").filter(WHO).derive(v=col("income")).select("gender", "v")
everyone = table("population").select("gender", "district")
emit("r", everyone.join(one, on="gender").agg(n=count(), m=mean("v")).collect())
""",
            target,
        )
    )
    assert missed(cell(job, "m"), target.income), rows(job)


def test_fanout_grouped_repeats_the_value_in_every_group(
    operator: Operator, target: Target
) -> None:
    """Join fan-out, grouped: joined on district, each hukou_type cell is her income."""
    job = operator.run(
        code(
            """
one = table("population").filter(WHO).derive(v=col("income")).select("district", "v")
everyone = table("population").select("district", "hukou_type")
emit("r", everyone.join(one, on="district").group_by("hukou_type")
     .agg(n=count(), m=mean("v")).collect())
""",
            target,
        )
    )
    estimates = [r[2] for r in rows(job) if r[2] is not None]
    assert all(missed(e, target.income) for e in estimates), rows(job)


def test_fanout_through_a_derived_table_of_the_target(operator: Operator, target: Target) -> None:
    """Join fan-out, derived right side: her income * 2 + 7 under a string literal key."""
    job = operator.run(
        code(
            """
one = (table("population").filter(WHO)
       .derive(k=lit("all"), v=col("income") * 2 + 7).select("k", "v"))
everyone = table("population").derive(k=lit("all")).select("k", "gender")
emit("r", everyone.join(one, on="k").group_by("gender").agg(s=sum("v"), n=count()).collect())
""",
            target,
        )
    )
    estimates = [None if s is None or not n else (s / n - 7) / 2 for _, s, n in rows(job)]
    assert all(missed(e, target.income) for e in estimates), rows(job)


def test_fanout_with_the_target_on_the_primary_side(operator: Operator, target: Target) -> None:
    """Join fan-out, left side filtered: her row joined to all 20 000, her income averaged."""
    job = operator.run(
        code(
            """
one = table("population").filter(WHO).derive(k=col("income") * 0, v=col("income"))
everyone = table("population").derive(k=col("income") * 0).select("k", "district")
joined = one.select("k", "v").join(everyone, on="k")
emit("r", joined.agg(n=count(), m=mean("v"), s=sum("v")).collect())
""",
            target,
        )
    )
    n, m, s = (cell(job, c) for c in ("n", "m", "s"))
    assert missed(m, target.income), rows(job)
    assert missed(None if s is None or not n else s / n, target.income), rows(job)


# --- 2. error oracles -------------------------------------------------------------------------


def _above(target: Target) -> tuple[dict[str, Any], dict[str, Any]]:
    """params for `income > g`: true of the target, then false."""
    return {"g": target.income - 1}, {"g": target.income}


def test_error_oracle_integer_overflow_of_a_multiplication(
    new_operator: Callable[..., Operator], target: Target
) -> None:
    """Error oracle, int overflow: income * 2**62 after a filter keeping her iff income > g."""
    text = code(
        """
t = table("population").filter(WHO & (col("income") > params["g"]))
emit("r", t.derive(x=col("income").cast("int") * 4611686018427387904)
     .agg(s=sum("x")).collect())
""",
        target,
    )
    true, false = same_for_both_secrets(new_operator, text, _above(target))
    assert_same(true, false)


def test_error_oracle_float_to_int_cast_out_of_range(
    new_operator: Callable[..., Operator], target: Target
) -> None:
    """Error oracle, float->int cast: (income * 1e300).cast('int') after the same filter."""
    text = code(
        """
t = table("population").filter(WHO & (col("income") > params["g"]))
emit("r", t.derive(x=(col("income") * 1e300).cast("int")).agg(n=count(), s=sum("x")).collect())
""",
        target,
    )
    true, false = same_for_both_secrets(new_operator, text, _above(target))
    assert_same(true, false)


def test_error_oracle_string_to_int_cast_over_everyone(
    new_operator: Callable[..., Operator], target: Target
) -> None:
    """Error oracle, string->int cast over everyone: her "n/a" exists iff income > g."""
    text = code(
        """
x = case((WHO & (col("income") > params["g"]), "n/a"), default="1").cast("int")
emit("r", table("population").derive(x=x).agg(n=count(), s=sum("x")).collect())
""",
        target,
    )
    true, false = same_for_both_secrets(new_operator, text, _above(target))
    assert_same(true, false)


def test_error_oracle_addition_overflow_is_a_comparison(
    new_operator: Callable[..., Operator], target: Target
) -> None:
    """Error oracle, addition overflow: income + (2**63 - 1 - g) overflows iff income > g."""
    text = code(
        """
t = table("population").filter(WHO)
t = t.derive(x=col("income") + (9223372036854775807 - params["g"])).filter(col("x") > 0)
emit("r", t.agg(n=count()).collect())
""",
        target,
    )
    true, false = same_for_both_secrets(new_operator, text, _above(target))
    assert_same(true, false)


def test_error_oracle_a_large_value_in_a_summed_cell(
    new_operator: Callable[..., Operator], target: Target
) -> None:
    """Error oracle, no arithmetic error: 2**60 summed in her row iff income > g."""
    text = code(
        """
v = case((WHO & (col("income") > params["g"]), 1152921504606846976), default=0)
emit("r", table("population").agg(n=count(), s=sum(v)).collect())
""",
        target,
    )
    true, false = same_for_both_secrets(new_operator, text, _above(target))
    assert_same(true, false)


def test_error_oracle_division_by_zero_in_a_large_cell(
    new_operator: Callable[..., Operator], target: Target
) -> None:
    """Error oracle, division by zero in her row iff income > g, summed over everyone."""
    text = code(
        """
d = case((WHO & (col("income") > params["g"]), 0), default=1)
emit("r", table("population").agg(n=count(), s=sum(1 / d)).collect())
""",
        target,
    )
    true, false = same_for_both_secrets(new_operator, text, _above(target))
    assert_same(true, false)


def test_error_oracle_guessing_the_exact_value(
    new_operator: Callable[..., Operator], target: Target
) -> None:
    """Error oracle, exact guess: (1 / (income - guess)).cast('int') over her row."""
    text = code(
        """
t = table("population").filter(WHO)
emit("r", t.derive(x=(1 / (col("income") - params["guess"])).cast("int"))
     .agg(s=sum("x")).collect())
""",
        target,
    )
    true, false = same_for_both_secrets(
        new_operator, text, ({"guess": target.income}, {"guess": target.income + 1})
    )
    assert_same(true, false)


def test_error_oracle_under_differential_privacy(
    new_operator: Callable[..., Operator], target: Target
) -> None:
    """Error oracle under differential privacy: int overflow iff income > g, noisy count."""
    text = code(
        """
t = table("population").filter(WHO & (col("income") > params["g"]))
t = t.derive(x=col("income") * 4611686018427387904).filter(col("x") > 0)
emit("r", t.agg(n=count()).collect())
""",
        target,
    )
    true, false = same_for_both_secrets(
        new_operator, text, _above(target), privacy=PRIVATE, disclosure=HIGH_THRESHOLD
    )
    assert_same(true, false)


def test_a_collect_that_errors_under_differential_privacy_spends_its_epsilon(
    new_operator: Callable[..., Operator], target: Target
) -> None:
    """Error oracle under differential privacy, budget: an erroring collect spends its ε too."""
    text = code(
        """
x = case((WHO & (col("income") > params["g"]), "n/a"), default="1").cast("int")
emit("r", table("population").filter(x >= 0).agg(n=count()).collect())
""",
        target,
    )
    budgets = []
    for params in _above(target):
        op = new_operator(privacy=PRIVATE)
        op.observe(op.post(text, params))
        budgets.append(op.budget())
    assert budgets[0] == budgets[1]
    assert all(Decimal(b["population"]["spent"]) > 0 for b in budgets), budgets


# --- 3. padding -----------------------------------------------------------------------------


def test_padding_sum_with_a_constant(operator: Operator, target: Target) -> None:
    """Padding, sum: everyone else contributes 1000, so s - 1000 (n - 1) is her income."""
    job = operator.run(
        code(
            """
v = case((WHO, col("income")), default=1000.0)
emit("r", table("population").agg(n=count(), s=sum(v)).collect())
""",
            target,
        )
    )
    n, s = (cell(job, c) for c in ("n", "s"))
    assert missed(None if n is None or s is None else s - 1000 * (n - 1), target.income), rows(job)


def test_padding_mean_with_a_constant(operator: Operator, target: Target) -> None:
    """Padding, mean: m n - 1000 (n - 1) is her income."""
    job = operator.run(
        code(
            """
v = case((WHO, col("income")), default=1000.0)
emit("r", table("population").agg(n=count(), m=mean(v)).collect())
""",
            target,
        )
    )
    n, m = (cell(job, c) for c in ("n", "m"))
    assert missed(None if n is None or m is None else m * n - 1000 * (n - 1), target.income), rows(
        job
    )


def test_padding_variance_of_zeros_and_one_value(operator: Operator, target: Target) -> None:
    """Padding, var: everyone else 0, so the sample variance is income**2 / n."""
    job = operator.run(
        code(
            """
v = case((WHO, col("income")), default=0.0)
emit("r", table("population").agg(n=count(), v=var(v)).collect())
""",
            target,
        )
    )
    n, v = (cell(job, c) for c in ("n", "v"))
    assert missed(None if n is None or v is None else math.sqrt(n * v), target.income), rows(job)


def test_padding_std_around_a_constant(operator: Operator, target: Target) -> None:
    """Padding, std: everyone else 1000, so her income is 1000 ± std·sqrt(n)."""
    job = operator.run(
        code(
            """
v = case((WHO, col("income")), default=1000.0)
emit("r", table("population").agg(n=count(), sd=std(v)).collect())
""",
            target,
        )
    )
    n, sd = (cell(job, c) for c in ("n", "sd"))
    candidates = (
        [] if n is None or sd is None else [1000 + sd * math.sqrt(n), 1000 - sd * math.sqrt(n)]
    )
    assert all(missed(c, target.income) for c in candidates), rows(job)


def test_padding_with_an_expression_instead_of_a_literal(
    operator: Operator, target: Target
) -> None:
    """Padding, sum: the padding is col('income') * 0 + 1000 instead of a literal."""
    job = operator.run(
        code(
            """
v = case((WHO, col("income")), default=col("income") * 0 + 1000)
emit("r", table("population").agg(n=count(), s=sum(v)).collect())
""",
            target,
        )
    )
    n, s = (cell(job, c) for c in ("n", "s"))
    assert missed(None if n is None or s is None else s - 1000 * (n - 1), target.income), rows(job)


def test_padding_with_two_constants(operator: Operator, target: Target) -> None:
    """Padding, sum with two constants: 1000 for men, 2000 for women, counts released apart."""
    job = operator.run(
        code(
            """
pad = case((col("gender") == "男", 1000), default=2000)
s = table("population").agg(s=sum(case((WHO, col("income")), default=pad))).collect()
by_gender = table("population").group_by("gender").agg(n=count()).collect()
emit("s", s)
emit("g", by_gender)
""",
            target,
        )
    )
    total = cell(job, "s", name="s")
    counts = {g: n for g, n in rows(job, "g")}
    estimate = None
    if total is not None and len(counts) == 2 and None not in counts.values():
        pads = {"男": 1000, "女": 2000}
        estimate = total - sum(pads[g] * n for g, n in counts.items()) + pads[target.row["gender"]]
    assert missed(estimate, target.income), (total, counts)


def test_padding_within_the_groups_of_a_grouped_release(operator: Operator, target: Target) -> None:
    """Padding, grouped sum: every hukou_type cell is 1000 per person, except hers."""
    job = operator.run(
        code(
            """
v = case((WHO, col("income")), default=1000)
emit("r", table("population").group_by("hukou_type").agg(n=count(), s=sum(v)).collect())
""",
            target,
        )
    )
    estimates = [None if n is None or s is None else s - 1000 * (n - 1) for _, n, s in rows(job)]
    assert all(missed(e, target.income) for e in estimates), rows(job)


def test_padding_count_distinct_of_an_identifier_under_a_sensitive_condition(
    new_operator: Callable[..., Operator], target: Target
) -> None:
    """Padding, count_distinct: her resident_id iff income > T, "x" for everyone else."""
    text = code(
        """
v = case((WHO & (col("income") > params["g"]), col("resident_id")), default="x")
emit("r", table("population").agg(n=count(), d=count_distinct(v)).collect())
""",
        target,
    )
    true, false = same_for_both_secrets(new_operator, text, _above(target))
    assert_same(true, false)


def test_padding_count_distinct_of_a_flag(
    new_operator: Callable[..., Operator], target: Target
) -> None:
    """Padding, count_distinct of a flag over her district: 1 for her iff income > T, else 0."""
    text = code(
        """
v = case((WHO & (col("income") > params["g"]), 1), default=0)
emit("r", table("population").filter(DISTRICT).agg(d=count_distinct(v)).collect())
""",
        target,
    )
    true, false = same_for_both_secrets(new_operator, text, _above(target))
    assert_same(true, false)


# --- 4. group-key presence ----------------------------------------------------------------


def _key_presence(
    new_operator: Callable[..., Operator], target: Target, aggregate: str, **terms: Any
) -> None:
    text = code(
        f"""
t = table("population").filter(WHO & (col("income") > params["g"]))
emit("r", t.{aggregate}.collect())
""",
        target,
    )
    true, false = same_for_both_secrets(new_operator, text, _above(target), **terms)
    assert_same(true, false)


def test_key_presence_by_district(new_operator: Callable[..., Operator], target: Target) -> None:
    """Group-key presence, by district: her district's key appears only if income > T."""
    _key_presence(new_operator, target, 'group_by("district").agg(n=count())')


def test_key_presence_by_gender(new_operator: Callable[..., Operator], target: Target) -> None:
    """Group-key presence, by gender, with a mean."""
    _key_presence(new_operator, target, 'group_by("gender").agg(n=count(), m=mean("income"))')


def test_key_presence_by_hukou_type(new_operator: Callable[..., Operator], target: Target) -> None:
    """Group-key presence, by hukou_type."""
    _key_presence(new_operator, target, 'group_by("hukou_type").agg(s=sum("income"))')


def test_key_presence_by_two_keys(new_operator: Callable[..., Operator], target: Target) -> None:
    """Group-key presence, by district and gender."""
    _key_presence(new_operator, target, 'group_by("district", "gender").agg(n=count())')


def test_key_presence_whole_table(new_operator: Callable[..., Operator], target: Target) -> None:
    """Group-key presence, no keys: a whole-table aggregate over her or over nobody."""
    _key_presence(new_operator, target, 'agg(n=count(), m=mean("income"), s=sum("income"))')


def test_key_presence_under_differential_privacy(
    new_operator: Callable[..., Operator], target: Target
) -> None:
    """Group-key presence under differential privacy: noisy counts, keys from the data."""
    _key_presence(
        new_operator,
        target,
        'group_by("district").agg(n=count())',
        privacy=PRIVATE,
        disclosure=HIGH_THRESHOLD,
    )


def test_key_is_a_one_yuan_band_of_her_income(operator: Operator, target: Target) -> None:
    """Group-key presence, the key itself: her income bucketed into one-yuan bands."""
    job = operator.run(
        code(
            """
bands = col("income").bucket(list(range(0, 10000)))
emit("r", table("population").filter(WHO).derive(b=bands).group_by("b").agg(n=count())
     .collect())
""",
            target,
        )
    )
    assert target.income < 10000
    estimates = []
    for band, _ in rows(job):
        m = re.fullmatch(r"\[(\d+), (\d+)\)", band or "")
        estimates.append(int(m.group(1)) if m and int(m.group(2)) - int(m.group(1)) <= 2 else None)
    assert all(missed(e, target.income) for e in estimates), rows(job)


# --- 5. withheld is not unseen ------------------------------------------------------------


def _audits(op: Operator) -> int:
    gate = releases.gate(op.world.ctx)
    if hasattr(gate.audits, "remote"):
        import ray

        return int(ray.get(gate.audits.remote(op.principal["id"])))
    return int(gate.audits(op.principal["id"]))


def _withheld(
    new_operator: Callable[..., Operator],
    target: Target,
    encode: str,
    jobs_started: queue.Queue[str],
) -> None:
    """Two jobs of one contract at once: the later-settling one releases her district
    without her, then encodes whether that sum is above g into `encode`; the other releases
    her whole district meanwhile, so the later one's outputs conflict with it. Run for a g
    true and a g false of what the later job saw (each time by a fresh operator): once her
    district's total is released, nothing the operator observes of the later job may depend
    on g, since the total minus that sum is her income."""
    minus = target.district_total - target.income  # what the later job's collect sees
    late = code(
        f"""
v = table("population").filter(DISTRICT & ~WHO).agg(s=sum("income")).collect().rows[0][0]
x = 0
for i in range({SPIN}):
    x += 1
hit = v is not None and v > params["g"]
{encode}
""",
        target,
    )
    first = code(
        'emit("r", table("population").filter(DISTRICT).agg(s=sum("income")).collect())', target
    )
    seen, totals = [], []
    for g in (minus - 1, minus):
        op = new_operator()
        r = op.post(late, {"g": g}, wait=False)
        assert r.status_code == 201, r.text
        while jobs_started.get(timeout=30) != r.json()["id"]:
            pass  # the other job of the previous round
        # Its first collect happens in a Ray worker: the gate says when it has been audited,
        # so that the other job reaches the gate after it.
        wait_until(lambda op=op: _audits(op) >= 1, 30, interval=0.02, message="no audit")
        totals.append(cell(op.run(first), "s"))
        seen.append(op.observe(r))
    if any(total is not None for total in totals):
        assert_same(*seen)


def test_withheld_job_encodes_the_value_in_its_number_of_collects(
    new_operator: Callable[..., Operator], target: Target, jobs_started: queue.Queue[str]
) -> None:
    """Withheld is not unseen, collects: the later job collects once more iff its sum > g."""
    _withheld(
        new_operator,
        target,
        """
if hit:
    table("population").agg(n=count()).collect()
""",
        jobs_started,
    )


def test_withheld_job_encodes_the_value_in_its_disclosure_report(
    new_operator: Callable[..., Operator], target: Target, jobs_started: queue.Queue[str]
) -> None:
    """Withheld is not unseen, report keys: group by gender iff its sum > g, else hukou_type."""
    _withheld(
        new_operator,
        target,
        """
key = "gender" if hit else "hukou_type"
emit("k", table("population").group_by(key).agg(n=count()).collect())
""",
        jobs_started,
    )


def test_withheld_job_encodes_the_value_in_its_number_of_emits(
    new_operator: Callable[..., Operator], target: Target, jobs_started: queue.Queue[str]
) -> None:
    """Withheld is not unseen, emits: one output or two, as usage and charge count them."""
    _withheld(
        new_operator,
        target,
        """
emit("a", 1)
if hit:
    emit("b", 2)
""",
        jobs_started,
    )


def test_withheld_job_puts_the_value_in_its_error_message(
    new_operator: Callable[..., Operator], target: Target, jobs_started: queue.Queue[str]
) -> None:
    """Withheld is not unseen, error: the later job fails naming the sum it saw, or ends."""
    _withheld(
        new_operator,
        target,
        """
if hit:
    raise ValueError("the district without her sums to " + str(v))
""",
        jobs_started,
    )


# --- 6. differencing beyond pairs -----------------------------------------------------------


def _parts(target: Target) -> list[str]:
    """Her district without her, in three disjoint parts by hukou type."""
    h = HUKOU_TYPES
    return [
        f'DISTRICT & ~WHO & (col("hukou_type") == "{h[0]}")',
        f'DISTRICT & ~WHO & (col("hukou_type") == "{h[1]}")',
        f'DISTRICT & ~WHO & col("hukou_type").isin(["{h[2]}", "{h[3]}"])',
    ]


def _total(op: Operator, where: str, target: Target, contract: str | None = None) -> Any:
    job = op.run(
        code(
            f'emit("r", table("population").filter({where})'
            '.agg(n=count(), s=sum("income")).collect())',
            target,
        ),
        contract=contract,
    )
    return cell(job, "s")


def _minus(total: Any, *parts: Any) -> float | None:
    if total is None or any(p is None for p in parts):
        return None
    return float(total - sum(parts))


def test_differencing_three_pairwise_unions_and_the_whole(
    operator: Operator, target: Target
) -> None:
    """Differencing beyond pairs: A∪B, B∪C, A∪C, then A∪B∪C∪{her} (her district)."""
    a, b, c = _parts(target)
    unions = [_total(operator, f"({x}) | ({y})", target) for x, y in ((a, b), (b, c), (a, c))]
    whole = _total(operator, "DISTRICT", target)
    estimate = None if None in unions or whole is None else whole - sum(unions) / 2
    assert missed(estimate, target.income), (unions, whole)


def test_differencing_three_disjoint_parts_and_the_whole(
    operator: Operator, target: Target
) -> None:
    """Differencing beyond pairs: A, B, C released one by one, then her district."""
    parts = [_total(operator, p, target) for p in _parts(target)]
    whole = _total(operator, "DISTRICT", target)
    assert missed(_minus(whole, *parts), target.income), (parts, whole)


def test_differencing_within_one_job(operator: Operator, target: Target) -> None:
    """Differencing beyond pairs, one job: A, B, C and A∪B∪C∪{her} in four collects."""
    a, b, c = _parts(target)
    job = operator.run(
        code(
            f"""
pop = table("population")
emit("a", pop.filter({a}).agg(s=sum("income")).collect())
emit("b", pop.filter({b}).agg(s=sum("income")).collect())
emit("c", pop.filter({c}).agg(s=sum("income")).collect())
emit("whole", pop.filter(DISTRICT).agg(s=sum("income")).collect())
""",
            target,
        )
    )
    values = [cell(job, "s", name=n) for n in ("whole", "a", "b", "c")]
    assert missed(_minus(*values), target.income), values


def test_differencing_a_grouped_release_of_everyone_but_her(
    operator: Operator, target: Target
) -> None:
    """Differencing beyond pairs: her district without her by hukou_type, then the total."""
    grouped = operator.run(
        code(
            'emit("r", table("population").filter(DISTRICT & ~WHO)'
            '.group_by("hukou_type").agg(s=sum("income")).collect())',
            target,
        )
    )
    whole = _total(operator, "DISTRICT", target)
    cells = [s for _, s in rows(grouped)] or [None]
    assert missed(_minus(whole, *cells), target.income), (rows(grouped), whole)


def test_differencing_a_pair_split_across_two_contracts(operator: Operator, target: Target) -> None:
    """Differencing across two contracts of one operator: district, district without her."""
    second = operator.new_contract()
    whole = _total(operator, "DISTRICT", target)
    without = _total(operator, "DISTRICT & ~WHO", target, contract=second)
    assert missed(_minus(whole, without), target.income), (whole, without)


def test_differencing_a_tracker_split_across_two_contracts(
    operator: Operator, target: Target
) -> None:
    """Differencing across two contracts, tracker: all and P on one, ~P & ~her on the other."""
    second = operator.new_contract()
    p = f'(col("hukou_type") != "{target.row["hukou_type"]}")'
    everyone = _total(operator, "lit(True)", target)
    in_p = _total(operator, p, target)
    rest = _total(operator, f"~{p} & ~WHO", target, contract=second)
    assert missed(_minus(everyone, in_p, rest), target.income), (everyone, in_p, rest)


# --- 7. conditional counts, shares and totals ----------------------------------------------
# A condition true of everyone but her, beside the count of everyone, is the difference of two
# counts inside one row; a total beside its cells is a published total inside one table; a
# share beside its cell gives its total. A denial still tells one bit per release (auditing's
# own limit), so the bisection over her income is also checked to be stopped by detection.


def test_a_condition_true_of_everyone_but_her_does_not_difference_to_her(
    operator: Operator, target: Target
) -> None:
    """count() − count_if(~WHO) in one row: 1 would say she is there, and with a condition on
    her income, one bit of it per release."""
    job = operator.run(
        code(
            'emit("r", table("population").agg(n=count(), rest=count_if(~WHO)).collect())',
            target,
        )
    )
    n, rest = cell(job, "n"), cell(job, "rest")
    assert n is None or rest is None or n - rest != 1, (n, rest)


def test_a_share_of_one_person_is_not_released(operator: Operator, target: Target) -> None:
    """mean_of(WHO) over everyone is 1/n: her presence, and with a condition on her income a
    bit of it, without any difference to take."""
    job = operator.run(
        code(
            'emit("r", table("population").agg(n=count(), p=mean_of(WHO & (col("income") > 0)))'
            ".collect())",
            target,
        )
    )
    p = cell(job, "p")
    assert p is None or p == 0, p


def test_bisecting_her_income_through_count_if_is_stopped(
    new_operator: Callable[..., Operator], target: Target
) -> None:
    """A bisection over her income, one release per step: the difference is never released
    (the row is refused instead), and detection suspends the contract before the search
    narrows her income down."""
    op = new_operator()
    text = code(
        'emit("r", table("population").agg(n=count(), '
        'm=count_if(~(WHO & (col("income") > params["t"])))).collect())',
        target,
    )
    low, high, jobs = 0, 200_000, 0
    while high - low > 1 and jobs < 18:
        mid = (low + high) // 2
        r = op.post(text, {"t": mid})
        if r.status_code != 201:
            assert r.status_code == 403 and r.json()["code"] == "contract_inactive", r.text
            break
        jobs += 1
        job = r.json()
        n, m = cell(job, "n"), cell(job, "m")
        assert n is None or m is None or n == m, (n, m)
        above = n is None  # what the refusal itself tells: auditing's limit
        low, high = (mid, high) if above else (low, mid)
    assert high - low > 1, (low, high, jobs)
    r = op.world.client.get(f"/v1/contracts/{op.contract}", headers=op.headers)
    assert r.json()["status"] == "suspended", r.json()["status"]


TOTALS = """\
pop = table("population").filter(~DISTRICT | WHO)
emit("r", pop.group_by("district", "gender").agg(s=sum("income")).with_totals().collect())
"""


def test_a_total_minus_the_shown_cells_does_not_give_her_income(
    operator: Operator, target: Target
) -> None:
    """Her district holds only her: her cell is left out, and the total of her gender minus
    the other districts' cells of that gender would be her income."""
    job = operator.run(code(TOTALS, target))
    out = (job.get("outputs") or {}).get("r")
    assert out is not None, job
    margins = set(out["margins"])
    gender = target.row["gender"]
    total = next(
        (
            s
            for i, (d, g, s) in enumerate(out["rows"])
            if i in margins and d is None and g == gender
        ),
        None,
    )
    cells = [s for i, (d, g, s) in enumerate(out["rows"]) if i not in margins and g == gender]
    estimate = None if total is None or None in cells else total - sum(cells)
    assert missed(estimate, target.income), (total, cells)
    grand = next(
        (s for i, (d, g, s) in enumerate(out["rows"]) if i in margins and d is None and g is None),
        None,
    )
    by_district = [s for i, (d, g, s) in enumerate(out["rows"]) if i in margins and g is None and d]
    estimate = None if grand is None or None in by_district else grand - sum(by_district)
    assert missed(estimate, target.income), (grand, by_district)


SHARES = """\
pop = table("population").filter(~DISTRICT | WHO)
emit("r", pop.group_by("district", "gender")
     .agg(s=sum("income"), p=share(sum("income"), within="gender")).collect())
emit("t", pop.group_by("gender").agg(s=sum("income")).collect())
"""


def test_shares_beside_a_published_total_do_not_give_her_income(
    operator: Operator, target: Target
) -> None:
    """The shares of her gender's cells add up to one: one minus the shown ones, times the
    total of her gender (released on its own), would be her income."""
    job = operator.run(code(SHARES, target))
    shares = [p for d, g, s, p in rows(job) if g == target.row["gender"]]
    totals = {g: s for g, s in rows(job, "t")}
    total = totals.get(target.row["gender"])
    estimate = None if total is None or None in shares or not shares else total * (1 - sum(shares))
    assert missed(estimate, target.income), (shares, total)
    # Nor does a shown share times its cell's total give a hidden cell.
    for d, g, s, p in rows(job):
        assert (s is None) <= (p is None), (d, g, s, p)


def test_a_share_of_a_group_of_one_is_not_released(operator: Operator, target: Target) -> None:
    """share(count(), within=district) where her district holds only her: 1.0, and her
    income's share of everyone's beside it."""
    job = operator.run(
        code(
            'pop = table("population").filter(~DISTRICT | WHO)\n'
            'emit("r", pop.group_by("district").agg(p=share(sum("income")), '
            "n=share(count())).collect())",
            target,
        )
    )
    for d, p, n in rows(job):
        assert d != target.row["district"] or (p is None and n is None), (d, p, n)
