"""Encryption at rest: an L3/L4 dataset's partitions are Parquet-encrypted under the
instance's master key, and every reader of the service still reads them."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from operators.keys import generate_key, private_key_to_pem
from operators.suite import Suite
from sandbox.catalog import encryption, revisions
from sandbox.catalog.ingest import ingest_profiled, parse_meta
from sandbox.engine import prune

CSV = "区县,年龄,姓名,收入\n城关区,30,张三丰,5000.5\n湖滨区,41,李四光,\n新城区,67,王五哥,3200\n"
COLUMNS = {
    "区县": {"role": "attribute"},
    "年龄": {"role": "quasi_identifier"},
    "姓名": {"role": "identifier"},
    "收入": {"role": "sensitive", "lower": 0, "upper": 1e6},
}


def instance(root: Path, suite: Suite = Suite.international) -> Path:
    """A data directory as `sandbox init` lays it out: keys/bureau.pem and datasets/."""
    (root / "keys").mkdir(parents=True)
    (root / "keys" / "bureau.pem").write_bytes(private_key_to_pem(generate_key(suite)))
    return root / "datasets"


def ingest(datasets: Path, level: str, name: str = "人口") -> Any:
    meta = parse_meta(
        {
            "name": name,
            "title": "常住人口",
            "provider_id": "d-1",
            "level": level,
            "columns": COLUMNS,
        }
    )
    info, _ = ingest_profiled(
        CSV.encode("utf-8"), "人口.csv", meta, datasets, partition_rows=2, at_rest=True
    )
    return info


@pytest.mark.parametrize("level", ["L3", "L4"])
def test_l3_and_l4_partitions_are_encrypted_footer_and_all(tmp_path: Path, level: str) -> None:
    info = ingest(instance(tmp_path), level)
    for path in info.partitions:
        data = Path(path).read_bytes()
        assert data[-4:] == b"PARE"
        for secret in ("张三丰", "李四光", "收入", "姓名"):
            assert secret.encode("utf-8") not in data
        with pytest.raises(OSError, match="encrypted"):
            pq.read_table(path)


def test_the_engine_reads_encrypted_partitions_as_plain_ones(tmp_path: Path) -> None:
    datasets = instance(tmp_path)
    encrypted, plain = ingest(datasets, "L3", "人口"), ingest(datasets, "L2", "企业")
    for enc, pla in zip(encrypted.partitions, plain.partitions):
        assert Path(pla).read_bytes()[-4:] == b"PAR1"
        a = prune.read(prune.footer(enc), ["区县", "收入"], None)
        b = prune.read(prune.footer(pla), ["区县", "收入"], [0])
        assert a.equals(b)
    read, expected = (
        revisions.digests_of_files(encrypted.partitions, ["收入"]),
        revisions.digests_of_files(plain.partitions, ["收入"]),
    )
    assert read.entities.tolist() == expected.entities.tolist()
    assert read.sums.tolist() == expected.sums.tolist()


def test_the_master_key_is_made_once_readable_by_the_service_only(tmp_path: Path) -> None:
    ingest(instance(tmp_path), "L3")
    key = tmp_path / "keys" / "data.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_text().startswith("v1 aes-256-gcm:")
    first = key.read_bytes()
    ingest(tmp_path / "datasets", "L4", "另一个")
    assert key.read_bytes() == first


def test_an_sm_instance_wraps_data_keys_with_sm4(tmp_path: Path) -> None:
    info = ingest(instance(tmp_path, Suite.sm), "L3")
    assert (tmp_path / "keys" / "data.key").read_text().startswith("v1 sm4-gcm:")
    table = pa.concat_tables(prune.read(prune.footer(p), ["姓名"], None) for p in info.partitions)
    assert table.column("姓名").to_pylist() == ["张三丰", "李四光", "王五哥"]


def test_without_the_master_key_the_data_is_unreadable_and_says_why(tmp_path: Path) -> None:
    info = ingest(instance(tmp_path), "L3")
    (tmp_path / "keys" / "data.key").unlink()
    with pytest.raises(encryption.DataKeyMissing, match="restore the instance's keys"):
        encryption.decryption_for(info.partitions[0])


def test_another_instances_master_key_does_not_open_the_data(tmp_path: Path) -> None:
    info = ingest(instance(tmp_path / "a"), "L3")
    ingest(instance(tmp_path / "b"), "L3")
    (tmp_path / "a" / "keys" / "data.key").write_bytes(
        (tmp_path / "b" / "keys" / "data.key").read_bytes()
    )
    encryption._factory.cache_clear()
    with pytest.raises(OSError):
        pq.read_table(
            info.partitions[0], decryption_properties=encryption.decryption_for(info.partitions[0])
        )


def test_outside_an_instance_an_l3_dataset_is_refused_rather_than_left_plain(
    tmp_path: Path,
) -> None:
    with pytest.raises(encryption.DataKeyMissing, match="sandbox init"):
        ingest(tmp_path / "datasets", "L3")


def _read_all(paths: list[str]) -> list[Any]:
    return [
        pq.read_table(p, decryption_properties=encryption.decryption_for(p)).to_pylist()
        for p in paths
    ]


@pytest.mark.parametrize("suite", [Suite.international, Suite.sm])
def test_rotating_the_master_key_rewraps_keys_without_rewriting_data(
    tmp_path: Path, suite: Suite
) -> None:
    datasets = instance(tmp_path, suite)
    info = ingest(datasets, "L3")
    plain = ingest(datasets, "L2", "企业")
    before = _read_all(info.partitions)
    data = {p: Path(p).read_bytes() for p in info.partitions}
    material = {p: encryption.key_material(Path(p)).read_bytes() for p in info.partitions}
    key = tmp_path / "keys" / "data.key"
    old_key = key.read_bytes()
    done = encryption.rotate(tmp_path, sorted(datasets.rglob("*.parquet")))
    assert (done.version, done.files, done.retired) == (2, len(info.partitions), (1,))
    # The data files are as they were; only their wrapped keys changed, under version 2 alone.
    assert {p: Path(p).read_bytes() for p in info.partitions} == data
    assert all(encryption.key_material(Path(p)).read_bytes() != material[p] for p in data)
    assert key.read_text().startswith("v2 ") and key.read_text().count("\n") == 1
    assert not encryption.key_material(Path(plain.partitions[0])).exists()
    encryption._factory.cache_clear()
    assert _read_all(info.partitions) == before
    # A copy of the retired master key opens nothing any more.
    key.write_bytes(old_key)
    encryption._factory.cache_clear()
    with pytest.raises(OSError):
        _read_all(info.partitions)


def test_a_partition_whose_key_material_is_missing_stops_the_rotation(tmp_path: Path) -> None:
    datasets = instance(tmp_path)
    info = ingest(datasets, "L3")
    encryption.key_material(Path(info.partitions[0])).unlink()
    with pytest.raises(encryption.DataKeyMissing, match="restore it from backup before rotating"):
        encryption.rotate(tmp_path, sorted(datasets.rglob("*.parquet")))
    # Nothing was retired: the files rotated so far and those not yet both still open.
    encryption._factory.cache_clear()
    assert _read_all(info.partitions[1:])
