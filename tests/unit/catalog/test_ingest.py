"""Ingest: CSV/Parquet into partitioned Parquet, checked completely before anything is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from factories import parquet_bytes

from sandbox.catalog import snapshot
from sandbox.catalog.entities import Registry
from sandbox.catalog.ingest import ingest, parse_meta, policy_of, read_file
from sandbox.errors import IngestError

CSV = "区县,年龄,姓名,收入\n城关区,30,张三,5000.5\n湖滨区,41,李四,\n新城区,67,王五,3200\n"
POLICY = {
    "区县": {"role": "attribute"},
    "年龄": {"role": "quasi_identifier"},
    "姓名": {"role": "identifier"},
    "收入": {"role": "sensitive", "lower": 0, "upper": 1e6},
}


def meta(columns: dict[str, Any] | None = None, **fields: Any) -> Any:
    raw = {
        "name": "人口_2026",
        "title": "常住人口",
        "provider_id": "pr-1",
        "level": "L3",
        "columns": POLICY if columns is None else columns,
        **fields,
    }
    return parse_meta(raw)


def listing(d: Path) -> list[str]:
    """Datasets' directories (not the entity registry's)."""
    return sorted(p.name for p in d.iterdir() if p.name != ".entities") if d.exists() else []


def read_back(partitions: tuple[str, ...]) -> pa.Table:
    """The rows as uploaded, without the entity numbers stored beside them."""
    return pa.concat_tables(pq.read_table(p) for p in partitions).drop_columns(["__entity"])


def test_every_row_is_stored_with_its_entity_number(tmp_path: Path) -> None:
    info = ingest(CSV.encode("utf-8"), "人口.csv", meta(), tmp_path, partition_rows=2)
    numbers = pa.concat_tables(pq.read_table(p) for p in info.partitions).column("__entity")
    assert numbers.type == pa.uint64() and numbers.to_pylist() == [0, 1, 2]


def test_a_csv_with_chinese_headers_and_values_round_trips(tmp_path: Path) -> None:
    info = ingest(CSV.encode("utf-8"), "人口.csv", meta(), tmp_path, partition_rows=1000)
    assert info.name == "人口_2026" and info.title == "常住人口" and info.level == "L3"
    assert info.row_count == 3
    assert [(c.name, c.type, c.role) for c in info.columns] == [
        ("区县", "string", "attribute"),
        ("年龄", "int64", "quasi_identifier"),
        ("姓名", "string", "identifier"),
        ("收入", "double", "sensitive"),
    ]
    assert (info.column("收入").lower, info.column("收入").upper) == (0, 1e6)
    back = read_back(info.partitions)
    assert back.column("区县").to_pylist() == ["城关区", "湖滨区", "新城区"]
    assert back.column("姓名").to_pylist() == ["张三", "李四", "王五"]
    assert back.column("收入").to_pylist() == [5000.5, None, 3200.0]
    assert listing(tmp_path) == ["人口_2026"]
    assert info.partitions == (str(tmp_path / "人口_2026" / "part-00000.parquet"),)


def test_a_utf8_bom_is_not_part_of_the_first_header(tmp_path: Path) -> None:
    info = ingest(b"\xef\xbb\xbf" + CSV.encode("utf-8"), "bom.csv", meta(), tmp_path, 1000)
    assert info.columns[0].name == "区县"


def test_a_gbk_csv_is_refused_with_the_iconv_hint(tmp_path: Path) -> None:
    with pytest.raises(IngestError) as info:
        ingest(CSV.encode("gbk"), "人口.csv", meta(), tmp_path, 1000)
    assert "not UTF-8" in info.value.message
    assert "iconv -f GBK -t UTF-8" in info.value.message
    assert listing(tmp_path) == []


def test_parquet_input_keeps_its_types(tmp_path: Path) -> None:
    table = pa.table(
        {
            "区县": ["城关区", "湖滨区"],
            "出生日期": pa.array([0, 365], pa.date32()),
            "人数": pa.array([3, 4], pa.int32()),
        }
    )
    cols = {
        "区县": {"role": "attribute"},
        "出生日期": {"role": "quasi_identifier"},
        "人数": {"role": "attribute"},
    }
    info = ingest(parquet_bytes(table), "upload.bin", meta(cols), tmp_path, 1000)
    assert [c.type for c in info.columns] == ["string", "date32[day]", "int32"]
    assert read_back(info.partitions).equals(table)


def test_partitions_hold_partition_rows_each(tmp_path: Path) -> None:
    body = "".join(f"区{i % 3},{i},人{i},{i}.5\n" for i in range(23))
    info = ingest(("区县,年龄,姓名,收入\n" + body).encode(), "x.csv", meta(), tmp_path, 5)
    assert [Path(p).name for p in info.partitions] == [f"part-{i:05d}.parquet" for i in range(5)]
    assert [pq.ParquetFile(p).metadata.num_rows for p in info.partitions] == [5, 5, 5, 5, 3]
    assert read_back(info.partitions).column("年龄").to_pylist() == list(range(23))
    assert info.row_count == 23


@pytest.mark.parametrize(
    ("columns", "fields", "fragment"),
    [
        ({**POLICY, "电话": {"role": "identifier"}}, {}, "names column '电话', which is not in"),
        ({k: v for k, v in POLICY.items() if k != "姓名"}, {}, "column '姓名' has no role"),
        ({**POLICY, "区县": {"role": "attribute", "lower": 0}}, {}, "bounds apply to numeric"),
        (
            {**POLICY, "收入": {"role": "sensitive", "lower": 5, "upper": 1}},
            {},
            "lower bound is above",
        ),
        ({**POLICY, "区县": {"role": "public"}}, {}, "role must be one of"),
        ({**POLICY, "区县": {"role": "attribute", "pii": True}}, {}, "Extra inputs"),
        (POLICY, {"level": "L9"}, "level must be one of L1, L2, L3, L4"),
        (POLICY, {"name": "../etc"}, "names start with a letter"),
        (POLICY, {"name": "1abc"}, "names start with a letter"),
        (POLICY, {"name": ""}, "names start with a letter"),
        (POLICY, {"title": ""}, "title"),
        (POLICY, {"owner": "x"}, "owner"),
    ],
)
def test_a_bad_policy_is_refused_and_leaves_nothing_behind(
    tmp_path: Path, columns: dict[str, Any], fields: dict[str, Any], fragment: str
) -> None:
    datasets = tmp_path / "datasets"
    with pytest.raises(IngestError) as info:
        ingest(CSV.encode(), "人口.csv", meta(columns, **fields), datasets, 1000)
    assert fragment in info.value.message
    assert info.value.code == "ingest_failed"
    assert listing(datasets) == []


def test_a_bad_role_lists_the_roles() -> None:
    with pytest.raises(IngestError, match="identifier, quasi_identifier, sensitive, attribute"):
        meta({**POLICY, "区县": {"role": "public"}})


def test_a_malformed_csv_error_quotes_no_data(tmp_path: Path) -> None:
    data = "区县,年龄\n城关区,30\n湖滨区,41,机密数值SECRET-7731\n".encode()
    with pytest.raises(IngestError) as info:
        ingest(
            data,
            "bad.csv",
            meta({"区县": {"role": "attribute"}, "年龄": {"role": "attribute"}}),
            tmp_path,
            1000,
        )
    message = info.value.message
    assert "could not read the file as CSV" in message
    assert "Expected 2 columns, got 3" in message
    for value in ("SECRET", "7731", "机密", "湖滨区", "41"):
        assert value not in message
    assert listing(tmp_path) == []


def test_a_file_named_parquet_that_is_not_parquet_is_reported_as_parquet() -> None:
    with pytest.raises(IngestError, match="could not read the file as Parquet"):
        read_file(b"a,b\n1,2\n", "x.parquet")


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "empty"),
        (b"a,a\n1,2\n", "duplicate column names"),
        (b"a,b\n", "no rows"),
        (b"a,b\n,1\n,2\n", "'a' is empty in every row"),
    ],
)
def test_files_without_usable_data_are_refused(tmp_path: Path, data: bytes, fragment: str) -> None:
    cols = {"a": {"role": "attribute"}, "b": {"role": "attribute"}}
    with pytest.raises(IngestError, match=fragment):
        ingest(data, "x.csv", meta(cols), tmp_path, 1000)
    assert listing(tmp_path) == []


def test_an_existing_dataset_directory_is_not_overwritten(tmp_path: Path) -> None:
    ingest(CSV.encode(), "a.csv", meta(), tmp_path, 1000)
    before = listing(tmp_path / "人口_2026")
    with pytest.raises(IngestError, match="already exists"):
        ingest(CSV.encode(), "a.csv", meta(), tmp_path, 1000)
    assert listing(tmp_path) == ["人口_2026"]
    assert listing(tmp_path / "人口_2026") == before


def test_a_failed_write_leaves_no_temporary_directory(tmp_path: Path) -> None:
    table = pa.table({"a": [1, 2, 3]})
    policy = policy_of(parse_meta(meta()).columns)
    with pytest.raises(IngestError):
        snapshot.write([table], policy, tmp_path / "t", Registry(tmp_path / "r"), 1000)
    assert listing(tmp_path) == ["r"]
    assert not any(name.startswith(".tmp-") for name in listing(tmp_path))
