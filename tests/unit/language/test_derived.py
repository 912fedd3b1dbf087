"""Tables a job derives from released ones: order, cuts, pivots, lags; suppressed cells stay
suppressed through every step, and the driver's check refuses anything not table-shaped."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.errors import PlanError
from sandbox.language import derived

RELEASED: dict[str, Any] = {
    "kind": "table",
    "columns": [
        {"name": "district", "type": "string"},
        {"name": "year", "type": "int64"},
        {"name": "n", "type": "int64"},
    ],
    "rows": [
        ["城关区", 2023, 120],
        ["城关区", 2024, 150],
        ["湖滨区", 2023, None],
        ["湖滨区", 2024, 90],
    ],
    "suppressed": [[2, "n"]],
}


def test_sort_puts_suppressed_cells_last_and_follows_them() -> None:
    out = derived.sort(RELEASED, "n", descending=True)
    assert [r[2] for r in out["rows"]] == [150, 120, 90, None]
    assert out["suppressed"] == [[3, "n"]]
    assert out["derived"] is True
    assert [r[2] for r in derived.sort(RELEASED, "n")["rows"]] == [90, 120, 150, None]
    derived.check(out)


def test_head_keeps_only_the_suppressed_cells_it_keeps() -> None:
    assert derived.head(RELEASED, 2)["suppressed"] == []
    assert derived.head(RELEASED, 3)["suppressed"] == [[2, "n"]]
    assert derived.head(RELEASED, 99)["rows"] == RELEASED["rows"]
    with pytest.raises(PlanError, match="whole number"):
        derived.head(RELEASED, -1)


def test_pivot_spreads_a_column_and_carries_suppression() -> None:
    out = derived.pivot(RELEASED, "district", "year", "n")
    assert [c["name"] for c in out["columns"]] == ["district", "2023", "2024"]
    assert out["rows"] == [["城关区", 120, 150], ["湖滨区", None, 90]]
    assert out["suppressed"] == [[1, "2023"]]
    derived.check(out)
    doubled = {**RELEASED, "rows": [*RELEASED["rows"], ["城关区", 2023, 1]]}
    with pytest.raises(PlanError, match="more than one row"):
        derived.pivot(doubled, "district", "year", "n")


def test_lag_and_pct_change_treat_suppressed_inputs_as_suppressed() -> None:
    by_year = derived.sort(derived.sort(RELEASED, "year"), "district")
    # Without groups the lag runs across districts; by district it starts afresh in each.
    assert [r[-1] for r in derived.lag(by_year, "n")["rows"]] == [None, 120, None, None]
    lagged = derived.lag(by_year, "n", by="district")
    assert [r[-1] for r in lagged["rows"]] == [None, 120, None, None]
    assert lagged["suppressed"] == [[2, "n"], [3, "n_lag1"]]
    changed = derived.pct_change(by_year, "n", by="district")
    column = [r[-1] for r in changed["rows"]]
    assert column[0] is None and column[1] == pytest.approx(0.25)
    # 湖滨区 2023 is suppressed: the change out of it is suppressed as well, and marked so.
    assert column[3] is None and [3, "n_pct_change"] in changed["suppressed"]
    assert changed["columns"][-1] == {"name": "n_pct_change", "type": "double"}
    two = {**RELEASED, "rows": [["城关区", 2022, 100], *RELEASED["rows"]], "suppressed": [[3, "n"]]}
    spaced = derived.lag(two, "n", periods=2, by="district")
    assert [r[-1] for r in spaced["rows"]] == [None, None, 100, None, None]
    with pytest.raises(PlanError, match="already has a column"):
        derived.lag(lagged, "n")
    derived.check(changed)


def test_emit_table_types_columns_by_their_values() -> None:
    out = derived.build(["区县", "占比", "说明"], [["城关区", 0.5, "高"], ["湖滨区", None, "低"]])
    assert [c["type"] for c in out["columns"]] == ["string", "double", "string"]
    with pytest.raises(PlanError, match="row 0 must be a list of 2"):
        derived.build(["a", "b"], [[1]])
    with pytest.raises(PlanError, match="one kind of value"):
        derived.build(["a"], [[1], ["x"]])
    with pytest.raises(PlanError, match="finite"):
        derived.build(["a"], [[float("nan")]])


@pytest.mark.parametrize(
    "forged",
    [
        {"kind": "table", "columns": [{"name": "a", "type": "int64"}], "rows": [[1]]},
        {**derived.build(["a"], [[1]]), "extra": 1},
        {**derived.build(["a"], [[1]]), "rows": [[1, 2]]},
        {**derived.build(["a"], [[1]]), "rows": [[{"x": 1}]]},
        {**derived.build(["a"], [[1]]), "suppressed": [[0, "a"]]},
        {**derived.build(["a"], [[None]]), "suppressed": [[5, "a"]]},
        {**derived.build(["a"], [[1]]), "columns": [{"name": "a", "type": "object"}]},
        {**derived.build(["a"], [[1]]), "rows": [[1]] * (derived.MAX_ROWS + 1)},
    ],
)
def test_the_driver_refuses_a_forged_table(forged: Any) -> None:
    with pytest.raises(PlanError):
        derived.check(forged)


def test_a_pivot_of_a_table_with_totals_has_a_total_column_and_row() -> None:
    body = {
        "kind": "table",
        "columns": [
            {"name": "d", "type": "string"},
            {"name": "g", "type": "string"},
            {"name": "n", "type": "int64"},
        ],
        "rows": [
            ["a", "x", 10],
            ["a", None, 12],  # a real null gender: a group like any other
            [None, "x", 11],  # a real null district
            ["a", None, 22],  # total of a
            [None, "x", 21],  # total of x
            [None, None, 33],  # grand total
        ],
        "suppressed": [],
        "margins": [3, 4, 5],
    }
    out = derived.pivot(body, "d", "g", "n")
    assert [c["name"] for c in out["columns"]] == ["d", "x", "None", "total"]
    assert out["rows"] == [["a", 10, 12, 22], [None, 11, None, None], [None, 21, None, 33]]
    assert out["margins"] == [2]
