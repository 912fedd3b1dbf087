"""Dummy data is drawn from the published schema alone: right columns, types and roles, within
the declared bounds, the same for the same seed, and nothing from the real files."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from sandbox.catalog import dummy
from sandbox.catalog.models import ColumnInfo, DatasetInfo

COLUMNS = (
    ColumnInfo("resident_id", "string", "identifier", unique=True),
    ColumnInfo("姓名", "string", "identifier", unique=False),
    ColumnInfo("区县", "string", "attribute", description="常住地所在区"),
    ColumnInfo("gender", "string", "quasi_identifier", distinct=2),
    ColumnInfo("birth_date", "date32[day]", "quasi_identifier", distinct=20_000),
    ColumnInfo("age", "int32", "quasi_identifier", lower=18, upper=65),
    ColumnInfo("income", "double", "sensitive", lower=1000.5, upper=2000.25),
    ColumnInfo("months", "int64", "attribute", lower=-5, upper=5),
    ColumnInfo("insured", "bool", "attribute"),
    ColumnInfo("seen_at", "timestamp[us, tz=UTC]", "attribute"),
)


def info(tmp_path: Path) -> DatasetInfo:
    # The partition does not exist: generating must never need it.
    return DatasetInfo(
        name="人口",
        title="人口基本信息",
        provider_id="p-1",
        level="L3",
        row_count=1_234_567,
        columns=COLUMNS,
        partitions=(str(tmp_path / "missing" / "part-0.parquet"),),
    )


def test_columns_types_and_order_follow_the_catalog(tmp_path: Path) -> None:
    table = dummy.generate(info(tmp_path), rows=300)
    assert table.num_rows == 300
    assert table.column_names == [c.name for c in COLUMNS]
    assert [str(f.type) for f in table.schema] == [
        "string",
        "string",
        "string",
        "string",
        "date32[day]",
        "int32",
        "double",
        "int64",
        "bool",
        "timestamp[us, tz=UTC]",
    ]


def test_values_stay_within_the_declared_bounds(tmp_path: Path) -> None:
    table = dummy.generate(info(tmp_path), rows=2000, seed=3)
    for name, low, high in (("age", 18, 65), ("income", 1000.5, 2000.25), ("months", -5, 5)):
        bounds = pc.min_max(table.column(name)).as_py()
        assert low <= bounds["min"] and bounds["max"] <= high, name
    dates = pc.min_max(table.column("birth_date")).as_py()
    assert dt.date(2000, 1, 1) <= dates["min"] and dates["max"] <= dt.date(2024, 12, 31)


def test_the_same_seed_gives_the_same_table_and_another_seed_another(tmp_path: Path) -> None:
    first = dummy.generate(info(tmp_path), rows=100, seed=1)
    assert first.equals(dummy.generate(info(tmp_path), rows=100, seed=1))
    assert not first.equals(dummy.generate(info(tmp_path), rows=100, seed=2))


def test_text_is_generated_from_the_column_name_only(tmp_path: Path) -> None:
    table = dummy.generate(info(tmp_path), rows=400)
    districts = set(table.column("区县").to_pylist())
    assert districts == {f"区县_{k}" for k in range(1, dummy.CATEGORIES + 1)}
    ids = table.column("resident_id").to_pylist()
    assert len(set(ids)) == len(ids) and ids[0] == "resident_id-0000001"
    # Not declared unique: people share a value, as a firm's employees share its code.
    assert len(set(table.column("姓名").to_pylist())) < 400


def test_an_identifier_of_the_same_name_joins_across_datasets(tmp_path: Path) -> None:
    other = DatasetInfo("social", "社保", "p-2", "L3", 10, (COLUMNS[0],), partitions=())
    left = set(dummy.generate(info(tmp_path), rows=50).column("resident_id").to_pylist())
    right = set(dummy.generate(other, rows=50, seed=9).column("resident_id").to_pylist())
    assert left == right


def test_rows_are_bounded(tmp_path: Path) -> None:
    assert dummy.generate(info(tmp_path), rows=0).num_rows == 0
    with pytest.raises(ValueError, match="rows must be between"):
        dummy.generate(info(tmp_path), rows=dummy.MAX_ROWS + 1)


def test_the_entry_publishes_policy_but_no_internal_count(tmp_path: Path) -> None:
    body = dummy.entry(info(tmp_path), raw_groups=frozenset({"gender"}))
    columns = {c["name"]: c for c in body["columns"]}
    assert "distinct" not in str(body) and "partitions" not in body
    assert columns["gender"]["group_by_raw"] is True
    assert columns["birth_date"]["group_by_raw"] is False
    assert columns["resident_id"]["unique"] is True
    assert columns["区县"]["description"] == "常住地所在区"
    back = dummy.from_entry(body, ("/tmp/x.parquet",), 7)
    assert [(c.name, c.type, c.role, c.lower, c.upper) for c in back.columns] == [
        (c.name, c.type, c.role, c.lower, c.upper) for c in COLUMNS
    ]
    assert back.row_count == 7 and back.level == "L3" and back.name == "人口"
    # The raw group keys pass the same check on the operator's side as on the service's.
    assert back.column("gender").distinct == 1  # type: ignore[union-attr]
    assert back.column("birth_date").distinct is None  # type: ignore[union-attr]


def test_an_unknown_type_is_drawn_as_text(tmp_path: Path) -> None:
    assert dummy.arrow_type("list<item: int64>") == pa.string()
    assert dummy.arrow_type("decimal128(10, 2)") == pa.float64()


def test_one_declared_bound_is_kept_and_the_other_follows(tmp_path: Path) -> None:
    columns = (
        ColumnInfo("above", "int64", "sensitive", lower=5000),
        ColumnInfo("below", "double", "sensitive", upper=-20.0),
    )
    table = dummy.generate(DatasetInfo("d", "d", "p", "L1", 1, columns, ()), rows=500)
    assert pc.min(table.column("above")).as_py() >= 5000
    assert pc.max(table.column("below")).as_py() <= -20.0


def test_chinese_names_survive_csv_and_parquet(tmp_path: Path) -> None:
    import io

    import pyarrow.parquet as pq

    from sandbox.pipeline.dummies import to_csv

    table = dummy.generate(info(tmp_path), rows=10)
    text = to_csv(table).decode("utf-8")
    assert text.startswith("\ufeffresident_id,姓名,区县,")
    assert "区县_" in text and "姓名-0000" in text
    sink = io.BytesIO()
    pq.write_table(table, sink)
    assert pq.read_table(io.BytesIO(sink.getvalue())).equals(table)
