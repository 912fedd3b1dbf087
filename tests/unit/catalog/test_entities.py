"""Entity numbers: the same identifier value gets the same number in every dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from sandbox.catalog import entities
from sandbox.catalog.entities import Registry
from sandbox.common.hashing import key_hash


def test_the_same_identifier_gets_the_same_number_in_every_dataset(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    population = registry.number(pa.array(["甲001", "乙002", "丙003", "甲001"]), 4).to_pylist()
    assert population[0] == population[3]
    assert len(set(population)) == 3 and sorted(set(population)) == [0, 1, 2]
    insured = registry.number(pa.chunked_array([["丙003", "丁004"], ["乙002"]]), 3).to_pylist()
    assert insured == [population[2], 3, population[1]]
    # A registry opened afresh (another process) knows the numbers given so far.
    assert Registry(tmp_path).number(pa.array(["丁004"]), 1).to_pylist() == [3]


def test_rows_without_an_identifier_are_each_their_own_entity(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    assert registry.number(None, 3).to_pylist() == [0, 1, 2]
    assert registry.number(pa.array(["a", None, "a"]), 3).to_pylist() == [3, 4, 3]
    assert registry.number(pa.array(["b"]), 1).to_pylist() == [5]


def test_the_identifier_hash_never_changes() -> None:
    # Entity numbers of existing instances were assigned by these hashes.
    assert key_hash(pa.array(["110101199003077777", "甲"])).tolist() == PINNED_TEXT
    assert key_hash(pa.array([1, 2], pa.int64())).tolist() == PINNED_INT


PINNED_TEXT = [10533016243505075724, 16256658170840882421]
PINNED_INT = [3035652100526550566, 1360429390938723525]


def test_numbers_given_to_a_block_that_fails_are_not_kept(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    assert registry.number(pa.array(["甲001"]), 1).to_pylist() == [0]
    with pytest.raises(OSError, match="disk full"):
        with registry.numbering(pa.array(["乙002", "甲001"]), 2) as numbers:
            assert numbers.to_pylist() == [1, 0]
            raise OSError("disk full")
    # 乙002 was never kept: the next ingest gives the next number to whoever comes first.
    assert registry.number(pa.array(["丙003", "乙002"]), 2).to_pylist() == [1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key", "lock", "registry.npz"]


def test_a_registry_kept_as_three_files_is_still_read(tmp_path: Path) -> None:
    keys = np.sort(key_hash(pa.array(["甲001"])))
    np.save(tmp_path / "keys.npy", keys)
    np.save(tmp_path / "numbers.npy", np.array([5], np.uint64))
    np.save(tmp_path / "next.npy", np.array([6], np.uint64))
    assert Registry(tmp_path).number(pa.array(["乙002", "甲001"]), 2).to_pylist() == [6, 5]


def test_the_registry_keeps_keyed_digests_not_searchable_hashes(tmp_path: Path) -> None:
    # Resident numbers are few enough to try them all: a registry of plain hashes would say
    # who is registered. Without the key its digests match no hash of any value.
    ids = [f"11010119900307{i:04d}" for i in range(1000)]
    Registry(tmp_path).number(pa.array(ids), len(ids))
    with np.load(tmp_path / "registry.npz") as state:
        stored = set(state["keys"].tolist())
    assert len(stored) == 1000
    assert not stored & set(key_hash(pa.array(ids)).tolist())
    assert (tmp_path / "key").stat().st_mode & 0o077 == 0
    # Another instance (another key) keeps other digests of the same people.
    other = tmp_path / "other"
    Registry(other).number(pa.array(ids), len(ids))
    with np.load(other / "registry.npz") as state:
        assert not stored & set(state["keys"].tolist())


def test_an_unkeyed_registry_is_keyed_on_the_next_ingest_and_keeps_its_numbers(
    tmp_path: Path,
) -> None:
    keys = key_hash(pa.array(["甲001", "乙002"]))
    order = np.argsort(keys)
    with open(tmp_path / "registry.npz", "wb") as f:
        np.savez(
            f,
            keys=keys[order],
            numbers=np.array([7, 3], np.uint64)[order],
            next=np.array([9], np.uint64),
        )
    registry = Registry(tmp_path)
    assert registry.number(pa.array(["乙002", "丙003", "甲001"]), 3).to_pylist() == [3, 9, 7]
    with np.load(tmp_path / "registry.npz") as state:
        assert "keyed" in state.files
        assert not set(state["keys"].tolist()) & set(keys.tolist())
    assert registry.number(pa.array(["甲001"]), 1).to_pylist() == [7]


@pytest.mark.parametrize("recent_max", [100, 1 << 20])
def test_a_session_numbers_batch_after_batch_as_one_call_would(
    tmp_path: Path, recent_max: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(entities, "_RECENT_MAX", recent_max)
    values = [f"p{i % 3000}" for i in range(10_000)]
    whole = Registry(tmp_path / "a").number(pa.array(values), len(values)).to_pylist()
    with Registry(tmp_path / "b").session() as numbering:
        parts = [
            numbering.number(pa.array(values[i : i + 700]), len(values[i : i + 700])).to_pylist()
            for i in range(0, len(values), 700)
        ]
        fresh = numbering.fresh(2).tolist()
    assert [n for part in parts for n in part] == whole
    assert fresh == [3000, 3001]
    assert Registry(tmp_path / "b").number(pa.array(["p5", "new"]), 2).to_pylist() == [5, 3002]
