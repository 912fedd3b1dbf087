"""python -m benchmarks.soak [--clients N] [--minutes M] [--workers W] [--database D]

A bounded soak: N clients submit the small job back to back for M minutes against a real
`sandbox serve` on a fresh instance. Latency is reported per minute as well as overall, so that
a cost that grows with the instance's history (log, job rows, bills) shows as a trend. Any
failed job is an error: the run exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.load import Load, Reference, Sample, duckdb_reference, small_jobs, summary_ms
from benchmarks.report import machine
from benchmarks.served import (
    DEFAULT_PG_ADMIN_URL,
    Deployment,
    sample_file,
    served,
    verify_ledger,
)

DUCKDB_RUNS = 50
MINUTE = 60.0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _minutes(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def parser() -> argparse.ArgumentParser:
    a = argparse.ArgumentParser(
        prog="python -m benchmarks.soak",
        description="Small jobs from N clients for M minutes against a real `sandbox serve`.",
    )
    a.add_argument("--clients", type=_positive, default=4, help="concurrent clients (default 4)")
    a.add_argument("--minutes", type=_minutes, default=2.0, help="duration (default 2)")
    a.add_argument("--workers", type=_positive, default=1, help="API workers (default 1)")
    a.add_argument(
        "--database",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="sqlite (default; one worker only) or postgresql (a database made for the run)",
    )
    a.add_argument("--rows", type=_positive, default=100_000, help="rows of the small job's data")
    a.add_argument("--seed", type=int, default=2027)
    a.add_argument(
        "--ray-cpus", type=_positive, default=None, help="CPUs of the server's Ray (default: all)"
    )
    a.add_argument("--pg-url", default=DEFAULT_PG_ADMIN_URL, help="PostgreSQL server to use")
    a.add_argument("--json", type=Path, default=None, help="also write the numbers to this file")
    return a


def check_args(a: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.workers > 1 and args.database != "postgresql":
        # What `sandbox serve` itself refuses: SQLite takes one writer process.
        a.error("--workers above 1 needs --database postgresql")


def by_minute(samples: tuple[Sample, ...]) -> list[list[Sample]]:
    """Jobs grouped by the minute they were submitted in."""
    minutes: list[list[Sample]] = []
    for s in samples:
        i = int(s.started // MINUTE)
        while len(minutes) <= i:
            minutes.append([])
        minutes[i].append(s)
    return minutes


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f}"


def _row(label: str, samples: list[Sample], seconds: float) -> tuple[str, ...]:
    p50, p99 = summary_ms([s.seconds for s in samples])
    errors = sum(s.error is not None for s in samples)
    shown = f"[bold red]{errors}[/]" if errors else "0"
    rate = len(samples) / seconds if seconds else 0.0
    return (label, str(len(samples)), shown, f"{rate:,.1f}", _ms(p50), _ms(p99))


def print_report(
    console: Console, args: argparse.Namespace, load: Load, ref: Reference, verified: str
) -> None:
    table = Table(
        title=(
            f"soak: {args.clients} clients, {args.minutes:g} min, {args.database} with "
            f"{args.workers} worker{'s' if args.workers > 1 else ''}, {args.rows:,} rows"
        )
    )
    for name in ("minute", "jobs", "errors", "jobs/s", "p50 ms", "p99 ms"):
        table.add_column(name, justify="left" if name == "minute" else "right")
    minutes = by_minute(load.samples)
    for i, samples in enumerate(minutes):
        # The last minute may be cut short by the end of the run.
        span = min(MINUTE, load.wall_s - i * MINUTE)
        table.add_row(*_row(str(i + 1), samples, span))
    table.add_row(*_row("all", list(load.samples), load.wall_s), style="bold")
    console.print(table)
    p50 = load.p50_ms()
    ratio = f"{p50 / ref.median_ms:,.1f}×" if p50 is not None and ref.median_ms else "—"
    console.print(
        f"DuckDB median {ref.median_ms:,.2f} ms ({ref.runs} runs, same partition files); "
        f"p50 / DuckDB {ratio}; release = DuckDB: {'yes' if ref.matches else ref.check}"
    )
    console.print(f"log: {verified}")
    if load.errors:
        console.print(f"[bold red]ERRORS: {len(load.errors)} of {load.count} jobs failed[/]")
        for e in sorted(set(load.errors))[:5]:
            console.print(f"[red]  {e}[/]")
    else:
        console.print(f"[green]no errors in {load.count} jobs[/]")


def _json(args: argparse.Namespace, load: Load, ref: Reference, verified: bool) -> dict[str, Any]:
    minutes = []
    for samples in by_minute(load.samples):
        p50, p99 = summary_ms([s.seconds for s in samples])
        errors = sum(s.error is not None for s in samples)
        minutes.append({"jobs": len(samples), "errors": errors, "p50_ms": p50, "p99_ms": p99})
    return {
        "options": {k: v for k, v in vars(args).items() if k not in ("json", "pg_url")},
        "machine": machine(),
        "jobs": load.count,
        "errors": list(load.errors),
        "wall_s": load.wall_s,
        "jobs_per_second": load.per_second,
        "p50_ms": load.p50_ms(),
        "p99_ms": load.p99_ms(),
        "minutes": minutes,
        "duckdb": asdict(ref),
        "log_verified": verified,
        "samples": [[round(s.started, 3), round(s.seconds * 1000, 3)] for s in load.samples],
    }


def main(argv: list[str] | None = None) -> int:
    a = parser()
    args = a.parse_args(argv)
    check_args(a, args)
    console = Console(width=None if sys.stdout.isatty() else 140)
    facts = machine()
    console.print(f"machine: {facts['cpu']}, {facts['cores']} cores, {facts['memory_gib']} GiB")
    deployment = Deployment(f"{args.database}-{args.workers}", args.database, args.workers)
    with tempfile.TemporaryDirectory(prefix="sandbox-soak-") as tmp:
        sample = sample_file(args.rows, args.seed, Path(tmp))
        console.print("starting a fresh instance …")
        with served(deployment, sample, args.seed, args.ray_cpus, args.pg_url) as target:
            small_jobs(target, args.clients, total=2 * args.clients)  # warm-up, not counted
            console.print(f"soaking for {args.minutes:g} min …")
            load = small_jobs(target, args.clients, seconds=args.minutes * MINUTE)
            ref = duckdb_reference(target, DUCKDB_RUNS)
            ok, checked, problem = verify_ledger(target)
    verified = f"verifies ({checked} entries)" if ok else f"[bold red]FAILED[/]: {problem}"
    print_report(console, args, load, ref, verified)
    if args.json:
        args.json.write_text(json.dumps(_json(args, load, ref, ok), indent=2, ensure_ascii=False))
        console.print(f"numbers written to {args.json}")
    return 1 if load.errors or not ok else 0


if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        raise SystemExit(main())
