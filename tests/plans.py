"""A channel for building plans in tests that never run them."""

from __future__ import annotations

from typing import Any


class NoChannel:
    """What a `Table` built only for its plan is bound to: collecting or emitting is a bug."""

    def collect(self, plan: Any) -> dict[str, Any]:
        raise AssertionError("this table is built for its plan only; nothing collects it")

    def emit(self, name: str, value: Any) -> None:
        raise AssertionError("this table is built for its plan only; nothing emits")
