"""Concurrent clients, each a thread with its own HTTP connection, doing one kind of request
until a total count is reached or a deadline passes."""

from __future__ import annotations

import itertools
import statistics
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import httpx

from benchmarks.compare import compare
from benchmarks.duck import DuckSide
from benchmarks.instance import auth
from benchmarks.jobs import JobClient
from benchmarks.queries import Q5, SMALL_DATASET
from benchmarks.run import percentile_ms, time_duckdb
from benchmarks.served import HTTP_TIMEOUT, Served


@dataclass(frozen=True)
class Sample:
    started: float  # seconds since the load began
    seconds: float
    error: str | None  # None when the request did what it should


@dataclass(frozen=True)
class Load:
    samples: tuple[Sample, ...]
    wall_s: float

    @property
    def count(self) -> int:
        return len(self.samples)

    @property
    def errors(self) -> tuple[str, ...]:
        return tuple(s.error for s in self.samples if s.error is not None)

    @property
    def per_second(self) -> float:
        return self.count / self.wall_s if self.wall_s else 0.0

    def p50_ms(self) -> float | None:
        return summary_ms([s.seconds for s in self.samples])[0]

    def p99_ms(self) -> float | None:
        return summary_ms([s.seconds for s in self.samples])[1]


def summary_ms(seconds: list[float]) -> tuple[float | None, float | None]:
    """Median and nearest-rank 99th percentile, in ms."""
    if not seconds:
        return None, None
    return statistics.median(seconds) * 1000, percentile_ms(seconds, 99)


# One request of a client: returns None on success, or what went wrong.
Request = Callable[[int], str | None]


def run_load(
    clients: int,
    make_client: Callable[[], AbstractContextManager[Request]],
    total: int | None = None,
    seconds: float | None = None,
) -> Load:
    """`clients` threads share one ticket counter; each stops at `total` tickets or after
    `seconds`, whichever is given. Failures are recorded, never raised, so the load goes on."""
    if (total is None) == (seconds is None):
        raise ValueError("give either a total or a duration")
    tickets = itertools.count()
    lock = threading.Lock()
    samples: list[Sample] = []
    ready = threading.Barrier(clients + 1, timeout=120)
    origin = 0.0

    def worker() -> None:
        with make_client() as request:
            ready.wait()
            while True:
                with lock:
                    ticket = next(tickets)
                now = time.perf_counter()
                if total is not None and ticket >= total:
                    return
                if seconds is not None and now - origin >= seconds:
                    return
                try:
                    error = request(ticket)
                except Exception as exc:  # a benchmark reports a failure and goes on
                    error = f"{type(exc).__name__}: {exc}"
                sample = Sample(now - origin, time.perf_counter() - now, error)
                with lock:
                    samples.append(sample)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    # Connections are opened before the clock starts: only requests are measured.
    origin = time.perf_counter()
    ready.wait()
    for t in threads:
        t.join()
    return Load(tuple(sorted(samples, key=lambda s: s.started)), time.perf_counter() - origin)


class _JobRequests(AbstractContextManager[Request]):
    def __init__(self, target: Served) -> None:
        self._client = JobClient(target)

    def __enter__(self) -> Request:
        def submit(ticket: int) -> str | None:
            outcome = self._client.submit(Q5.code)
            return None if outcome.ok else outcome.explain()

        return submit

    def __exit__(self, *exc: object) -> None:
        self._client.__exit__()


class _PrincipalRequests(AbstractContextManager[Request]):
    """The bureau registering providers: one log entry (`principal.created`) per request."""

    def __init__(self, target: Served, prefix: str) -> None:
        self._http = httpx.Client(
            base_url=target.url, timeout=HTTP_TIMEOUT, headers=auth(target.bureau_token)
        )
        self._prefix = prefix

    def __enter__(self) -> Request:
        def create(ticket: int) -> str | None:
            body = {"name": f"{self._prefix}-{ticket:06d}", "role": "provider"}
            r = self._http.post("/v1/principals", json=body)
            return None if r.status_code == 201 else f"{r.status_code}: {r.text[:160]}"

        return create

    def __exit__(self, *exc: object) -> None:
        self._http.close()


def small_jobs(
    target: Served, clients: int, total: int | None = None, seconds: float | None = None
) -> Load:
    return run_load(clients, lambda: _JobRequests(target), total, seconds)


def principal_appends(target: Served, clients: int, total: int) -> Load:
    return run_load(clients, lambda: _PrincipalRequests(target, "基准数据提供方"), total)


@dataclass(frozen=True)
class Reference:
    """DuckDB on the instance's own partition files, and whether a release matched it."""

    median_ms: float
    runs: int
    check: str  # compare()'s summary of one released table against DuckDB's answer
    matches: bool


def duckdb_reference(target: Served, repeat: int) -> Reference:
    """DuckDB's median for the small job's SQL (after one warm-up), run while the service is
    idle; then one more job, whose release is compared with DuckDB's answer cell by cell."""
    duck = DuckSide({SMALL_DATASET: target.partitions()})
    try:
        times, expected = time_duckdb(duck, Q5.sql, repeat)
    finally:
        duck.close()
    with JobClient(target) as client:
        outcome = client.submit(Q5.code)
    if not outcome.ok:
        return Reference(statistics.median(times) * 1000, repeat, outcome.explain(), False)
    check = compare(outcome.output or {}, expected, Q5.keys, Q5.rel_tol)
    return Reference(statistics.median(times) * 1000, repeat, check.summary(), check.ok)
