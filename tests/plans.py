"""Helpers for tests that build plans: a channel for plans never run, switches for how
partitions' text columns are read and lookups matched, and a cell comparison with SQL's
answers."""

from __future__ import annotations

import math
from typing import Any
from unittest import mock

from sandbox.engine import join, prune


class NoChannel:
    """What a `Table` built only for its plan is bound to: collecting or emitting is a bug."""

    def collect(self, plan: Any) -> dict[str, Any]:
        raise AssertionError("this table is built for its plan only; nothing collects it")

    def emit(self, name: str, value: Any) -> None:
        raise AssertionError("this table is built for its plan only; nothing emits")


def dictionaries(on: bool) -> Any:
    """Within the block, every text column stored with a dictionary is read as an Arrow
    dictionary (on), or none is (off); by default only those of large partitions are."""
    return mock.patch.object(prune, "_DICTIONARY_BYTES_PER_VALUE", float("inf") if on else -1.0)


def lookups(vectorised: bool) -> Any:
    """Within the block, every lookup join matches its keys in DuckDB (on) or with Arrow's
    `index_in` (off); by default only those with many rows on both sides go to DuckDB."""
    return mock.patch.multiple(
        join,
        VECTORISED_MIN_ROWS=0 if vectorised else 2**62,
        VECTORISED_MIN_RIGHT_ROWS=0 if vectorised else 2**62,
    )


def same_cell(a: Any, b: Any) -> bool:
    """One result cell against DuckDB's: nulls alike, numbers within 1e-9 (float sums depend
    on the order of addition), anything else equal."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
    return bool(a == b)
