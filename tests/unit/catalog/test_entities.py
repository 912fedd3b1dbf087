"""Entity numbers: the same identifier value gets the same number in every dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lock", "registry.npz"]


def test_a_registry_kept_as_three_files_is_still_read(tmp_path: Path) -> None:
    keys = np.sort(key_hash(pa.array(["甲001"])))
    np.save(tmp_path / "keys.npy", keys)
    np.save(tmp_path / "numbers.npy", np.array([5], np.uint64))
    np.save(tmp_path / "next.npy", np.array([6], np.uint64))
    assert Registry(tmp_path).number(pa.array(["乙002", "甲001"]), 2).to_pylist() == [6, 5]
