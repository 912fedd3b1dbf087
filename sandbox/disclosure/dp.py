"""Differential privacy for releases from datasets a contract puts under it: Laplace noise
drawn by OpenDP, calibrated to each released quantity's sensitivity.

How a job's ε for a dataset is spent: each collect() of the dataset spends the job's ε divided
by the number of collect() call sites in the code (the count the quote's scan bound uses too);
a collect() beyond that is refused. Within one collect() the ε is divided evenly among its
aggregates; a sum or mean spends half of its share on a noisy contributor count and half on a
noisy sum (a mean is the noisy sum over the noisy count: post-processing). Groups are disjoint,
so every cell of one aggregate is released under that aggregate's share.

Sensitivities assume each person contributes one row, so a dataset is analysed under
differential privacy only when one of its identifier columns is unique (recorded at ingest).
Adding or removing one person changes a count by at most 1 and a sum of values clamped (by the
engine, before summing) to the catalog's [lower, upper] by at most max(|lower|, |upper|).

Counts are drawn from the discrete Laplace (integers) and clamped at 0, means are clamped to
the bounds: post-processing, which costs no ε. The minimum-contributor rule then applies to
the noisy counts. Not protected: which group keys appear, since keys come from the data;
group by coarse, public categories.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import opendp.prelude as odp
import pyarrow as pa

from contracts.budget import Epsilon
from sandbox.catalog.models import DatasetInfo
from sandbox.engine import internal
from sandbox.engine.validate import CheckedPlan, kind_of
from sandbox.errors import DisclosureRefused
from sandbox.language import plan as p

odp.enable_features("contrib")

RULE = "differential_privacy"
MECHANISM = "laplace"
Bounds = tuple[float, float]


@dataclass(frozen=True)
class Noise:
    """One noisy quantity of a release, as the disclosure report records it."""

    column: str
    quantity: str  # "count" or "sum"
    epsilon: Epsilon
    sensitivity: int | float
    scale: float

    def to_json(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "quantity": self.quantity,
            "rule": RULE,
            "epsilon": str(self.epsilon),
            "mechanism": MECHANISM,
            "sensitivity": self.sensitivity,
            "scale": self.scale,
        }


def ineligibility(ds: DatasetInfo) -> str | None:
    """Why `ds` cannot be analysed under differential privacy, or None when it can."""
    if any(c.role == "identifier" and c.unique for c in ds.columns):
        return None
    return (
        "the noise is calibrated to one row per person, and no identifier column of "
        f"dataset '{ds.name}' is unique (a person may have several rows)"
    )


def check_eligible(ds: DatasetInfo) -> None:
    reason = ineligibility(ds)
    if reason is not None:
        raise DisclosureRefused(
            f"dataset '{ds.name}' cannot be released under differential "
            f"privacy: {reason}; the bureau must re-register it with one "
            "row per person"
        )


# Aggregates whose noise is calibrated; the others have no mechanism here yet.
PRIVATE_AGGREGATES = frozenset({"count", "sum", "mean"})


def prepare(checked: CheckedPlan) -> CheckedPlan:
    """The plan marked for a private release: each sum/mean clamps to its column's bounds."""
    check_eligible(checked.dataset)
    for name, a in checked.plan.aggs:
        if a.fn not in PRIVATE_AGGREGATES:
            raise DisclosureRefused(
                f"{a.fn}() (output {name!r}) is not available under differential privacy yet; "
                f"dataset '{checked.dataset.name}' is analysed under it by this contract, so use "
                f"{', '.join(sorted(PRIVATE_AGGREGATES))}() instead"
            )
    return dataclasses.replace(
        checked,
        clamp=tuple(None if a.arg is None else _bounds(checked, a) for _, a in checked.plan.aggs),
    )


def _bounds(checked: CheckedPlan, agg: p.Agg) -> Bounds:
    ds = checked.dataset
    assert agg.arg is not None
    what = (
        f"{agg.fn}({p.describe_expr(agg.arg)}) on dataset '{ds.name}', which this contract "
        "analyses under differential privacy,"
    )
    if not isinstance(agg.arg, p.Col) or agg.arg.name in _derived(checked.plan):
        raise DisclosureRefused(
            f"{what} needs a catalog column, not an expression: its noise "
            "is calibrated to the column's bounds. Aggregate the column "
            "itself, e.g. sum('income'), and transform the result"
        )
    column = ds.column(agg.arg.name)
    if column is None or column.lower is None or column.upper is None:
        raise DisclosureRefused(
            f"{what} needs a column with lower and upper bounds in the "
            "catalog to calibrate its noise, and this one has none; use "
            "count(), or ask the bureau to record bounds for the column"
        )
    if kind_of(column.type) == "int":
        lower, upper = math.ceil(column.lower), math.floor(column.upper)
        if lower > upper:
            raise DisclosureRefused(
                f"{what} needs bounds that contain a whole number; ask "
                "the bureau to correct the column's bounds"
            )
        return lower, upper
    return float(column.lower), float(column.upper)


def _derived(node: p.Node) -> set[str]:
    names: set[str] = set()
    while not isinstance(node, p.Scan):
        if isinstance(node, p.Derive):
            names |= {name for name, _ in node.columns}
        # The driver refuses a join with a dataset under differential privacy before this.
        assert not isinstance(node, p.Join)
        node = node.input
    return names


def privatize(
    table: pa.Table, checked: CheckedPlan, epsilon: Epsilon
) -> tuple[pa.Table, tuple[Noise, ...]]:
    """Noisy values and noisy contributor counts for one collect() of a prepared plan,
    spending `epsilon` in all. The exact sums the engine passed along are dropped."""
    plan, clamp = checked.plan, checked.clamp
    assert clamp is not None, "privatize() takes a plan from prepare()"
    share = epsilon / len(plan.aggs)
    out: dict[str, Any] = {k: table.column(k) for k in plan.keys}
    noise: list[Noise] = []
    for (name, agg), bounds in zip(plan.aggs, clamp):
        if bounds is None:
            counts, record = noisy_counts(table.column(name).to_pylist(), share, name)
            out[name] = out[internal.contributors(name)] = pa.array(counts, pa.int64())
            noise.append(record)
            continue
        counts, count_record = noisy_counts(
            table.column(internal.contributors(name)).to_pylist(), share / 2, name
        )
        sums, sum_record = noisy_sums(
            table.column(internal.exact_sum(name)), share / 2, bounds, name
        )
        out[name] = (
            sums
            if agg.fn == "sum"
            else pa.array(_means(sums.to_pylist(), counts, bounds), pa.float64())
        )
        out[internal.contributors(name)] = pa.array(counts, pa.int64())
        noise += [count_record, sum_record]
    return pa.table(out), tuple(noise)


def noisy_counts(
    counts: list[int | None], epsilon: Epsilon, column: str
) -> tuple[list[int], Noise]:
    values, scale = _laplace([int(c or 0) for c in counts], 1, epsilon)
    return [max(int(v), 0) for v in values], Noise(column, "count", epsilon, 1, scale)


def noisy_sums(
    sums: pa.ChunkedArray | pa.Array, epsilon: Epsilon, bounds: Bounds, column: str
) -> tuple[pa.Array, Noise]:
    lower, upper = bounds
    integer = pa.types.is_integer(sums.type)
    sensitivity = max(abs(lower), abs(upper))
    # A cell with no values sums to 0: releasing null instead would reveal that.
    values, scale = _laplace(
        [v or 0 for v in sums.to_pylist()],
        int(sensitivity) if integer else float(sensitivity),
        epsilon,
    )
    if lower >= 0:
        values = [max(v, 0) for v in values]
    elif upper <= 0:
        values = [min(v, 0) for v in values]
    return (
        pa.array(values, pa.int64() if integer else pa.float64()),
        Noise(column, "sum", epsilon, sensitivity, scale),
    )


def _means(sums: list[Any], counts: list[int], bounds: Bounds) -> list[float | None]:
    lower, upper = bounds
    return [None if n <= 0 else min(max(s / n, lower), upper) for s, n in zip(sums, counts)]


def _laplace(
    values: list[Any], sensitivity: int | float, epsilon: Epsilon
) -> tuple[list[Any], float]:
    """Laplace noise from OpenDP with scale sensitivity/ε, nudged up until OpenDP's own
    privacy map (which rounds conservatively) confirms the release costs at most ε."""
    if epsilon.value <= 0:
        raise ValueError("a release needs a positive ε")
    integer = isinstance(sensitivity, int)
    atom = odp.atom_domain(T="i64") if integer else odp.atom_domain(T=float, nan=False)
    domain = odp.vector_domain(atom)
    metric = odp.l1_distance(T="i64" if integer else float)
    scale = float(Fraction(sensitivity) / epsilon.value)
    for _ in range(64):
        measurement = odp.m.make_laplace(domain, metric, scale)
        if Fraction(measurement.map(sensitivity)) <= epsilon.value:
            return list(measurement([int(v) if integer else float(v) for v in values])), scale
        scale = math.nextafter(scale, math.inf)
    raise AssertionError("no Laplace scale within ε was found")


# Partition selection: a group's key is shown only when its noisy count clears a threshold
# set so that a group of one person appears with probability at most DELTA per release (the
# Laplace-threshold mechanism; Rogers et al., "A Unifying Privacy Analysis Framework for
# Unknown Domain Algorithms in Differential Privacy", 2023). Keys come from the data, so
# without it the mere presence of a key would say that someone in that group matched.
DELTA = 1e-6


def selection_threshold(scale: float, delta: float = DELTA) -> float:
    """The noisy count a group needs to be shown: P(Laplace(scale) noise lifts a count of 1
    to it) = ½·exp(−(τ − 1)/scale) = delta."""
    return 1.0 + scale * math.log(1.0 / (2.0 * delta))


def select_partitions(table: pa.Table, checked: CheckedPlan, noise: tuple[Noise, ...]) -> pa.Table:
    """The groups of a privatized table whose noisy count clears `selection_threshold`.
    A whole-table aggregate keeps its row: its key is no one's."""
    counted = next((n for n in noise if n.quantity == "count"), None)
    if not checked.plan.keys or counted is None or table.num_rows == 0:
        return table
    tau = selection_threshold(counted.scale)
    counts = table.column(internal.contributors(counted.column)).to_pylist()
    return table.filter(pa.array([c is not None and c >= tau for c in counts], pa.bool_()))
