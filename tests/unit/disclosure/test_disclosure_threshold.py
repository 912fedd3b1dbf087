"""The minimum-contributor rule on merged aggregates."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from sandbox.disclosure.control import apply_threshold
from sandbox.disclosure.threshold import (
    DEFAULT_THRESHOLDS,
    RULE,
    operator_view,
    significant,
    threshold_for,
)
from sandbox.engine.internal import COARSEN_KEY


def result(**columns: list) -> pa.Table:
    return pa.table(columns)


def test_cells_below_the_threshold_become_null_and_are_listed() -> None:
    table = pa.table(
        {
            "district": ["城关区", "湖滨区", "新城区"],
            "n": [25, 3, 10],
            "__c:n": [25, 3, 10],
            "avg": [5000.5, 7000.0, 6500.25],
            "__c:avg": [25, 3, 9],
        }
    )
    release = apply_threshold(table, ("district",), 10)
    # 湖滨区 has no cell of 10 contributors: its row is left out, not shown with its key.
    assert release.body["rows"] == [["城关区", 25, 5000.5], ["新城区", 10, None]]
    assert release.body["suppressed"] == [[1, "avg"]]
    assert release.small == 1
    assert release.body["kind"] == "table"
    assert release.body["columns"] == [
        {"name": "district", "type": "string"},
        {"name": "n", "type": "int64"},
        {"name": "avg", "type": "double"},
    ]
    assert release.suppressed[0] == {
        "row": 1,
        "column": "avg",
        "rule": RULE,
        "threshold": 10,
        "contributors": 9,
    }


def test_a_cell_at_exactly_the_threshold_is_released() -> None:
    release = apply_threshold(result(k=["a"], n=[10], **{"__c:n": [10]}), ("k",), 10)
    assert release.body["rows"] == [["a", 10]]
    assert release.body["suppressed"] == [] and release.suppressed == ()


def test_a_group_too_small_in_every_cell_is_left_out_key_and_all() -> None:
    release = apply_threshold(result(k=["a", "b"], n=[1, 12], **{"__c:n": [1, 12]}), ("k",), 10)
    assert release.body["rows"] == [["b", 12]]
    assert release.body["suppressed"] == [] and release.small == 1


def test_a_whole_table_aggregate_with_fewer_rows_than_the_threshold_is_suppressed() -> None:
    table = result(n=[4], **{"__c:n": [4]}, s=[123456], **{"__c:s": [4]})
    release = apply_threshold(table, (), 5)
    assert release.body["rows"] == [[None, None]]
    assert release.body["suppressed"] == [[0, "n"], [0, "s"]]


def test_an_empty_whole_table_aggregate_is_suppressed() -> None:
    release = apply_threshold(result(n=[0], **{"__c:n": [0]}), (), 1)
    assert release.body["rows"] == [[None]]


def test_a_mean_over_few_non_null_values_is_suppressed_however_many_rows() -> None:
    table = result(k=["a"], n=[1000], **{"__c:n": [1000]}, m=[88000.0], **{"__c:m": [2]})
    release = apply_threshold(table, ("k",), 10)
    assert release.body["rows"] == [["a", 1000, None]]
    assert release.body["suppressed"] == [[0, "m"]]


def test_a_null_contributor_count_counts_as_zero() -> None:
    release = apply_threshold(result(n=[5], **{"__c:n": pa.array([None], pa.int64())}), (), 1)
    assert release.body["rows"] == [[None]]
    assert release.suppressed[0]["contributors"] == 0


def test_values_become_plain_json() -> None:
    table = pa.table(
        {"d": pa.array([dt.date(2026, 1, 2)], pa.date32()), "m": [float("nan")], "__c:m": [50]}
    )
    release = apply_threshold(table, ("d",), 10)
    assert release.body["rows"] == [["2026-01-02", None]]
    assert release.body["suppressed"] == []


def test_contributor_columns_are_not_released() -> None:
    release = apply_threshold(result(n=[50], **{"__c:n": [50]}), (), 10)
    assert [c["name"] for c in release.body["columns"]] == ["n"]
    assert "__c:n" not in repr(release.body)


def test_operator_view_strips_contributor_counts_only() -> None:
    report = {
        "releases": [
            {
                "index": 0,
                "dataset": "people",
                "rows": 1,
                "suppressed": [
                    {"row": 0, "column": "n", "rule": RULE, "threshold": 10, "contributors": 3}
                ],
            }
        ],
        "note": "kept",
    }
    view = operator_view(report)
    assert view == {
        "releases": [
            {
                "index": 0,
                "dataset": "people",
                "rows": 1,
                "suppressed": [{"row": 0, "column": "n", "rule": RULE, "threshold": 10}],
            }
        ],
        "note": "kept",
    }
    assert report["releases"][0]["suppressed"][0]["contributors"] == 3  # not mutated


@pytest.mark.parametrize(("level", "expected"), sorted(DEFAULT_THRESHOLDS.items()))
def test_default_thresholds_per_level(level: str, expected: int) -> None:
    assert threshold_for(level, {}) == expected


def test_configured_thresholds_override_defaults_and_never_drop_below_one() -> None:
    assert DEFAULT_THRESHOLDS == {"L1": 1, "L2": 5, "L3": 10, "L4": 10}
    assert threshold_for("L4", {"L4": 20, "L3": 3}) == 20
    assert threshold_for("L3", {"L4": 20, "L3": 3}) == 3
    assert threshold_for("L2", {"L4": 20}) == 5
    assert threshold_for("L1", {"L1": 0}) == 1
    assert threshold_for("L2", {"L2": -4}) == 1


def test_an_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown classification level 'L5'"):
        threshold_for("L5", {})


def _marked(table: pa.Table, name: str) -> pa.Table:
    fields = [f.with_metadata({COARSEN_KEY: b"2"}) if f.name == name else f for f in table.schema]
    return table.cast(pa.schema(fields))


def test_a_marked_column_is_released_to_two_significant_figures_and_reported() -> None:
    t = _marked(
        result(
            d=["a", "b", "c", "d"],
            q=[12345.6, 0.012345, -987.0, None],
            m=[12345.6, 1.0, 2.0, 3.0],
            **{"__c:q": [20, 20, 20, 20], "__c:m": [20, 20, 20, 20]},
        ),
        "q",
    )
    release = apply_threshold(t, ("d",), 10)
    assert [r[1] for r in release.body["rows"]] == [12000.0, 0.012, -990.0, None]
    assert release.body["rows"][0][2] == 12345.6
    assert [(c["column"], c["rule"], c["digits"]) for c in release.coarsened] == [
        ("q", "significant_figures", 2)
    ]
    assert "one person's value" in release.coarsened[0]["reason"]


def test_unmarked_releases_report_no_coarsening() -> None:
    release = apply_threshold(result(n=[30], **{"__c:n": [30]}), (), 10)
    assert release.coarsened == ()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (0.0, 0.0),
        (1.0, 1.0),
        (99.5, 100.0),
        (-0.0004567, -0.00046),
        (123456789, 120000000.0),
    ],
)
def test_significant_figures(value: float, expected: float) -> None:
    assert significant(value, 2) == expected
