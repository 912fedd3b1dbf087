"""A least-recently-used map bounded by the total weight of its values, safe across threads.

The service keeps several small caches of things it would otherwise read or build again per
job (parsed documents, release histories, scanned tables); each is one of these, with its own
bound and its own measure of weight (one per entry, or bytes).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRU(Generic[K, V]):
    def __init__(self, max_weight: int, weight: Callable[[V], int] = lambda _: 1) -> None:
        self.max_weight = max_weight
        self._weight = weight
        self._kept: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._total = 0
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            entry = self._kept.get(key)
            if entry is None:
                return None
            self._kept.move_to_end(key)
            return entry[0]

    def put(self, key: K, value: V, *, replaces: Callable[[K], bool] | None = None) -> None:
        """Keep `value` (unless it alone outweighs the bound), first dropping the entries
        `replaces` picks, then the least recently used until the bound holds."""
        w = self._weight(value)
        if w > self.max_weight:
            return
        with self._lock:
            for old in [k for k in self._kept if k == key or (replaces and replaces(k))]:
                self._total -= self._kept.pop(old)[1]
            self._kept[key] = (value, w)
            self._total += w
            self._evict()

    def resize(self, max_weight: int) -> None:
        """A new bound; the least recently used entries go until it holds."""
        with self._lock:
            self.max_weight = max_weight
            self._evict()

    def _evict(self) -> None:
        while self._total > self.max_weight:
            _, (_, dropped) = self._kept.popitem(last=False)
            self._total -= dropped

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()
            self._total = 0
