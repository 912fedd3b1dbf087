"""Parsing a JSON list of objects with errors that point at the offending element."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from pricing.errors import PricingError

T = TypeVar("T")


def parse_list(
    raw: object,
    field: str,
    parse_one: Callable[[Mapping[str, Any]], T],
    error: type[PricingError],
    noun: str,
    example: str,
) -> tuple[T, ...]:
    """Parse `raw` as a list of `noun` objects. An element's error is re-raised prefixed with
    its position, e.g. "items[1].price: …", so the message names the item. Whether an empty
    list is acceptable is the caller's rule."""
    if raw is None:
        raise error(f"{field}: missing; give a list of {noun}s such as [{example}]")
    if isinstance(raw, (str, bytes)) or not isinstance(raw, Sequence):
        raise error(
            f"{field}: must be a list of {noun}s such as [{example}], not {type(raw).__name__}"
        )
    out: list[T] = []
    for index, element in enumerate(raw):
        if not isinstance(element, Mapping):
            raise error(
                f"{field}[{index}]: a {noun} must be an object such as {example}, "
                f"not {type(element).__name__}"
            )
        try:
            out.append(parse_one(element))
        except error as e:
            raise error(f"{field}[{index}].{e.message}") from None
    return tuple(out)


class _Keyed(Protocol):
    # Read-only, so that frozen items with a narrower `unit` (a Literal) match.
    @property
    def unit(self) -> str: ...

    @property
    def level(self) -> str | None: ...


K = TypeVar("K", bound=_Keyed)


def check_unit_levels(
    items: tuple[K, ...], kind: type, error: type[PricingError], verb: str, parser: str
) -> tuple[K, ...]:
    """Each (unit, level) at most once: two prices (or caps) for one unit would be ambiguous."""
    seen: dict[tuple[str, str | None], int] = {}
    for index, item in enumerate(items):
        if not isinstance(item, kind):
            raise error(
                f"items[{index}]: expected a {kind.__name__}, not "
                f"{type(item).__name__}; build them from JSON with {parser}"
            )
        key = (item.unit, item.level)
        if key in seen:
            at_level = f" at level {item.level!r}" if item.level else " without a level"
            raise error(
                f"items[{index}]: unit {item.unit!r}{at_level} is already {verb} by "
                f"items[{seen[key]}]; keep one of them"
            )
        seen[key] = index
    return items


def index_for(items: tuple[_Keyed, ...], unit: str, level: str | None) -> int | None:
    """The entry for `unit` at `level`: a level-specific one beats a level-less one."""
    fallback: int | None = None
    for index, item in enumerate(items):
        if item.unit != unit:
            continue
        if level is not None and item.level == level:
            return index
        if item.level is None:
            fallback = index
    return fallback
