"""The engine's own columns: names it puts beside a plan's columns for disclosure control,
and the one rule that none of them is ever released.

A plan cannot name a column beginning with "__" (language.plan.check_name), so every such
name in a result is the engine's. Partition results carry partial aggregates per aggregate
number `i`; the merged result carries, per released aggregate `name`, the statistics the
release gate (sandbox.disclosure) and the differential-privacy mechanisms read. The
catalog's stored entity column (catalog.models.ENTITY) follows the same rule.
"""

from __future__ import annotations

PREFIX = "__"

# Field metadata, set on an output column whose exact value would be one person's value (a
# quantile of a sensitive column): the number of significant figures to release.
COARSEN_KEY = b"coarsen_significant_figures"

ROWS = "__rows"  # rows per group (the count of a grouped table)
ALL = "__all"  # the one group key of a whole-table aggregate
PARTIAL_ROW = "__partial"  # a partial row's place among all partitions' partial rows
POSITIONS = "__pos"  # a row's position in its partition, for gathering values

_CONTRIBUTORS = "__c:"
_EXACT_SUM = "__s:"
VALUED = "__valued:"
SHADOW = "__p:"


def internal(name: str) -> bool:
    """Whether a result column is the engine's own: never released, never a plan's."""
    return name.startswith(PREFIX)


def released(names: list[str]) -> list[str]:
    """The columns of a result that may be released: the plan's own."""
    return [n for n in names if not internal(n)]


def contributors(name: str) -> str:
    """Per cell of aggregate `name`: how many people contribute to it."""
    return _CONTRIBUTORS + name


def contributor_columns(names: list[str]) -> list[str]:
    return [n for n in names if n.startswith(_CONTRIBUTORS)]


def aggregate_of(column: str) -> str:
    """The aggregate a `contributors`, `valued` or `exact_sum` column is about."""
    for prefix in (_CONTRIBUTORS, VALUED, _EXACT_SUM):
        if column.startswith(prefix):
            return column[len(prefix) :]
    raise ValueError(f"{column!r} is not a per-aggregate column")


def exact_sum(name: str) -> str:
    """The exact sum behind a mean, for its noisy release under differential privacy."""
    return _EXACT_SUM + name


def valued(name: str) -> str:
    """Per cell of a traced aggregate: its rows with a value, counted or not (padding)."""
    return VALUED + name


def shadow(name: str) -> str:
    """A perturbed copy of column `name`, carried beside it to trace contributions."""
    return SHADOW + name


# --- partial aggregates of one partition, per aggregate number i ---------------------------


def partial_count(i: int) -> str:
    return f"__n{i}"


def partial_sum(i: int) -> str:
    return f"__s{i}"


def partial_m2(i: int) -> str:
    return f"__m{i}"


def partial_extreme(i: int) -> str:
    return f"__x{i}"


def partial_distinct(i: int) -> str:
    return f"__d{i}"


def partial_values(i: int) -> str:
    return f"__q{i}"


def summed_partial(name: str) -> bool:
    """Partial columns the merge adds up: row counts, counts and sums."""
    return name == ROWS or name[:3] in ("__n", "__s")


def counted_partial(name: str) -> bool:
    """Partial columns that count (an empty partition's null is a count of 0)."""
    return name == ROWS or name.startswith("__n")
