"""python -m benchmarks [--residents N] [--repeat R] [--queries q1,q5] [--executor ray|local]"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

from rich.console import Console

from benchmarks import breakdown, history
from benchmarks.duck import DuckSide
from benchmarks.instance import Instance, Options, running_instance
from benchmarks.queries import QUERIES, SMALL_DATASET
from benchmarks.report import Setup, print_flat_cost, print_report, write_json
from benchmarks.run import QueryResult, SmallJobs, measure_query, measure_small_jobs


def _queries(text: str) -> list[str]:
    names = [q.strip().lower() for q in text.split(",") if q.strip()]
    unknown = [q for q in names if q not in QUERIES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown query {unknown[0] if unknown else '(none)'}; choose from "
            f"{', '.join(QUERIES)}, comma-separated, e.g. q1,q5"
        )
    return sorted(set(names), key=list(QUERIES).index)


def parser() -> argparse.ArgumentParser:
    a = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="The sandbox over real HTTP against DuckDB on the same Parquet files.",
    )
    a.add_argument(
        "--residents",
        type=int,
        default=1_000_000,
        help="rows of the population dataset (default 1000000; targets at 10000000)",
    )
    a.add_argument("--repeat", type=int, default=5, help="timed runs per query and side")
    a.add_argument(
        "--queries",
        type=_queries,
        default=list(QUERIES),
        help=f"comma-separated, from {','.join(QUERIES)} (default: all)",
    )
    a.add_argument("--executor", choices=("ray", "local"), default="ray")
    a.add_argument(
        "--partition-rows",
        type=int,
        default=1_000_000,
        help="rows per Parquet partition at ingest (the service's default)",
    )
    a.add_argument(
        "--ingest",
        choices=("http", "direct"),
        default="http",
        help="register datasets through POST /v1/datasets (default), or in-process "
        "with the registry call that route makes (skips the multipart upload: "
        "about 3x faster for the 10 M-resident file)",
    )
    a.add_argument("--small-rows", type=int, default=100_000, help="rows of q5's dataset")
    a.add_argument(
        "--small-jobs",
        type=int,
        default=200,
        help="q5: sequential jobs, and again the total across concurrent clients",
    )
    a.add_argument("--clients", type=int, default=8, help="q5: concurrent clients")
    a.add_argument("--seed", type=int, default=2026)
    a.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="keep the generated city's Parquet files here between runs",
    )
    a.add_argument(
        "--no-breakdown", action="store_true", help="skip measuring the parts of q1's and q5's jobs"
    )
    a.add_argument(
        "--history",
        type=history.sizes,
        default=None,
        metavar="SIZES",
        help="also measure the small job on an instance seeded with this many earlier jobs "
        "(ten log entries each), e.g. 0,100000: the flat-cost ratios",
    )
    a.add_argument("--json", type=Path, default=None, help="also write the numbers to this file")
    return a


def _options(args: argparse.Namespace) -> Options:
    datasets = {d for q in args.queries for d in QUERIES[q].datasets}
    return Options(
        residents=args.residents,
        small_rows=args.small_rows,
        seed=args.seed,
        executor=args.executor,
        partition_rows=args.partition_rows,
        ingest=args.ingest,
        datasets=frozenset(datasets),
        cache_dir=args.cache,
    )


def _breakdowns(
    inst: Instance,
    args: argparse.Namespace,
    measured: list[QueryResult],
    fixed: tuple[float | None, float | None],
) -> dict[str, list[breakdown.Part]]:
    chosen = [r for r in measured if r.query.name in ("q1", "q5") and r.status == "ok"]
    return {
        r.query.name: breakdown.parts(inst, r, args.executor, args.repeat, *fixed) for r in chosen
    }


def _fixed_costs(args: argparse.Namespace) -> tuple[float | None, float | None]:
    """Bare jail and Ray no-op round trip, measured on the idle service before any query."""
    reps = max(args.repeat, 10)
    return (
        breakdown.bare_jail_ms(reps, args.executor),
        breakdown.ray_noop_ms(reps) if args.executor == "ray" else None,
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # Wide enough for the tables when the output goes to a file or a pipe.
    console = Console(width=None if sys.stdout.isatty() else 140)
    opts = _options(args)
    console.print(
        f"setting up: {args.residents:,} residents, executor {args.executor}, "
        f"queries {', '.join(args.queries)} …"
    )
    started = time.monotonic()
    with running_instance(opts) as inst:
        setup_seconds = time.monotonic() - started
        partitions = {d: inst.partitions(d) for d in sorted(opts.datasets)}
        duck = DuckSide(partitions)
        fixed = (None, None) if args.no_breakdown else _fixed_costs(args)
        results: list[QueryResult] = []
        small: SmallJobs | None = None
        for name in args.queries:
            console.print(f"running {name} …")
            if QUERIES[name].datasets == (SMALL_DATASET,):
                small = measure_small_jobs(inst, duck, QUERIES[name], args.small_jobs, args.clients)
            else:
                results.append(measure_query(inst, duck, QUERIES[name], args.repeat))
        measured = results + ([small.result] if small else [])
        parts = {} if args.no_breakdown else _breakdowns(inst, args, measured, fixed)
        setup = Setup(
            args.residents,
            args.repeat,
            args.executor,
            args.partition_rows,
            args.ingest,
            inst.ingest_seconds,
            {d: len(p) for d, p in partitions.items()},
            duck.threads,
            setup_seconds,
        )
        duck.close()
    print_report(console, setup, results, small, parts)
    extra: dict[str, object] = {}
    if args.history:
        console.print(f"measuring the small job against history: {args.history} earlier jobs …")
        points, duck_ms = history.run(
            args.history, history.LOG_ENTRIES, history.JOBS, args.small_rows, args.executor
        )
        history.report(points, duck_ms, args.small_rows)
        print_flat_cost(console, points)
        extra["history"] = {"points": [p.__dict__ for p in points], "duckdb_ms": duck_ms}
    if args.json:
        write_json(args.json, setup, results, small, parts, extra)
        console.print(f"numbers written to {args.json}")
    return 0


if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        raise SystemExit(main())
