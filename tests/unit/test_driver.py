"""The job driver: jail + validation + contract scope + scan budget + disclosure + emit checks."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from factories import ingested

from contracts.document import ContractDocument
from sandbox.catalog.models import DatasetInfo
from sandbox.disclosure import gate as gates
from sandbox.disclosure.gate import Gate
from sandbox.disclosure.threshold import operator_view
from sandbox.engine.executor import LocalExecutor
from sandbox.errors import PlanError, QuotaExceeded
from sandbox.jail.process import Limits
from sandbox.pipeline import driver
from sandbox.pipeline.driver import (
    JobSpec,
    _Handler,
    output_digest,
    reported_seconds,
    run_job,
)

SIZES = {"城关区": 30, "湖滨区": 25, "新城区": 5}
ROWS = sum(SIZES.values())
GRANTS = {
    "people": {"district": ["group_by", "filter"], "age": ["filter"], "income": ["aggregate"]}
}


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> DatasetInfo:
    districts = [d for d, n in SIZES.items() for _ in range(n)]
    table = pa.table(
        {
            "resident_id": [f"4399{i:06d}" for i in range(ROWS)],
            "district": districts,
            "age": [20 + i % 60 for i in range(ROWS)],
            "income": [1000 * (1 + i % 7) for i in range(ROWS)],
        }
    )
    return ingested(
        tmp_path_factory.mktemp("ds"),
        "people",
        table,
        {
            "resident_id": {"role": "identifier"},
            "district": {"role": "attribute"},
            "age": {"role": "quasi_identifier"},
            "income": {"role": "sensitive", "lower": 0},
        },
        level="L3",
        partition_rows=25,
        title="人口",
    )


def contract(grants: dict[str, Any] | None = None) -> ContractDocument:
    return ContractDocument(
        id="c-1",
        version=1,
        operator_id="op-1",
        datasets=grants or GRANTS,
        purpose="养老服务设施规划",
        purpose_class="commercial",
        valid_from="2026-01-01T00:00:00Z",
        valid_to="2030-01-01T00:00:00Z",
        quotas={},
        spend_cap=None,
        issued_at="2026-01-01T00:00:00Z",
    )


def spec(people: DatasetInfo, code: str, **changes: Any) -> JobSpec:
    base = JobSpec(
        job_id="j-1",
        code=code,
        params={"min_age": 30},
        contract=contract(),
        datasets={"people": people},
        thresholds={"L3": 10},
        limits=Limits(cpu_seconds=5, memory_bytes=512 * 2**20, wall_seconds=10.0),
        max_rows=10 * ROWS,
        max_outputs=3,
    )
    return dataclasses.replace(base, **changes)


BY_DISTRICT = (
    "res = table('people').filter(col('age') >= params['min_age']).group_by('district')"
    ".agg(n=count(), total=sum('income'))\n"
)


def test_a_job_releases_thresholded_outputs_and_records_usage(people: DatasetInfo) -> None:
    code = (
        "t = table('people').group_by('district').agg(n=count(), avg=mean('income'))\n"
        "res = t.collect()\n"
        "emit('by_district', res)\n"
        "emit('districts', len(res))\n"
        "print('done')\n"
    )
    result = run_job(spec(people, code), LocalExecutor())
    assert result.status == "succeeded", result.error
    assert result.error is None
    table = result.outputs["by_district"]
    assert [c["name"] for c in table["columns"]] == ["district", "n", "avg"]
    rows = {r[0]: r[1:] for r in table["rows"]}
    assert rows["城关区"][0] == 30
    assert "新城区" not in rows  # 5 contributors < 10 at level L3: left out, key and all
    # … and the next smallest district is hidden, or a total minus 城关区 would give 新城区 away.
    assert rows["湖滨区"] == [None, None]
    j = next(i for i, r in enumerate(table["rows"]) if r[0] == "湖滨区")
    assert sorted(map(tuple, table["suppressed"])) == [(j, "avg"), (j, "n")]
    assert result.outputs["districts"] == {"kind": "scalar", "value": 2}
    assert result.printed == "done\n"
    assert result.usage["rows_scanned"] == ROWS
    assert result.usage["rows_by_level"] == {"L3": ROWS}
    assert result.usage["collects"] == 1 and result.usage["outputs"] == 2
    seconds = Decimal(result.usage["compute_seconds"])
    assert Decimal("0") < seconds <= Decimal("10")
    assert seconds == seconds.quantize(Decimal("0.001"))
    (release,) = result.disclosure["releases"]
    assert release["dataset"] == "people" and release["keys"] == ["district"]
    assert release["rows"] == 2 and release["cells"] == 4
    assert release["left_out"] == 1  # for the regulator; the operator's view drops it
    assert "left_out" not in operator_view(result.disclosure)["releases"][0]
    assert {(c["rule"], tuple(c["protects"])) for c in release["suppressed"] if c["row"] == j} == {
        ("secondary", (None, "n")),
        ("secondary", (None, "avg")),
    }


def test_a_column_used_beyond_its_grant_is_refused_as_contract_scope(people: DatasetInfo) -> None:
    code = "res = table('people').group_by('age').agg(n=count()).collect()\nemit('x', res)\n"
    result = run_job(spec(people, code), LocalExecutor())
    assert result.status == "rejected"
    assert result.error.code == "contract_scope"
    assert "column 'age' is not granted for group_by" in result.error.message
    assert result.outputs == {}
    assert result.usage["rows_scanned"] == 0


def test_a_derived_column_cannot_launder_a_use(people: DatasetInfo) -> None:
    code = (
        "res = table('people').derive(band=col('age').bucket([40, 60])).group_by('band')"
        ".agg(n=count()).collect()\n"
    )
    result = run_job(spec(people, code), LocalExecutor())
    assert result.status == "rejected"
    assert result.error.code == "contract_scope"
    assert "'age'" in result.error.message


def test_grouping_by_an_identifier_is_refused(people: DatasetInfo) -> None:
    grants = {"people": {**GRANTS["people"], "resident_id": ["group_by"]}}
    code = "res = table('people').group_by('resident_id').agg(n=count()).collect()\n"
    result = run_job(spec(people, code, contract=contract(grants)), LocalExecutor())
    assert result.status == "rejected"
    assert result.error.code == "disclosure_refused"


def test_a_dataset_outside_the_job_is_refused(people: DatasetInfo) -> None:
    result = run_job(
        spec(people, "x = table('secret').agg(n=count()).collect()\n"), LocalExecutor()
    )
    assert result.status == "rejected"
    assert result.error.code == "plan_invalid"
    assert "available: people" in result.error.message


def test_collect_in_a_loop_beyond_the_quoted_rows_is_refused(people: DatasetInfo) -> None:
    code = (
        "t = table('people').agg(n=count())\n"
        "for i in range(10):\n"
        "    emit('n' + str(i), t.collect())\n"
    )
    result = run_job(spec(people, code, max_rows=2 * ROWS, max_outputs=10), LocalExecutor())
    assert result.status == "rejected"
    assert result.error.code == "quota_exceeded"
    assert f"beyond the {2 * ROWS} rows this job was quoted for" in result.error.message
    assert "avoid calling collect() in a loop" in result.error.message
    assert result.usage["rows_scanned"] == 2 * ROWS
    assert result.usage["collects"] == 2
    assert result.outputs == {}  # a job that did not succeed releases nothing


def test_emit_beyond_the_quoted_outputs_is_refused(people: DatasetInfo) -> None:
    code = "for i in range(5):\n    emit('x' + str(i), i)\n"
    result = run_job(spec(people, code, max_outputs=2), LocalExecutor())
    assert result.status == "rejected"
    assert result.error.code == "quota_exceeded"
    assert "quoted for 2 output(s)" in result.error.message


def test_an_overflowing_expression_is_null_not_an_error(people: DatasetInfo) -> None:
    # Whether a job fails must not depend on data: an overflow is a null value, as in SQL.
    code = (
        "res = table('people').agg(n=count(), s=sum(col('income').cast('int') "
        "* 9000000000000000)).collect()\nemit('r', res)\n"
    )
    result = run_job(spec(people, code), LocalExecutor())
    assert result.status == "succeeded", result.error
    assert result.outputs["r"]["rows"][0][0] == ROWS


def test_a_plan_the_engine_cannot_evaluate_releases_nothing_and_the_job_goes_on(
    people: DatasetInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow as pa

    def broken(checked: Any, deadline: Any = None) -> Any:
        raise pa.ArrowInvalid("value 123456 out of range")

    executor = LocalExecutor()
    monkeypatch.setattr(executor, "aggregate", broken)
    code = (
        "a = table('people').agg(n=count()).collect()\n"
        "b = table('people').group_by('district').agg(n=count()).collect()\n"
        "emit('a', a)\nemit('b', b)\n"
    )
    result = run_job(spec(people, code), executor)
    assert result.status == "succeeded", result.error
    assert result.outputs["a"]["rows"] == [[None]] and result.outputs["b"]["rows"] == []
    assert result.disclosure["releases"][0]["suppressed"][0]["rule"] == "evaluation"
    assert "123456" not in repr(result)


def test_operator_code_errors_fail_the_job(people: DatasetInfo) -> None:
    code = BY_DISTRICT + "emit('x', res.collect())\nx = 1 / 0\n"
    result = run_job(spec(people, code), LocalExecutor())
    assert result.status == "failed"
    assert result.error.code == "job_code_error" and result.error.line == 3
    assert result.usage["collects"] == 1
    # What it emitted before its code raised is delivered (and counted): it paid for it.
    assert list(result.outputs) == ["x"] and result.outputs["x"]["kind"] == "table"
    assert result.usage["outputs"] == 1


def test_compute_seconds_is_a_decimal_string_rounded_up_and_capped_at_the_limit() -> None:
    assert reported_seconds(0.0121, 30.0) == "0.013"
    assert reported_seconds(2.0, 30.0) == "2.000"
    assert reported_seconds(31.7, 30.0) == "30.000"
    assert reported_seconds(0.5, 0.25) == "0.250"


def test_compute_seconds_in_coarse_steps_show_only_the_step() -> None:
    assert reported_seconds(0.0121, 30.0, 1.0) == "1.000"
    assert reported_seconds(0.9, 30.0, 1.0) == "1.000"
    assert reported_seconds(1.0001, 30.0, 1.0) == "2.000"
    assert reported_seconds(0.3, 30.0, 0.25) == "0.500"
    assert reported_seconds(0.0, 30.0, 1.0) == "1.000"  # even nothing costs one step


# --- emit checks on the handler itself, as a tampered jail would call it ------------------


@pytest.fixture
def handler(people: DatasetInfo) -> _Handler:
    return _Handler(spec(people, ""), LocalExecutor())


def _plan() -> dict[str, Any]:
    return {
        "op": "aggregate",
        "input": {"op": "scan", "dataset": "people"},
        "keys": ["district"],
        "aggs": [["n", {"fn": "count", "arg": None}]],
    }


def test_a_released_table_can_be_emitted_unchanged(handler: _Handler) -> None:
    body = handler.collect(_plan())
    handler.emit("by_district", body)
    assert handler.outputs == {"by_district": body}


def test_a_fabricated_table_is_refused(handler: _Handler) -> None:
    handler.collect(_plan())
    fabricated = {
        "kind": "table",
        "columns": [{"name": "resident_id", "type": "string"}],
        "rows": [["439900000001"]],
        "suppressed": [],
    }
    with pytest.raises(PlanError, match="a collected result, or a table derived"):
        handler.emit("leak", fabricated)
    assert handler.outputs == {}


def test_a_released_table_with_a_suppressed_cell_filled_in_is_refused(handler: _Handler) -> None:
    body = handler.collect(_plan())
    tampered = {
        **body,
        "rows": [[r[0], 5 if r[1] is None else r[1]] for r in body["rows"]],
        "suppressed": [],
    }
    assert tampered != body
    with pytest.raises(PlanError, match="a collected result, or a table derived"):
        handler.emit("tampered", tampered)


@pytest.mark.parametrize(
    "value",
    [
        {"kind": "scalar", "value": float("nan")},
        {"kind": "scalar", "value": [1, 2]},
        {"kind": "scalar", "value": "x" * 10_001},
        {"kind": "scalar", "value": 1, "rows": []},
        {"kind": "rows", "value": 1},
        [1, 2],
        "text",
    ],
)
def test_anything_but_a_released_table_or_one_scalar_is_refused(
    handler: _Handler, value: Any
) -> None:
    with pytest.raises(PlanError):
        handler.emit("x", value)


@pytest.mark.parametrize("name", ["", "a/b", "../x", "x" * 129, 3, None])
def test_output_names_are_checked(handler: _Handler, name: Any) -> None:
    with pytest.raises(PlanError, match="output names"):
        handler.emit(name, {"kind": "scalar", "value": 1})


def test_an_output_name_is_used_once(handler: _Handler) -> None:
    handler.emit("份额", {"kind": "scalar", "value": 0.5})
    with pytest.raises(PlanError, match="already emitted"):
        handler.emit("份额", {"kind": "scalar", "value": 0.6})


def test_the_scan_budget_counts_every_collect(handler: _Handler, people: DatasetInfo) -> None:
    handler.spec = dataclasses.replace(handler.spec, max_rows=ROWS)
    handler.collect(_plan())
    assert handler.rows_by_level() == {"L3": ROWS}
    assert handler.rows_by_dataset == {"people": ROWS}
    with pytest.raises(QuotaExceeded):
        handler.collect(_plan())
    assert handler.rows_scanned == ROWS


def test_output_digest_is_stable_across_key_order() -> None:
    assert output_digest({"a": 1, "b": [1, "区"]}) == output_digest({"b": [1, "区"], "a": 1})
    assert output_digest({"a": 1}) != output_digest({"a": 2})


def test_a_release_with_too_many_groups_is_capped(
    people: DatasetInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sandbox.pipeline.driver as driver

    monkeypatch.setattr(driver, "MAX_RELEASED_ROWS", 1)
    code = "emit('x', table('people').group_by('district').agg(n=count()).collect())\n"
    result = run_job(spec(people, code), LocalExecutor())
    # Capped, not refused: a refusal would depend on how many groups the data has.
    assert result.status == "succeeded", result.error
    assert [r[0] for r in result.outputs["x"]["rows"]] == ["城关区"]
    assert result.disclosure["releases"][0]["truncated"] == 1


IN_PLACE = {
    "released": (
        "t = table('people').group_by('district').agg(n=count(), avg=mean('income'))\n"
        "res = t.collect()\nemit('by_district', res)\nemit('note', '按区')\n"
    ),
    "with parameters": BY_DISTRICT + "emit('r', res.collect())\n",
    "refused by the contract": (
        "res = table('people').group_by('age').agg(n=count()).collect()\nemit('r', res)\n"
    ),
    "an output name used twice": (
        "res = table('people').group_by('district').agg(n=count()).collect()\n"
        "emit('r', res)\nemit('r', res)\n"
    ),
    "beyond the quoted outputs": "emit('a', 1)\nemit('b', 2)\nemit('c', 3)\nemit('d', 4)\n",
    "sorted and cut": (
        "res = table('people').group_by('district').agg(n=count(), avg=mean('income'))"
        ".with_totals().collect()\n"
        "emit('by_n', res.sort('n', descending=True))\n"
        "emit('by_district', res.sort('district').head(2))\n"
        "emit('by_avg', res.sort(column='avg'))\n"
    ),
}


@pytest.mark.parametrize("code", IN_PLACE.values(), ids=IN_PLACE.keys())
def test_a_straight_line_job_ends_as_in_its_job_process(
    people: DatasetInfo, code: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    jailed_spec = spec(people, code)
    jailed_spec = dataclasses.replace(
        jailed_spec, limits=dataclasses.replace(jailed_spec.limits, read_straight_line=False)
    )
    jailed = run_job(jailed_spec, LocalExecutor())

    def no_process(*_: Any) -> None:
        raise AssertionError("a straight-line job started a job process")

    monkeypatch.setattr("sandbox.pipeline.driver.run_in_jail", no_process)
    in_place = run_job(spec(people, code), LocalExecutor())
    assert in_place.status == jailed.status
    assert in_place.error == jailed.error
    assert in_place.outputs == jailed.outputs
    assert in_place.disclosure == jailed.disclosure
    assert in_place.released_sets == jailed.released_sets
    assert in_place.observations == jailed.observations
    drop = {"compute_seconds"}
    assert {k: v for k, v in in_place.usage.items() if k not in drop} == {
        k: v for k, v in jailed.usage.items() if k not in drop
    }


def test_a_job_that_is_not_straight_line_runs_in_its_job_process(
    people: DatasetInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = []
    real = driver.run_in_jail

    def counted(*args: Any) -> Any:
        started.append(1)
        return real(*args)

    monkeypatch.setattr("sandbox.pipeline.driver.run_in_jail", counted)
    looped = "for d in ['城关区']:\n    emit(d, 1)\n"
    assert run_job(spec(people, looped), LocalExecutor()).status == "succeeded"
    assert started == [1]


@pytest.mark.parametrize("inline", [True, False], ids=["sets sent at once", "asked for"])
def test_a_repeated_release_hands_on_its_sets_until_they_are_recorded(
    people: DatasetInfo, inline: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not inline:
        monkeypatch.setattr(gates, "INLINE_BYTES", 0)
    gate = Gate(lambda _: [])
    code = (
        "t = table('people').group_by('district').agg(n=count(), avg=mean('income'))\n"
        "emit('by_district', t.collect())\n"
    )
    first = run_job(
        spec(people, code, gate=gate, job_id="j-1", operator_id="op-1"), LocalExecutor()
    )
    assert first.status == "succeeded", first.error
    spaces = {space for _, _, space in first.released_sets["people"]}
    assert spaces == {"measure:people.income", "people"}
    # Before the first job's settlement says the history holds them, a repeat hands them on.
    again = run_job(
        spec(people, code, gate=gate, job_id="j-2", operator_id="op-1"), LocalExecutor()
    )
    assert again.released_sets == first.released_sets
    gate.settled("j-1", recorded=True)
    repeat = run_job(
        spec(people, code, gate=gate, job_id="j-3", operator_id="op-1"), LocalExecutor()
    )
    assert repeat.released_sets == {}
    # What the operator receives is the same release.
    assert repeat.outputs == first.outputs
    assert repeat.disclosure == first.disclosure
    assert gate.audits("op-1") == 3  # one audit per release, however many calls it took
