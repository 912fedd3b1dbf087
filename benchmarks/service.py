"""python -m benchmarks.service [--clients C] [--jobs J] [--appends A] [--deployments …]

Real `sandbox serve` processes measured from outside, one deployment after another: SQLite
with one API worker, PostgreSQL with one, PostgreSQL with four (all running jobs on Ray).
For each: log appends per second (the bureau registering principals, one entry each) and the
small job's latency and throughput under concurrent clients, with DuckDB's time for the same
query on the same partition files.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.load import Load, Reference, duckdb_reference, principal_appends, small_jobs
from benchmarks.report import machine
from benchmarks.served import (
    DEFAULT_PG_ADMIN_URL,
    DEPLOYMENTS,
    Deployment,
    Served,
    log_size,
    sample_file,
    served,
    verify_ledger,
)

DUCKDB_RUNS = 50


@dataclass(frozen=True)
class Appends:
    load: Load
    log_growth: int
    verified: bool
    entries_checked: int
    problem: str

    @property
    def entries_per_second(self) -> float:
        return self.log_growth / self.load.wall_s if self.load.wall_s else 0.0


@dataclass(frozen=True)
class Measured:
    deployment: Deployment
    startup_s: float
    appends: Appends
    jobs: Load
    duckdb: Reference


def _deployments(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in DEPLOYMENTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown deployment {unknown[0] if unknown else '(none)'}; choose from "
            f"{', '.join(DEPLOYMENTS)}, comma-separated"
        )
    return sorted(set(names), key=list(DEPLOYMENTS).index)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parser() -> argparse.ArgumentParser:
    a = argparse.ArgumentParser(
        prog="python -m benchmarks.service",
        description="Real `sandbox serve` deployments measured from outside over HTTP.",
    )
    a.add_argument("--clients", type=_positive, default=8, help="concurrent clients (default 8)")
    a.add_argument("--jobs", type=_positive, default=200, help="small jobs in total (default 200)")
    a.add_argument(
        "--appends", type=_positive, default=1000, help="principals created (default 1000)"
    )
    a.add_argument(
        "--deployments",
        type=_deployments,
        default=list(DEPLOYMENTS),
        help=f"comma-separated, from {','.join(DEPLOYMENTS)} (default: all)",
    )
    a.add_argument("--rows", type=_positive, default=100_000, help="rows of the small job's data")
    a.add_argument("--seed", type=int, default=2027)
    a.add_argument(
        "--ray-cpus", type=_positive, default=None, help="CPUs of each server's Ray (default: all)"
    )
    a.add_argument(
        "--pg-url",
        default=DEFAULT_PG_ADMIN_URL,
        help="a PostgreSQL server where a database per run is created and dropped",
    )
    a.add_argument("--json", type=Path, default=None, help="also write the numbers to this file")
    return a


def measure(target: Served, deployment: Deployment, args: argparse.Namespace) -> Measured:
    before = log_size(target)
    appends = principal_appends(target, args.clients, args.appends)
    growth = log_size(target) - before
    # Warm-up: every API worker and Ray's job workers start before the clock does.
    small_jobs(target, args.clients, total=2 * args.clients)
    jobs = small_jobs(target, args.clients, total=args.jobs)
    reference = duckdb_reference(target, DUCKDB_RUNS)
    ok, checked, problem = verify_ledger(target)
    return Measured(
        deployment,
        target.startup_s,
        Appends(appends, growth, ok, checked, problem),
        jobs,
        reference,
    )


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f}"


def _ratio(value: float | None, of: float) -> str:
    return "—" if value is None or not of else f"{value / of:,.1f}×"


def _rows(m: Measured) -> list[tuple[str, str]]:
    a, j, d = m.appends, m.jobs, m.duckdb
    return [
        ("start-up (serve → healthy), s", f"{m.startup_s:.1f}"),
        ("appends: requests", f"{a.load.count}"),
        ("appends: errors", _errors(a.load)),
        ("appends: requests/s", f"{a.load.per_second:,.0f}"),
        ("appends: log growth", f"{a.log_growth}"),
        ("appends: log entries/s", f"{a.entries_per_second:,.0f}"),
        ("appends: p50 / p99 ms", f"{_ms(a.load.p50_ms())} / {_ms(a.load.p99_ms())}"),
        ("log verifies (bureau key on disk)", _verified(a)),
        ("small jobs: jobs", f"{j.count}"),
        ("small jobs: errors", _errors(j)),
        ("small jobs: jobs/s", f"{j.per_second:,.1f}"),
        ("small jobs: p50 ms", _ms(j.p50_ms())),
        ("small jobs: p99 ms", _ms(j.p99_ms())),
        (f"DuckDB median ms ({d.runs} runs)", f"{d.median_ms:,.2f}"),
        ("p50 / DuckDB", _ratio(j.p50_ms(), d.median_ms)),
        ("release = DuckDB", "yes" if d.matches else f"[red]NO[/]: {d.check[:80]}"),
    ]


def _errors(load: Load) -> str:
    n = len(load.errors)
    return "0" if not n else f"[bold red]{n}[/]"


def _verified(a: Appends) -> str:
    if a.verified:
        return f"[green]passed[/] ({a.entries_checked} entries)"
    return f"[bold red]FAILED[/]: {a.problem[:80]}"


def print_table(console: Console, results: list[Measured], args: argparse.Namespace) -> None:
    table = Table(
        title=(
            f"{args.clients} clients · {args.appends} appends · {args.jobs} small jobs on "
            f"{args.rows:,} rows · executor ray"
        )
    )
    table.add_column("measure")
    for m in results:
        d = m.deployment
        table.add_column(f"{d.database}, {d.workers} worker{'s' if d.workers > 1 else ''}")
    columns = [_rows(m) for m in results]
    for i, (label, _) in enumerate(columns[0]):
        table.add_row(label, *(c[i][1] for c in columns))
    console.print(table)
    for m in results:
        for what, load in (("append", m.appends.load), ("job", m.jobs)):
            for error in load.errors[:3]:
                console.print(f"[red]{m.deployment.name} {what} error:[/] {error}")


def _json(results: list[Measured], args: argparse.Namespace) -> dict[str, Any]:
    def load(x: Load) -> dict[str, Any]:
        return {
            "count": x.count,
            "errors": list(x.errors),
            "wall_s": x.wall_s,
            "per_second": x.per_second,
            "p50_ms": x.p50_ms(),
            "p99_ms": x.p99_ms(),
            "latencies_ms": [round(s.seconds * 1000, 3) for s in x.samples],
        }

    return {
        "options": {k: v for k, v in vars(args).items() if k not in ("json", "pg_url")},
        "machine": machine(),
        "deployments": [
            {
                **asdict(m.deployment),
                "startup_s": m.startup_s,
                "appends": {
                    **load(m.appends.load),
                    "log_growth": m.appends.log_growth,
                    "entries_per_second": m.appends.entries_per_second,
                    "verified": m.appends.verified,
                    "entries_checked": m.appends.entries_checked,
                },
                "small_jobs": load(m.jobs),
                "duckdb": asdict(m.duckdb),
            }
            for m in results
        ],
    }


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 140)
    facts = machine()
    console.print(f"machine: {facts['cpu']}, {facts['cores']} cores, {facts['memory_gib']} GiB")
    results: list[Measured] = []
    with tempfile.TemporaryDirectory(prefix="sandbox-service-bench-") as tmp:
        sample = sample_file(args.rows, args.seed, Path(tmp))
        for name in args.deployments:
            deployment = DEPLOYMENTS[name]
            console.print(f"{name}: starting a fresh instance …")
            started = time.monotonic()
            with served(deployment, sample, args.seed, args.ray_cpus, args.pg_url) as target:
                console.print(f"{name}: measuring …")
                results.append(measure(target, deployment, args))
            console.print(f"{name}: done in {time.monotonic() - started:.0f} s")
    print_table(console, results, args)
    if args.json:
        args.json.write_text(json.dumps(_json(results, args), indent=2, ensure_ascii=False))
        console.print(f"numbers written to {args.json}")
    failed = any(m.appends.load.errors or m.jobs.errors or not m.appends.verified for m in results)
    return 1 if failed else 0


if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        raise SystemExit(main())
