"""python -m benchmarks.history: does a small job cost more after many jobs before it?

A bureau's operators run hundreds of thousands of jobs a year. Whatever a submission reads
that grows with the jobs, releases or log entries before it (a month's sums, a history read
whole) makes each job dearer than the last. This benchmark serves two instances set up alike,
seeds history into one of them, and at each size measures the small job (q5) on both in turns
(`ROUNDS` turns of a few jobs each), so that what else the machine does in those minutes
slows both alike; at size 0 both are fresh, which shows the method's own spread. Seeded:

- jobs: settled job records of the same contract and operator, this month, with their quotes,
  charges and usage (as the service writes them), and one detection observation each;
- log entries: appended through the log itself (the Merkle tree's nodes with them).

Seeding writes the records directly (a job through the whole pipeline takes tens of
milliseconds; a hundred thousand would take an hour). It prints, per history size, the small
job's median and 99th percentile, jobs per second (one client, one after another), the ratios
of the median and of the rate to the fresh instance's measured in the same turns, and DuckDB's
median for the same SQL on the same partition files.

    python -m benchmarks.history --sizes 0,20000,100000 --log-entries 10 --jobs 100 --executor ray
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time
import warnings
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import insert, select

from benchmarks.duck import DuckSide
from benchmarks.instance import Instance, Options, running_instance
from benchmarks.jobs import JobClient
from benchmarks.queries import Q5, SMALL_DATASET
from sandbox.common import clock
from sandbox.ledger import log
from sandbox.store.models import Job, JobObservation, Principal

console = Console()
BATCH = 5_000
# Log entries seeded per job, and small jobs measured at each size, unless told otherwise.
LOG_ENTRIES = 10
JOBS = 40


# Turns between the fresh instance and the seeded one at each size.
ROUNDS = 5


@dataclass(frozen=True)
class Point:
    history_jobs: int
    log_entries: int
    p50_ms: float
    p99_ms: float
    jobs_per_second: float
    # The fresh instance, measured in the same turns.
    fresh_p50_ms: float
    fresh_jobs_per_second: float


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _operator_id(inst: Instance) -> str:
    with inst.ctx.reading() as s:
        row = s.scalar(select(Principal.id).where(Principal.role == "operator"))
        assert row is not None
        return str(row)


def _template(inst: Instance) -> dict[str, Any]:
    """A settled job of the instance, as the service wrote it: what seeded jobs copy."""
    with inst.ctx.reading() as s:
        job = s.scalar(select(Job).where(Job.status == "succeeded").limit(1))
        assert job is not None, "measure once before seeding: seeded jobs copy a real one"
        return {
            c: getattr(job, c)
            for c in (
                "contract_id",
                "contract_version",
                "operator_id",
                "code",
                "params",
                "status",
                "schedule_id",
                "quote",
                "quote_fen",
                "charge",
                "charge_fen",
                "usage",
                "disclosure",
                "versions",
            )
        }


def seed_jobs(inst: Instance, start: int, count: int) -> None:
    """`count` more settled jobs of the operator's contract, created this month, each with a
    detection observation."""
    like = _template(inst)
    now = clock.stored_now()
    for first in range(start, start + count, BATCH):
        n = min(BATCH, start + count - first)
        ids = [f"j-h{first + i:010d}" for i in range(n)]
        # Spread over the last days, within this month as the quotas count it.
        at = [now - dt.timedelta(seconds=(i % 86_400)) for i in range(n)]
        with inst.ctx.transaction() as s:
            s.execute(
                insert(Job),
                [
                    {**like, "id": j, "created_at": a, "finished_at": a, "idempotency_key": None}
                    for j, a in zip(ids, at)
                ],
            )
            s.execute(
                insert(JobObservation),
                [
                    {
                        "job_id": j,
                        "operator_id": like["operator_id"],
                        "contract_id": like["contract_id"],
                        "index": 0,
                        "shape": "seeded-history",
                        "literals": [],
                        "literals_key": "0" * 16,
                        "dataset": SMALL_DATASET,
                        "hidden": False,
                        "differenced": False,
                        "created_at": a,
                    }
                    for j, a in zip(ids, at)
                ],
            )


def seed_log(inst: Instance, count: int) -> None:
    """`count` more log entries, appended through the log (its Merkle nodes with them)."""
    done = 0
    while done < count:
        n = min(BATCH, count - done)
        with inst.ctx.transaction() as s:
            for i in range(n):
                log.append(s, "history.seeded", None, None, {"n": done + i})
        done += n


@dataclass
class _Runs:
    """One instance's timed jobs at one size."""

    seconds: list[float]
    wall: float = 0.0

    def time(self, client: JobClient, jobs: int) -> None:
        started = time.perf_counter()
        for _ in range(jobs):
            outcome = client.submit(Q5.code)
            if not outcome.ok:
                raise RuntimeError(f"a small job failed: {outcome.explain()}")
            self.seconds.append(outcome.seconds)
        self.wall += time.perf_counter() - started

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.seconds) * 1000

    @property
    def rate(self) -> float:
        return len(self.seconds) / self.wall


def measure(seeded: JobClient, fresh: JobClient, jobs: int, history: int, entries: int) -> Point:
    """`jobs` small jobs on each instance, in `ROUNDS` turns: fresh, seeded, fresh, …"""
    on_seeded, on_fresh = _Runs([]), _Runs([])
    per_turn = max(1, jobs // ROUNDS)
    for _ in range(ROUNDS):
        on_fresh.time(fresh, per_turn)
        on_seeded.time(seeded, per_turn)
    return Point(
        history,
        entries,
        on_seeded.p50_ms,
        _percentile(on_seeded.seconds, 0.99) * 1000,
        on_seeded.rate,
        on_fresh.p50_ms,
        on_fresh.rate,
    )


def sizes(text: str) -> list[int]:
    sizes = sorted({int(x) for x in text.split(",") if x.strip()})
    if not sizes or sizes[0] < 0:
        raise argparse.ArgumentTypeError("sizes are job counts, e.g. 0,20000,100000")
    return sizes


def parser() -> argparse.ArgumentParser:
    a = argparse.ArgumentParser(prog="python -m benchmarks.history", description=__doc__)
    a.add_argument("--sizes", type=sizes, default=[0, 20_000, 100_000])
    a.add_argument(
        "--log-entries", type=int, default=LOG_ENTRIES, help="log entries seeded per job"
    )
    a.add_argument("--jobs", type=int, default=JOBS, help="small jobs measured at each size")
    a.add_argument("--rows", type=int, default=100_000, help="rows of the small dataset")
    a.add_argument("--executor", choices=("local", "ray"), default="local")
    return a


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    points, duck_ms = run(args.sizes, args.log_entries, args.jobs, args.rows, args.executor)
    report(points, duck_ms, args.rows)


def run(
    sizes: list[int], log_entries: int, jobs: int, rows: int, executor: str
) -> tuple[list[Point], float]:
    """The small job measured at each history size (ascending, from a fresh instance), and
    DuckDB's median on the same files."""
    opts = Options(
        residents=rows,
        small_rows=rows,
        seed=7,
        executor=executor,
        partition_rows=50_000,
        ingest="direct",
        datasets=frozenset({SMALL_DATASET}),
    )
    points: list[Point] = []
    with (
        running_instance(opts) as inst,
        running_instance(opts) as twin,
        JobClient(inst) as seeded_client,
        JobClient(twin) as fresh_client,
    ):
        duck = DuckSide({SMALL_DATASET: inst.partitions(SMALL_DATASET)})
        duck_ms = statistics.median(duck.timed(Q5.sql)[0] for _ in range(max(jobs, 5))) * 1000
        for client in (seeded_client, fresh_client):
            for _ in range(3):
                client.submit(Q5.code)  # warm: caches, connections, the jail's fork server
        seeded = entries = 0
        for size in sizes:
            if size > seeded:
                started = time.perf_counter()
                seed_jobs(inst, seeded, size - seeded)
                seed_log(inst, (size - seeded) * log_entries)
                entries += (size - seeded) * log_entries
                seeded = size
                console.print(
                    f"seeded {seeded:,} jobs and {entries:,} log entries "
                    f"({time.perf_counter() - started:.0f} s)"
                )
            points.append(measure(seeded_client, fresh_client, jobs, seeded, entries))
            console.print(
                f"measured at {seeded:,} jobs: p50 {points[-1].p50_ms:.1f} ms, "
                f"fresh in the same turns {points[-1].fresh_p50_ms:.1f} ms"
            )
        duck.close()
    return points, duck_ms


def report(points: list[Point], duck_ms: float, rows: int) -> None:
    table = Table(title=f"small job (q5, {rows:,} rows) against the history before it")
    for column in (
        "jobs before",
        "log entries",
        "p50 ms",
        "p99 ms",
        "jobs/s",
        "fresh p50 ms",
        "p50 / fresh",
        "jobs/s / fresh",
        "p50 / DuckDB",
    ):
        table.add_column(column, justify="right")
    for p in points:
        table.add_row(
            f"{p.history_jobs:,}",
            f"{p.log_entries:,}",
            f"{p.p50_ms:.1f}",
            f"{p.p99_ms:.1f}",
            f"{p.jobs_per_second:.1f}",
            f"{p.fresh_p50_ms:.1f}",
            f"{p.p50_ms / p.fresh_p50_ms:.2f}",
            f"{p.jobs_per_second / p.fresh_jobs_per_second:.2f}",
            f"{p.p50_ms / duck_ms:.0f}×",
        )
    console.print(table)
    console.print(
        f"DuckDB median on the same files: {duck_ms:.1f} ms. Fresh: a second instance set up "
        "alike, measured in the same turns."
    )


if __name__ == "__main__":
    main()
