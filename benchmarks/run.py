"""Measuring each query on both sides: the sandbox over HTTP, DuckDB in-process.

Each side gets one untimed warm-up run, then the same number of timed runs, the two sides
taking turns. The last sandbox release is compared with DuckDB's answer, cell by cell.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import duckdb

from benchmarks.compare import Check, compare
from benchmarks.duck import DuckResult, DuckSide
from benchmarks.instance import Instance
from benchmarks.jobs import JobClient, JobTarget, Outcome, missing_features
from benchmarks.queries import Query
from sandbox.common.metrics import STAGE


def median_ms(seconds: tuple[float, ...] | list[float]) -> float | None:
    return statistics.median(seconds) * 1000 if seconds else None


def percentile_ms(seconds: list[float] | tuple[float, ...], pct: float) -> float | None:
    """Nearest-rank percentile: the smallest sample with at least pct % at or below it.
    (p50 is reported as the median, like every other middle value here.)"""
    if not seconds:
        return None
    ordered = sorted(seconds)
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1] * 1000


@dataclass(frozen=True)
class QueryResult:
    query: Query
    rows: int
    status: str  # ok | not yet supported | failed
    sandbox_s: tuple[float, ...] = ()
    duckdb_s: tuple[float, ...] = ()
    compute_s: tuple[float, ...] = ()  # the jobs' metered jail wall time
    first_s: float | None = None  # the untimed warm-up submission
    check: Check | None = None
    note: str = ""
    # Mean ms per timed job in each stage the service itself measures (its Prometheus
    # histogram `sandbox_job_stage_seconds`): where the time goes, from the inside.
    stages_ms: dict[str, float] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        s, d = median_ms(self.sandbox_s), median_ms(self.duckdb_s)
        return s / d if s is not None and d else None


@dataclass(frozen=True)
class SmallJobs:
    """Small-job latency and throughput (q5)."""

    result: QueryResult
    sequential_s: tuple[float, ...]
    clients: int
    concurrent_jobs: int
    concurrent_wall_s: float
    concurrent_s: tuple[float, ...]
    failures: tuple[str, ...] = field(default=())

    @property
    def throughput(self) -> float:
        return self.concurrent_jobs / self.concurrent_wall_s if self.concurrent_wall_s else 0.0


def time_duckdb(duck: DuckSide, sql: str, repeat: int) -> tuple[tuple[float, ...], DuckResult]:
    times, result = [], duck.run(sql)
    for _ in range(repeat):
        seconds, result = duck.timed(sql)
        times.append(seconds)
    return tuple(times), result


def alternate(
    duck: DuckSide, client: JobClient, query: Query, repeat: int
) -> tuple[tuple[float, ...], DuckResult, list[Outcome]]:
    """Timed runs of both sides, taking turns, so that a noisy neighbour on the machine
    slows both alike rather than whichever side happened to run at the time."""
    times, outcomes, result = [], [], None
    for _ in range(repeat):
        seconds, result = duck.timed(query.sql)
        times.append(seconds)
        outcomes.append(client.submit(query.code))
    assert result is not None
    return tuple(times), result, outcomes


def _first_failure(outcomes: list[Outcome]) -> Outcome | None:
    return next((o for o in outcomes if not o.ok), None)


def _refused(query: Query, rows: int, outcome: Outcome, duck_s: tuple[float, ...]) -> QueryResult:
    if not outcome.unsupported(query.needs):
        return QueryResult(query, rows, "failed", duckdb_s=duck_s, note=outcome.explain())
    missing = missing_features(query.needs)
    lacks = f"the job language has no {', '.join(missing)} yet; " if missing else ""
    return QueryResult(
        query,
        rows,
        "not yet supported",
        duckdb_s=duck_s,
        first_s=outcome.seconds,
        note=lacks + outcome.explain(),
    )


def measure_query(inst: Instance, duck: DuckSide, query: Query, repeat: int) -> QueryResult:
    rows = sum(inst.row_count(d) for d in query.datasets)
    try:
        duck.run(query.sql)  # warm-up: file metadata and the OS page cache, as for the sandbox
    except duckdb.Error as exc:
        return QueryResult(query, rows, "failed", note=f"DuckDB refused the SQL: {exc}")
    with JobClient(inst) as client:
        first = client.submit(query.code)
        if not first.ok:
            return _refused(query, rows, first, time_duckdb(duck, query.sql, repeat)[0])
        before = stage_seconds()
        duck_s, expected, runs = alternate(duck, client, query, repeat)
        stages = stages_ms(before, stage_seconds(), len(runs))
    if (failed := _first_failure(runs)) is not None:
        return QueryResult(query, rows, "failed", duckdb_s=duck_s, note=failed.explain())
    return QueryResult(
        query,
        rows,
        "ok",
        tuple(o.seconds for o in runs),
        duck_s,
        tuple(o.compute_seconds for o in runs if o.compute_seconds is not None),
        first.seconds,
        compare(runs[-1].output or {}, expected, query.keys, query.rel_tol),
        stages_ms=stages,
    )


def stage_seconds() -> dict[str, float]:
    """Seconds spent so far in each stage of a job, summed over every job this process's
    service ran (the service runs in this process)."""
    out: dict[str, float] = {}
    for metric in STAGE.collect():
        for sample in metric.samples:
            if sample.name.endswith("_sum"):
                out[sample.labels["stage"]] = sample.value
    return out


def stages_ms(before: dict[str, float], after: dict[str, float], jobs: int) -> dict[str, float]:
    return {
        stage: (seconds - before.get(stage, 0.0)) / jobs * 1000
        for stage, seconds in after.items()
        if jobs and stage != "compile"
    }


def _client_loop(
    inst: JobTarget, code: str, jobs: int, start: threading.Barrier, out: list[Outcome]
) -> None:
    with JobClient(inst) as client:
        start.wait()
        for _ in range(jobs):
            out.append(client.submit(code))


def run_concurrently(
    inst: JobTarget, code: str, clients: int, total: int
) -> tuple[float, list[Outcome]]:
    """`total` jobs from `clients` threads, each with its own connection; returns wall seconds."""
    shares = [total // clients + (1 if i < total % clients else 0) for i in range(clients)]
    start = threading.Barrier(clients + 1)
    results: list[list[Outcome]] = [[] for _ in range(clients)]
    threads = [
        threading.Thread(target=_client_loop, args=(inst, code, n, start, results[i]))
        for i, n in enumerate(shares)
    ]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - began, [o for r in results for o in r]


def measure_small_jobs(
    inst: Instance, duck: DuckSide, query: Query, jobs: int, clients: int, warmup: int = 3
) -> SmallJobs:
    rows = inst.row_count(query.datasets[0])
    try:
        duck.run(query.sql)
    except duckdb.Error as exc:
        return SmallJobs(
            QueryResult(query, rows, "failed", note=f"DuckDB refused the SQL: {exc}"),
            (),
            clients,
            0,
            0.0,
            (),
        )
    seat: JobTarget = inst.small or inst
    with JobClient(seat) as client:
        first = [client.submit(query.code) for _ in range(warmup)]
        if (bad := _first_failure(first)) is not None:
            duck_s = time_duckdb(duck, query.sql, jobs)[0]
            return SmallJobs(_refused(query, rows, bad, duck_s), (), clients, 0, 0.0, ())
        before = stage_seconds()
        duck_s, expected, sequential = alternate(duck, client, query, jobs)
        stages = stages_ms(before, stage_seconds(), len(sequential))
    wall, concurrent = run_concurrently(seat, query.code, clients, jobs)
    failures = tuple(o.explain() for o in sequential + concurrent if not o.ok)
    ok = [o for o in sequential if o.ok]
    result = QueryResult(
        query,
        rows,
        "ok" if not failures else "failed",
        tuple(o.seconds for o in ok),
        duck_s,
        tuple(o.compute_seconds for o in ok if o.compute_seconds is not None),
        first[0].seconds,
        compare(ok[-1].output or {}, expected, query.keys, query.rel_tol) if ok else None,
        note=f"{len(failures)} of {2 * jobs} jobs failed: {failures[0]}" if failures else "",
        stages_ms=stages,
    )
    return SmallJobs(
        result,
        tuple(o.seconds for o in ok),
        clients,
        sum(o.ok for o in concurrent),
        wall,
        tuple(o.seconds for o in concurrent if o.ok),
        failures[:5],
    )


def as_json(value: Any) -> Any:
    """Seconds in milliseconds, rounded, for the JSON report."""
    return [round(s * 1000, 3) for s in value]
