"""Parsed forms of stored JSON documents, kept by content.

Contract versions and price schedules are read and parsed on every job submission and
settlement, but a stored version or schedule never changes. Keying by the document's own
content (not its row id) keeps the cache right across databases in one process and for any
row that is rewritten: different content is a different key.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class ByContent(Generic[T]):
    """`parse(body)`, remembered for the most recently used `size` distinct bodies. `parse`
    must be pure and return an immutable value, since callers share it."""

    def __init__(self, parse: Callable[[Mapping[str, Any]], T], size: int = 256) -> None:
        self._parse = parse
        self._size = size
        self._kept: OrderedDict[str, T] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, body: Mapping[str, Any]) -> T:
        key = json.dumps(body, sort_keys=True, ensure_ascii=False, default=str)
        with self._lock:
            if key in self._kept:
                self._kept.move_to_end(key)
                return self._kept[key]
        value = self._parse(body)   # may raise: a refusal is not kept
        with self._lock:
            self._kept[key] = value
            while len(self._kept) > self._size:
                self._kept.popitem(last=False)
        return value
