"""The roles a principal can hold; what each may do is described in DESIGN.md."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    bureau = "bureau"
    provider = "provider"
    operator = "operator"
    regulator = "regulator"
