"""Parsed forms of stored JSON documents, kept by content.

Contract versions and price schedules are read and parsed on every job submission and
settlement, but a stored version or schedule never changes. Keying by the document's own
content (not its row id) keeps the cache right across databases in one process and for any
row that is rewritten: different content is a different key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from sandbox.common.lru import LRU

T = TypeVar("T")


class ByContent(Generic[T]):
    """`parse(body)`, remembered for the most recently used `size` distinct bodies. `parse`
    must be pure and return an immutable value, since callers share it."""

    def __init__(self, parse: Callable[[Mapping[str, Any]], T], size: int = 256) -> None:
        self._parse = parse
        self._kept: LRU[str, T] = LRU(size)

    def __call__(self, body: Mapping[str, Any]) -> T:
        key = json.dumps(body, sort_keys=True, ensure_ascii=False, default=str)
        value = self._kept.get(key)
        if value is None:
            value = self._parse(body)  # may raise: a refusal is not kept
            self._kept.put(key, value)
        return value
