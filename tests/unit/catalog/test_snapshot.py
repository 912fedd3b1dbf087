"""Writing a version from batches: the same files and facts however the rows are batched,
uniqueness per identifier column, appends over the rows kept, nothing left on failure."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sandbox.catalog import snapshot
from sandbox.catalog.entities import Registry
from sandbox.catalog.models import ENTITY
from sandbox.errors import IngestError

POLICY = snapshot.Policy(
    {
        "居民编号": ("identifier", None, None, None),
        "单位代码": ("identifier", None, None, None),
        "区县": ("quasi_identifier", None, None, None),
        "收入": ("sensitive", 0, 1e6, None),
    }
)


def table(n: int, firms: int = 7) -> pa.Table:
    return pa.table(
        {
            "居民编号": [f"R{i:05d}" for i in range(n)],
            "单位代码": [f"F{i % firms}" for i in range(n)],
            "区县": ["城关区" if i % 3 else "安宁区" for i in range(n)],
            "收入": [float(1000 + i) for i in range(n)],
        }
    )


def write(tmp: Path, name: str, data: list[pa.Table], **kw: object) -> snapshot.Snapshot:
    return snapshot.write(data, POLICY, tmp / name, Registry(tmp / "reg"), 400, **kw)  # type: ignore[arg-type]


def test_batches_or_one_table_give_the_same_version(tmp_path: Path) -> None:
    whole = write(tmp_path, "a", [table(1000)])
    t = table(1000)
    batched = snapshot.write(
        [t.slice(i, 130) for i in range(0, 1000, 130)],
        POLICY,
        tmp_path / "b",
        Registry(tmp_path / "reg2"),
        400,
    )
    assert (
        whole.partitions
        == batched.partitions
        == (
            "part-00000.parquet",
            "part-00001.parquet",
            "part-00002.parquet",
        )
    )
    assert whole.columns == batched.columns and whole.row_count == 1000
    for name in whole.partitions:
        assert pq.read_table(tmp_path / "a" / name).equals(pq.read_table(tmp_path / "b" / name))


def test_each_identifier_column_is_unique_or_not_by_its_own_values(tmp_path: Path) -> None:
    done = write(tmp_path, "a", [table(100)])
    facts = {c.name: c for c in done.columns}
    assert facts["居民编号"].unique is True
    assert facts["单位代码"].unique is False  # firms employ many residents
    assert facts["区县"].distinct == 2
    holed = table(10).set_column(
        0, "居民编号", pa.array(["R1", None] + [f"Q{i}" for i in range(8)])
    )
    facts = {c.name: c for c in write(tmp_path, "b", [holed]).columns}
    assert facts["居民编号"].unique is False  # a row without an identifier names no one


def test_an_append_keeps_the_rows_and_counts_uniqueness_over_both(tmp_path: Path) -> None:
    first = write(tmp_path, "v1", [table(100)])
    previous = snapshot.Previous(
        first.columns,
        tuple(str(tmp_path / "v1" / p) for p in first.partitions),
        None,
        first.row_count,
    )
    more = table(103).slice(100)
    appended = write(tmp_path, "v2", [more], previous=previous, append=True)
    assert appended.row_count == 103
    assert {c.name: c.unique for c in appended.columns}["居民编号"] is True
    again = write(tmp_path, "v3", [table(2)], previous=previous, append=True)
    assert {c.name: c.unique for c in again.columns}["居民编号"] is False
    rows = pa.concat_tables(pq.read_table(tmp_path / "v2" / p) for p in appended.partitions)
    assert rows.num_rows == 103 and len(set(rows.column(ENTITY).to_pylist())) == 103


def test_a_failed_write_leaves_nothing_and_keeps_no_number(tmp_path: Path) -> None:
    write(tmp_path, "a", [table(10)])
    before = (tmp_path / "reg" / "registry.npz").read_bytes()

    def broken() -> object:
        yield table(1000, 3).slice(0, 500)
        raise OSError("the department's database went away")

    with pytest.raises(OSError):
        write(tmp_path, "b", broken())  # type: ignore[arg-type]
    assert not (tmp_path / "b").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    assert (tmp_path / "reg" / "registry.npz").read_bytes() == before
    with pytest.raises(IngestError, match="no rows"):
        write(tmp_path, "c", [table(0)])
