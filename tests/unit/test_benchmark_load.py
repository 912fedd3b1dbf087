"""The service and soak benchmarks' own logic, without a server: options, the load driver and
the per-minute grouping."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from benchmarks import service, soak
from benchmarks.load import Request, Sample, run_load, summary_ms


def test_service_options() -> None:
    args = service.parser().parse_args(["--deployments", "pg-4,sqlite-1", "--clients", "2"])
    assert args.deployments == ["sqlite-1", "pg-4"]  # in the table's order, whatever was typed
    assert (args.clients, args.jobs, args.appends, args.rows) == (2, 200, 1000, 100_000)
    with pytest.raises(SystemExit):
        service.parser().parse_args(["--deployments", "mysql-1"])
    with pytest.raises(SystemExit):
        service.parser().parse_args(["--clients", "0"])


def test_soak_refuses_several_workers_on_sqlite() -> None:
    a = soak.parser()
    args = a.parse_args(["--workers", "4"])
    with pytest.raises(SystemExit):
        soak.check_args(a, args)
    soak.check_args(a, a.parse_args(["--workers", "4", "--database", "postgresql"]))


@contextmanager
def _counting(seen: list[int], lock: threading.Lock) -> Iterator[Request]:
    def request(ticket: int) -> str | None:
        with lock:
            seen.append(ticket)
        if ticket == 3:
            raise RuntimeError("refused")
        return "bad" if ticket == 5 else None

    yield request


def test_run_load_takes_each_ticket_once_and_records_failures() -> None:
    seen: list[int] = []
    lock = threading.Lock()
    load = run_load(3, lambda: _counting(seen, lock), total=20)
    assert sorted(seen) == list(range(20))
    assert load.count == 20
    assert sorted(load.errors) == ["RuntimeError: refused", "bad"]


def test_run_load_needs_a_total_or_a_duration() -> None:
    with pytest.raises(ValueError):
        run_load(1, lambda: _counting([], threading.Lock()))


def test_by_minute_and_percentiles() -> None:
    samples = tuple(Sample(t, 0.01 * (i + 1), None) for i, t in enumerate((1.0, 59.0, 61.0, 150)))
    assert [len(m) for m in soak.by_minute(samples)] == [2, 1, 1]
    p50, p99 = summary_ms([0.001 * i for i in range(1, 101)])
    assert p50 == pytest.approx(50.5) and p99 == pytest.approx(99.0)
