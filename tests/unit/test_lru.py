"""The bounded LRU behind the service's per-process caches."""

from __future__ import annotations

import threading

import pyarrow as pa

from sandbox.common.lru import LRU


def test_the_least_recently_used_go_first_and_the_bound_holds() -> None:
    kept: LRU[str, int] = LRU(3)
    for k in "abc":
        kept.put(k, ord(k))
    assert kept.get("a") == ord("a")  # a is now the most recently used
    kept.put("d", 4)
    assert [kept.get(k) is not None for k in "abcd"] == [True, False, True, True]


def test_weights_are_the_values_measure_and_an_overweight_value_is_not_kept() -> None:
    kept: LRU[int, pa.Table] = LRU(2000, lambda t: t.get_total_buffer_size())
    for i in range(4):
        kept.put(i, pa.table({"x": pa.array([i] * 100, pa.int64())}))  # 800 bytes each
    assert [kept.get(i) is not None for i in range(4)] == [False, False, True, True]
    kept.put(9, pa.table({"x": pa.array([9] * 1000, pa.int64())}))  # over the bound alone
    assert kept.get(9) is None and kept.get(3) is not None


def test_a_new_value_replaces_its_key_and_the_entries_it_names() -> None:
    kept: LRU[tuple[str, int], str] = LRU(10)
    kept.put(("f", 1), "old")
    kept.put(("g", 1), "other")
    kept.put(("f", 2), "new", replaces=lambda k: k[0] == "f")
    assert kept.get(("f", 1)) is None and kept.get(("f", 2)) == "new"
    assert kept.get(("g", 1)) == "other"
    kept.put(("f", 2), "newer")
    assert kept.get(("f", 2)) == "newer"


def test_threads_may_share_one() -> None:
    kept: LRU[int, int] = LRU(50)

    def work(base: int) -> None:
        for i in range(2000):
            kept.put(base + i % 80, i)
            kept.get(base + (i * 7) % 80)

    threads = [threading.Thread(target=work, args=(j * 1000,)) for j in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(kept.get(j * 1000 + i) is not None for j in range(8) for i in range(80)) == 50


def test_a_smaller_bound_drops_the_least_recently_used_at_once() -> None:
    kept: LRU[int, str] = LRU(4)
    for i in range(4):
        kept.put(i, str(i))
    kept.get(0)  # 0 is now the most recently used
    kept.resize(2)
    assert [kept.get(i) is not None for i in range(4)] == [True, False, False, True]
    kept.resize(0)
    assert all(kept.get(i) is None for i in range(4))
    kept.put(5, "5")  # nothing fits a bound of nothing
    assert kept.get(5) is None
