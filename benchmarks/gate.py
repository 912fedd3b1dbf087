"""python -m benchmarks.gate: does the release audit cost more after many releases, or after
many people released?

The release gate audits every released row against everything its operator was released
before (sandbox.disclosure.audit). Its cost must follow the release being audited, not the
history: this benchmark builds one operator's history in a gate — a cross-classification of
everyone (as q2 releases), then a number of small earlier releases, each splitting atoms of
its own — and times the audit of a q4-shaped release on top (a cell per district and income
band among earners: its people, and the people contributing to its quantiles), at each size
of history and of population. The gate runs in this process, as the Ray actor's body does.

    python -m benchmarks.gate --people 1000000,10000000 --releases 0,10000,100000
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import numpy as np
from pyroaring import BitMap64
from rich.console import Console
from rich.table import Table

from sandbox.disclosure.gate import Gate, Rows

THRESHOLD = 10
OPERATOR = "op"
# Earlier small releases: blocks of this many consecutive people, each one new atom.
BLOCK = 50
# Rows of the release audited on top (q4's districts × income bands).
CELLS = 120


@dataclass(frozen=True)
class Point:
    people: int
    releases: int
    audit_ms: float
    held_mib: float


def _cells(ids: np.ndarray, keys: np.ndarray, spaces: tuple[str, ...]) -> Rows:
    order = np.argsort(keys, kind="stable")
    bounds = np.flatnonzero(np.diff(keys[order])) + 1
    rows = []
    for part in np.split(ids[order], bounds):
        blob = BitMap64(np.sort(part)).serialize()
        rows.append([(space, blob) for space in spaces])
    return rows


def measure(people: int, releases: int, repeat: int, seed: int) -> Point:
    rng = np.random.default_rng(seed)
    ids = np.arange(people, dtype=np.uint64)
    gate = Gate(lambda _: [])
    # Everyone, cross-classified (96 cells), as a q2 would release them.
    gate.audit(OPERATOR, _cells(ids, rng.integers(0, 96, people), ("people",)), THRESHOLD)
    # Small earlier releases, one atom each, spread over the population.
    starts = (np.arange(releases) * BLOCK) % max(people - BLOCK, 1)
    for start in starts:
        block = BitMap64(ids[start : start + BLOCK]).serialize()
        gate.audit(OPERATOR, [[("people", block)]], THRESHOLD)
    times = []
    for k in range(repeat):
        # A new release each time (a repeated one would pass on its digest alone).
        earners = rng.random(people) < 0.7
        keys = rng.integers(0, CELLS, people)[earners] + 1000 * k
        rows = _cells(ids[earners], keys, ("people", "measure:income"))
        started = time.perf_counter()
        gate.audit(OPERATOR, rows, THRESHOLD)
        times.append(time.perf_counter() - started)
    held = gate.held_bytes(OPERATOR) / 2**20
    return Point(people, releases, statistics.median(times) * 1000, held)


def _sizes(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parser() -> argparse.ArgumentParser:
    a = argparse.ArgumentParser(prog="python -m benchmarks.gate", description=__doc__)
    a.add_argument("--people", type=_sizes, default=[1_000_000, 10_000_000])
    a.add_argument("--releases", type=_sizes, default=[0, 10_000, 100_000])
    a.add_argument("--repeat", type=int, default=3)
    a.add_argument("--seed", type=int, default=7)
    return a


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    points = [
        measure(people, releases, args.repeat, args.seed)
        for people in args.people
        for releases in args.releases
    ]
    table = Table(
        title=f"The release audit of a {CELLS}-row release against one operator's history"
    )
    for column in ("people", "earlier releases", "audit ms (median)", "× the first", "held MiB"):
        table.add_column(column, justify="right")
    first = points[0].audit_ms
    for p in points:
        table.add_row(
            f"{p.people:,}",
            f"{p.releases:,}",
            f"{p.audit_ms:.1f}",
            f"{p.audit_ms / first:.2f}",
            f"{p.held_mib:.0f}",
        )
    Console().print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
