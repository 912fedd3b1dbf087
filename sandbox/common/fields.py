"""Free text people type into the service (names, reasons, descriptions): checked once, the
same way everywhere."""

from __future__ import annotations

from typing import Any

from sandbox.errors import BadRequest


def text(value: Any, field: str, limit: int, *, required: bool, how: str = "") -> str:
    """`value` stripped; refused when it is not text, empty though `required` (saying `how`
    to fill it in) or longer than `limit` characters."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise BadRequest(f"{field} must be text, not {type(value).__name__}")
    checked = value.strip()
    if required and not checked:
        raise BadRequest(f"{field} is empty: {how}")
    if len(checked) > limit:
        raise BadRequest(f"{field} is {len(checked)} characters; keep it to {limit}")
    return checked
