"""Small pure arithmetic for reports: percentiles of a sample, and whole units shared out
in proportion without losing one."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

_K = TypeVar("_K", bound=Hashable)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The `q` quantile (0 ≤ q ≤ 1) of `values`, interpolating linearly between the two
    nearest ranks (numpy's default, Hyndman and Fan's type 7); None for no values."""
    if not 0 <= q <= 1:
        raise ValueError(f"a quantile is between 0 and 1, not {q}")
    if not values:
        return None
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float | None:
    return percentile(values, 0.5)


def apportion(total: int, weights: Mapping[_K, int]) -> dict[_K, int]:
    """`total` whole units (fen, say) shared among the keys of `weights` in proportion to
    them, by largest remainder, so that the shares add up to `total` exactly. Equal weights
    when every weight is zero; ties go to the keys in the order given. No keys: no shares."""
    if not weights:
        return {}
    if any(w < 0 for w in weights.values()):
        raise ValueError("weights are never negative")
    keys = list(weights)
    basis = {k: weights[k] for k in keys} if any(weights.values()) else dict.fromkeys(keys, 1)
    whole = sum(basis.values())
    shares = {k: total * basis[k] // whole for k in keys}
    left = total - sum(shares.values())
    # Remainders largest first; Python's sort is stable, so ties keep the given order.
    by_remainder = sorted(keys, key=lambda k: -(total * basis[k] % whole))
    for k in by_remainder[:left]:
        shares[k] += 1
    return shares
