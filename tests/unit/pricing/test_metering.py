"""Metered rows per dataset, and the older per-level form kept for existing callers."""

from decimal import Decimal

import pytest

from pricing import Metered, MeteringError, RowsUse


def test_rows_are_kept_per_dataset_sorted_by_name_then_level() -> None:
    metered = Metered(
        rows=[RowsUse("企业", "L2", 5), RowsUse("population", "L3", 10), RowsUse("health", "L3", 1)]
    )
    assert [use.dataset for use in metered.rows] == ["health", "population", "企业"]
    assert isinstance(metered.rows, tuple)
    assert metered.rows_scanned == 16


def test_rows_by_level_is_derived_from_the_datasets() -> None:
    metered = Metered(rows=(RowsUse("a", "L3", 10), RowsUse("b", "L3", 5), RowsUse("c", "L1", 2)))
    assert dict(metered.rows_by_level) == {"L1": 2, "L3": 15}
    assert list(metered.rows_by_level) == ["L1", "L3"]
    with pytest.raises(TypeError):
        metered.rows_by_level["L1"] = 0  # type: ignore[index]


def test_order_of_reporting_does_not_change_equality() -> None:
    one = Metered(rows=(RowsUse("a", "L3", 10), RowsUse("b", "L1", 5)))
    other = Metered(rows=(RowsUse("b", "L1", 5), RowsUse("a", "L3", 10)))
    assert one == other
    assert hash(one) == hash(other)


def test_rows_by_level_alias_becomes_unnamed_uses() -> None:
    metered = Metered(calls=1, rows_by_level={"L3": 7, "L1": 3})
    assert metered.rows == (RowsUse("", "L1", 3), RowsUse("", "L3", 7))
    assert dict(metered.rows_by_level) == {"L1": 3, "L3": 7}


def test_rows_and_rows_by_level_together_are_refused() -> None:
    with pytest.raises(
        MeteringError,
        match="give rows per dataset in 'rows' or per level in 'rows_by_level', not both",
    ):
        Metered(rows=(RowsUse("a", "L1", 1),), rows_by_level={"L1": 1})


def test_a_dataset_is_metered_once() -> None:
    with pytest.raises(MeteringError) as caught:
        Metered(rows=(RowsUse("a", "L1", 1), RowsUse("b", "L1", 1), RowsUse("a", "L1", 2)))
    assert str(caught.value) == (
        "rows[2]: dataset 'a' is already metered by rows[0]; meter each dataset once, "
        "with its rows added together"
    )
    assert caught.value.code == "invalid_metering"
    with pytest.raises(MeteringError, match=r"rows\[1\]: dataset 'a' is already metered"):
        Metered(rows=(RowsUse("a", "L1", 1), RowsUse("a", "L2", 1)))


@pytest.mark.parametrize(
    ("use", "message"),
    [
        (
            lambda: RowsUse("a", "L5", 1),
            "level: 'L5' is not a classification level; use one of L1, L2, L3, L4",
        ),
        (lambda: RowsUse("a", "L1", -1), "rows: -1 is not a count"),
        (lambda: RowsUse("a", "L1", 1.0), "rows: 1.0 is not a count"),
        (lambda: RowsUse("a", "L1", True), "rows: True is not a count"),
        (lambda: RowsUse("  ", "L1", 1), "dataset: '  ' is not a dataset name"),
        (lambda: RowsUse(None, "L1", 1), "dataset: None is not a dataset name"),
    ],
)
def test_rows_use_is_validated(use: object, message: str) -> None:
    with pytest.raises(MeteringError) as caught:
        use()  # type: ignore[operator]
    assert str(caught.value).startswith(message)


def test_rows_must_be_a_sequence_of_rows_use() -> None:
    with pytest.raises(
        MeteringError, match=r"rows\[0\]: expected a RowsUse\(dataset, level, rows\), not dict"
    ):
        Metered(rows=({"dataset": "a", "level": "L1", "rows": 1},))  # type: ignore[arg-type]
    with pytest.raises(MeteringError, match="rows: must be a sequence of RowsUse"):
        Metered(rows={"L1": 1})  # type: ignore[arg-type]


def test_unnamed_rows_still_take_a_level_each() -> None:
    metered = Metered(rows=(RowsUse("", "L1", 1), RowsUse("", "L2", 2)))
    assert metered.rows_scanned == 3
    with pytest.raises(
        MeteringError, match=r"rows\[1\]: dataset '' is already metered by rows\[0\]"
    ):
        Metered(rows=(RowsUse("", "L1", 1), RowsUse("", "L1", 2)))


def test_defaults_are_one_call_and_nothing_else() -> None:
    metered = Metered()
    assert (metered.calls, metered.rows, metered.compute_seconds, metered.outputs) == (
        1,
        (),
        Decimal(0),
        0,
    )
