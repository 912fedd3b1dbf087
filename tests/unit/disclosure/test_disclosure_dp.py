"""Differential privacy: OpenDP's Laplace noise, clamping in the engine, the ε split across a
job's collects, and the refusals that keep the noise calibrated."""

from __future__ import annotations

import dataclasses
import statistics
from typing import Any

import pyarrow as pa
import pytest
from factories import ingested
from plans import NoChannel

from contracts.budget import Epsilon
from contracts.document import ContractDocument
from sandbox.catalog.models import DatasetInfo
from sandbox.disclosure import dp
from sandbox.disclosure.threshold import significant
from sandbox.engine.compute import quantile_cont
from sandbox.engine.executor import LocalExecutor
from sandbox.engine.validate import CheckedPlan, check_plan
from sandbox.errors import DisclosureRefused
from sandbox.jail.process import Limits
from sandbox.language import plan as p
from sandbox.language.api import (
    Table,
    col,
    count,
    count_distinct,
    mean,
    min_,
    quantile,
    std,
    sum_,
    var,
)
from sandbox.pipeline.driver import JobSpec, run_job

SIZES = {"城关区": 300, "湖滨区": 250, "新城区": 5}
ROWS = sum(SIZES.values())
UPPER = 5000
# Incomes run to 9000, above the catalog's upper bound of 5000: clamping must bite.
INCOMES = [1000 * (1 + i % 9) for i in range(ROWS)]
GRANTS = {
    "people": {
        "district": ["group_by", "filter"],
        "age": ["filter", "aggregate"],
        "income": ["aggregate"],
    }
}


def _dataset(tmp_path_factory: pytest.TempPathFactory, name: str, ids: list[str]) -> DatasetInfo:
    districts = [d for d, n in SIZES.items() for _ in range(n)]
    table = pa.table(
        {
            "resident_id": ids,
            "district": districts,
            "age": [20 + i % 60 for i in range(ROWS)],
            "income": INCOMES,
        }
    )
    return ingested(
        tmp_path_factory.mktemp(name),
        name,
        table,
        {
            "resident_id": {"role": "identifier"},
            "district": {"role": "attribute"},
            "age": {"role": "quasi_identifier"},
            "income": {"role": "sensitive", "lower": 0, "upper": UPPER},
        },
        level="L3",
        partition_rows=200,
        title="人口",
    )


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> DatasetInfo:
    return _dataset(tmp_path_factory, "people", [f"4399{i:06d}" for i in range(ROWS)])


T = Table(p.Scan("people"), NoChannel())


def checked(t: Table, ds: DatasetInfo) -> CheckedPlan:
    return check_plan(t._node, {ds.name: ds})


def eps(text: str) -> Epsilon:
    return Epsilon.parse(text)


# --- the mechanism ---------------------------------------------------------------------------


def test_the_scale_is_sensitivity_over_epsilon() -> None:
    _, record = dp.noisy_counts([100, 200], eps("0.5"), "n")
    assert record.scale == pytest.approx(2.0)
    assert (record.sensitivity, record.quantity, str(record.epsilon)) == (1, "count", "0.5")
    _, record = dp.noisy_sums(pa.array([10_000, 20_000], pa.int64()), eps("0.25"), (0, UPPER), "s")
    assert record.scale == pytest.approx(UPPER / 0.25)
    assert record.sensitivity == UPPER
    _, record = dp.noisy_sums(pa.array([1.5], pa.float64()), eps("2"), (-300.0, 100.0), "s")
    assert record.scale == pytest.approx(150.0)  # max(|lower|, |upper|) / ε
    assert record.to_json()["rule"] == "differential_privacy"
    assert record.to_json()["mechanism"] == "laplace"


def test_noise_is_present_and_centred_on_the_truth() -> None:
    truth, epsilon = 500, eps("0.1")
    values = [dp.noisy_counts([truth], epsilon, "n")[0][0] for _ in range(200)]
    scale = 1 / 0.1
    assert len(set(values)) > 20  # not the same value twice over
    assert all(isinstance(v, int) for v in values)
    # The mean of 200 draws has a standard deviation of about 0.1 scale.
    assert abs(statistics.fmean(values) - truth) < scale
    assert statistics.pstdev(values) > scale / 2


def test_noisy_counts_are_whole_and_never_negative() -> None:
    values = [v for _ in range(50) for v in dp.noisy_counts([0, 1], eps("0.05"), "n")[0]]
    assert min(values) == 0 and all(isinstance(v, int) for v in values)


# --- plans and the engine --------------------------------------------------------------------


def test_clamping_happens_in_the_engine_and_bounds_the_sum(people: DatasetInfo) -> None:
    t = T.agg(n=count(), s=sum_("income"))
    exact = LocalExecutor().aggregate(checked(t, people)).table
    assert exact.column("s").to_pylist() == [sum(INCOMES)]  # unchanged without DP
    assert "__s:s" not in exact.column_names
    private = dp.prepare(checked(t, people))
    assert private.clamp == (None, (0, UPPER))
    clamped = LocalExecutor().aggregate(private).table
    assert clamped.column("__s:s").to_pylist() == [sum(min(v, UPPER) for v in INCOMES)]
    noisy, noise = dp.privatize(clamped, private, eps("10"))
    assert noisy.column_names == ["n", "__c:n", "s", "__c:s"]  # exact sums are not passed on
    # With ε=10 the noise on the sum has scale 5000 / 2.5 = 2000, far below the 1.1M clamped off.
    assert abs(noisy.column("s")[0].as_py() - sum(min(v, UPPER) for v in INCOMES)) < 40_000
    assert [(n.column, n.quantity) for n in noise] == [("n", "count"), ("s", "count"), ("s", "sum")]
    assert sum(n.epsilon.value for n in noise) == 10  # the collect's ε, all of it


def test_a_noisy_mean_is_noisy_sum_over_noisy_count_within_the_bounds(people: DatasetInfo) -> None:
    private = dp.prepare(checked(T.group_by("district").agg(m=mean("income")), people))
    table, noise = dp.privatize(LocalExecutor().aggregate(private).table, private, eps("10"))
    means = dict(zip(table.column("district").to_pylist(), table.column("m").to_pylist()))
    truth = statistics.fmean(min(v, UPPER) for v in INCOMES[:300])
    assert abs(means["城关区"] - truth) < 0.05 * truth
    assert all(m is None or 0 <= m <= UPPER for m in means.values())
    assert {n.quantity for n in noise} == {"count", "sum"}


def test_a_sum_over_a_column_without_bounds_is_refused(people: DatasetInfo) -> None:
    with pytest.raises(DisclosureRefused) as info:
        dp.prepare(checked(T.agg(s=sum_("age")), people))
    assert "lower and upper bounds" in info.value.message
    assert "count()" in info.value.message


def test_an_expression_cannot_be_summed_privately(people: DatasetInfo) -> None:
    for t in (
        T.agg(s=sum_(col("income") * 2)),
        T.derive(income=col("income") * 100).agg(m=mean("income")),
    ):
        with pytest.raises(DisclosureRefused, match="not an expression"):
            dp.prepare(checked(t, people))


def test_a_dataset_with_several_rows_per_person_is_refused(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    twice = _dataset(tmp_path_factory, "people2", [f"4399{i // 2:06d}" for i in range(ROWS)])
    assert twice.column("resident_id").unique is False
    with pytest.raises(DisclosureRefused, match="one row per person"):
        dp.prepare(
            check_plan(
                Table(p.Scan("people2"), NoChannel()).agg(n=count())._node, {"people2": twice}
            )
        )


# --- the driver ------------------------------------------------------------------------------


def contract(**terms: Any) -> ContractDocument:
    return ContractDocument(
        id="c-1",
        version=1,
        operator_id="op-1",
        datasets=GRANTS,
        purpose="养老服务设施规划",
        purpose_class="commercial",
        valid_from="2026-01-01T00:00:00Z",
        valid_to="2030-01-01T00:00:00Z",
        quotas={},
        spend_cap=None,
        issued_at="2026-01-01T00:00:00Z",
        **terms,
    )


PRIVATE = {"people": {"epsilon": "1", "per_job_epsilon": "0.3"}}


def spec(people: DatasetInfo, code: str, **changes: Any) -> JobSpec:
    base = JobSpec(
        job_id="j-1",
        code=code,
        params={},
        contract=contract(privacy=PRIVATE),
        datasets={"people": people},
        thresholds={"L3": 10},
        limits=Limits(cpu_seconds=5, memory_bytes=512 * 2**20, wall_seconds=10.0),
        max_rows=10 * ROWS,
        max_outputs=3,
        epsilon={"people": "0.3"},
        collect_sites=2,
    )
    return dataclasses.replace(base, **changes)


TWO_COLLECTS = (
    "a = table('people').group_by('district').agg(n=count()).collect()\n"
    "b = table('people').agg(s=sum('income')).collect()\n"
    "emit('a', a)\n"
)


def test_each_collect_spends_its_share_and_the_report_records_the_noise(
    people: DatasetInfo,
) -> None:
    result = run_job(spec(people, TWO_COLLECTS), LocalExecutor())
    assert result.status == "succeeded", result.error
    assert result.usage["epsilon_by_dataset"] == {"people": "0.3"}
    first, second = result.disclosure["releases"]
    assert first["noise"] == [
        {
            "column": "n",
            "quantity": "count",
            "rule": "differential_privacy",
            "epsilon": "0.15",
            "mechanism": "laplace",
            "sensitivity": 1,
            "scale": pytest.approx(1 / 0.15),
        }
    ]
    assert [n["epsilon"] for n in second["noise"]] == ["0.075", "0.075"]
    assert second["noise"][1]["scale"] == pytest.approx(UPPER / 0.075)
    rows = result.outputs["a"]["rows"]
    assert rows[0][0] == "城关区" and abs(rows[0][1] - 300) < 100
    # The threshold applies to the noisy counts: every cell released is at least 10, every
    # cell below is marked (the district of 5 may go either way, as noise decides).
    for i, row in enumerate(rows):
        marked = [s for s in first["suppressed"] if s["row"] == i]
        assert (row[1] is None) == bool(marked)
        assert row[1] is None or row[1] >= 10
        assert all(s["contributors"] < 10 for s in marked)


def test_collects_beyond_the_call_sites_are_refused(people: DatasetInfo) -> None:
    code = (
        "for d in ['城关区', '湖滨区']:\n"
        "    emit(d, table('people').filter(col('district') == d).agg(n=count()).collect())\n"
    )
    result = run_job(spec(people, code, collect_sites=1), LocalExecutor())
    assert result.status == "rejected"
    assert "ε of 0.3 for dataset 'people' is used up" in result.error.message
    assert result.usage["epsilon_by_dataset"] == {"people": "0.3"}  # the first one spent it


def test_a_failure_after_a_release_still_reports_the_epsilon_used(people: DatasetInfo) -> None:
    code = "a = table('people').agg(n=count()).collect()\nx = 1 / 0\n"
    result = run_job(spec(people, code, collect_sites=3), LocalExecutor())
    assert result.status == "failed"
    assert result.usage["epsilon_by_dataset"] == {"people": "0.1"}


def test_a_split_without_a_finite_decimal_is_charged_rounded_up(people: DatasetInfo) -> None:
    code = "a = table('people').agg(n=count()).collect()\nemit('a', a)\n"
    result = run_job(
        spec(people, code, epsilon={"people": "0.1"}, collect_sites=3), LocalExecutor()
    )
    assert result.disclosure["releases"][0]["noise"][0]["epsilon"] == "1/30"
    assert result.usage["epsilon_by_dataset"] == {"people": "0.033334"}


def test_datasets_outside_the_privacy_terms_are_released_exactly(people: DatasetInfo) -> None:
    code = "a = table('people').agg(n=count()).collect()\nemit('a', a)\n"
    result = run_job(spec(people, code, contract=contract(), epsilon={}), LocalExecutor())
    assert result.outputs["a"]["rows"] == [[ROWS]]
    assert "noise" not in result.disclosure["releases"][0]
    assert "epsilon_by_dataset" not in result.usage


def test_the_contract_can_raise_the_threshold_but_never_lower_it(people: DatasetInfo) -> None:
    code = "emit('a', table('people').group_by('district').agg(n=count()).collect())\n"

    def shown(min_contributors: int) -> set[str]:
        terms = contract(disclosure={"min_contributors": min_contributors})
        job = spec(people, code, contract=terms, epsilon={})
        result = run_job(job, LocalExecutor())
        return {row[0] for row in result.outputs["a"]["rows"]}

    # Groups below the threshold are left out of the release altogether.
    everyone = shown(1)
    assert "新城区" not in everyone  # the level's 10 still applies
    assert everyone - shown(260) == {"湖滨区"}  # stricter than the level's 10


@pytest.mark.parametrize(
    "agg",
    [
        lambda: count_distinct("age"),
        lambda: var("income"),
        lambda: std("income"),
        lambda: quantile("income", 0.5),
        lambda: min_("district"),
    ],
)
def test_aggregates_without_a_mechanism_are_refused_under_dp(people: DatasetInfo, agg: Any) -> None:
    with pytest.raises(DisclosureRefused, match="not available under differential privacy yet"):
        dp.prepare(checked(T.group_by("district").agg(n=count(), x=agg()), people))


def test_a_job_using_quantile_under_dp_fails_with_the_refusal(people: DatasetInfo) -> None:
    code = "emit('q', table('people').agg(q=quantile('income', 0.5)).collect())\n"
    result = run_job(spec(people, code), LocalExecutor())
    assert result.status == "rejected"
    assert "not available under differential privacy yet" in str(result.error)


def test_a_quantile_of_a_sensitive_column_is_released_coarsened(people: DatasetInfo) -> None:
    code = (
        "t = table('people').derive(v=col('income') + col('age'))\n"
        "emit('q', t.agg(q=quantile('v', 0.37)).collect())\n"
    )
    result = run_job(spec(people, code, contract=contract(), epsilon={}), LocalExecutor())
    assert result.status == "succeeded", result.error
    exact = quantile_cont(sorted(v + 20 + i % 60 for i, v in enumerate(INCOMES)), 0.37)
    released = result.outputs["q"]["rows"][0][0]
    assert released == significant(exact, 2) != exact
