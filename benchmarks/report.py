"""Printing the results as tables, and writing them as JSON."""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.breakdown import Part
from benchmarks.run import QueryResult, SmallJobs, as_json, median_ms, percentile_ms

TARGET_ROWS = 10_000_000
TARGET_RATIO = 1.5
TARGET_P50_MS = 25.0
TARGET_P99_MS = 60.0
TARGET_JOBS_PER_S = 60.0


@dataclass(frozen=True)
class Setup:
    residents: int
    repeat: int
    executor: str
    partition_rows: int
    ingest: str
    ingest_seconds: dict[str, float]
    partitions: dict[str, int]
    duckdb_threads: int
    setup_seconds: float


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    memory = (
        os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
    )
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "memory_gib": round(memory / 2**30, 1),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        **{
            name: _version(name)
            for name in ("pyarrow", "ray", "duckdb", "numpy", "fastapi", "uvicorn", "httpx")
        },
    }


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f}"


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def _note(r: QueryResult) -> str:
    if r.status == "not yet supported":
        return f"not yet supported: {', '.join(r.query.needs)}"
    if r.status == "failed":
        return "[red]FAILED[/] (below)"
    if r.check is None:
        return "not compared"
    if not r.check.ok:
        return "[bold red]MISMATCH[/] (below)"
    first = f"; first run {r.first_s * 1000:,.0f} ms" if r.first_s is not None else ""
    # Utility: of DuckDB's cells, how many the gate released (the rest suppressed, or in
    # groups too small to show).
    return (
        f"= DuckDB in {r.check.cells} cells; {r.check.released_share:.0%} of "
        f"{r.check.total} released{first}"
    )


def _details(console: Console, results: list[QueryResult]) -> None:
    for r in results:
        if r.status == "ok" and r.check is not None and r.check.ok:
            continue
        style = "yellow" if r.status == "not yet supported" else "bold red"
        text = r.check.summary() if r.status == "ok" and r.check else r.note
        console.print(f"[{style}]{r.query.name} {r.status}[/]: {text}")


def print_report(
    console: Console,
    setup: Setup,
    results: list[QueryResult],
    small: SmallJobs | None,
    breakdowns: dict[str, list[Part]],
) -> None:
    facts = machine()
    console.rule("[bold]Machine")
    console.print(", ".join(f"{k} {v}" for k, v in facts.items()))
    console.rule("[bold]Setup")
    console.print(
        f"{setup.residents:,} residents, executor {setup.executor}, {setup.partition_rows:,} rows "
        f"per partition, repeat {setup.repeat}, DuckDB threads {setup.duckdb_threads}; "
        f"ingested via {setup.ingest}: "
        + ", ".join(
            f"{n} {s:.1f} s ({setup.partitions.get(n, 0)} part.)"
            for n, s in setup.ingest_seconds.items()
        )
        + f"; setup {setup.setup_seconds:.0f} s"
    )
    table = Table(
        "query",
        "what",
        "rows",
        "sandbox median ms",
        "DuckDB median ms",
        "ratio",
        "notes",
        title="Sandbox (submission → released result, over HTTP) "
        "vs DuckDB (in-process) on the same Parquet files",
    )
    every = results + ([small.result] if small else [])
    for r in every:
        table.add_row(
            r.query.name,
            r.query.title,
            f"{r.rows:,}",
            _ms(median_ms(r.sandbox_s)),
            _ms(median_ms(r.duckdb_s)),
            _ratio(r.ratio),
            _note(r),
        )
    console.print(table)
    _details(console, every)
    if small is not None:
        print_small_jobs(console, small)
    for name, parts in breakdowns.items():
        part_table = Table("part", "median ms", "what", title=f"Where the time of {name} goes")
        for p in parts:
            part_table.add_row(p.label, _ms(p.median_ms), p.how)
        console.print(part_table)
    print_targets(console, setup, every, small)


def print_small_jobs(console: Console, small: SmallJobs) -> None:
    t = Table("measure", "value", title=f"Small jobs: {small.result.rows:,}-row dataset")
    t.add_row("sequential jobs", str(len(small.sequential_s)))
    t.add_row(
        "p50 / p99 latency",
        f"{_ms(median_ms(small.sequential_s))} / {_ms(percentile_ms(small.sequential_s, 99))} ms",
    )
    t.add_row(
        f"throughput, {small.clients} concurrent clients",
        f"{small.throughput:.1f} jobs/s ({small.concurrent_jobs} jobs in "
        f"{small.concurrent_wall_s:.1f} s)",
    )
    t.add_row(
        "p50 / p99 latency under load",
        f"{_ms(median_ms(small.concurrent_s))} / {_ms(percentile_ms(small.concurrent_s, 99))} ms",
    )
    t.add_row("DuckDB median, in-process", f"{_ms(median_ms(small.result.duckdb_s))} ms")
    if small.failures:
        t.add_row("[red]failures", "; ".join(small.failures))
    console.print(t)


def _verdict(ok: bool) -> str:
    return "[green]met[/]" if ok else "[red]missed[/]"


# After the largest history measured, within this of the fresh instance (p50 and jobs/s).
TARGET_FLAT = 0.10


def print_flat_cost(console: Console, points: Sequence[Any]) -> None:
    """The flat-cost targets: the small job after the largest history against a fresh
    instance measured in the same turns (`points`: benchmarks.history's)."""
    last = points[-1]
    t = Table("target", "measured", "", title="Targets: cost against history")
    p50 = last.p50_ms / last.fresh_p50_ms
    rate = last.jobs_per_second / last.fresh_jobs_per_second
    t.add_row(
        f"p50 after {last.history_jobs:,} jobs / fresh ≤ {1 + TARGET_FLAT:.2f}",
        f"{p50:.2f}",
        _verdict(p50 <= 1 + TARGET_FLAT),
    )
    t.add_row(
        f"jobs/s after {last.history_jobs:,} jobs / fresh ≥ {1 - TARGET_FLAT:.2f}",
        f"{rate:.2f}",
        _verdict(rate >= 1 - TARGET_FLAT),
    )
    console.print(t)


def print_targets(
    console: Console, setup: Setup, results: list[QueryResult], small: SmallJobs | None
) -> None:
    ratios = any(r.query.name != "q5" for r in results)
    scale = (
        ""
        if setup.residents >= TARGET_ROWS or not ratios
        else (
            f" (ratios are targets at {TARGET_ROWS:,} residents; this run has {setup.residents:,})"
        )
    )
    t = Table("target", "measured", "", title="Targets" + scale)
    for r in results:
        if r.query.name == "q5":
            continue
        label = f"{r.query.name} ratio ≤ {TARGET_RATIO}"
        t.add_row(
            label,
            _ratio(r.ratio),
            _verdict(r.ratio <= TARGET_RATIO) if r.ratio is not None else r.status,
        )
    if small is not None and small.sequential_s:
        p50 = median_ms(small.sequential_s) or 0.0
        p99 = percentile_ms(small.sequential_s, 99) or 0.0
        t.add_row(
            f"small-job p50 ≤ {TARGET_P50_MS:.0f} ms",
            f"{p50:.1f} ms",
            _verdict(p50 <= TARGET_P50_MS),
        )
        t.add_row(
            f"small-job p99 ≤ {TARGET_P99_MS:.0f} ms",
            f"{p99:.1f} ms",
            _verdict(p99 <= TARGET_P99_MS),
        )
        t.add_row(
            f"≥ {TARGET_JOBS_PER_S:.0f} jobs/s with {small.clients} clients",
            f"{small.throughput:.1f} jobs/s",
            _verdict(small.throughput >= TARGET_JOBS_PER_S),
        )
    console.print(t)


def _result_json(r: QueryResult) -> dict[str, Any]:
    return {
        "query": r.query.name,
        "title": r.query.title,
        "rows": r.rows,
        "status": r.status,
        "sandbox_median_ms": median_ms(r.sandbox_s),
        "duckdb_median_ms": median_ms(r.duckdb_s),
        "ratio": r.ratio,
        "sandbox_ms": as_json(r.sandbox_s),
        "duckdb_ms": as_json(r.duckdb_s),
        "jail_wall_ms": as_json(r.compute_s),
        "stages_ms": {k: round(v, 3) for k, v in r.stages_ms.items()},
        "first_run_ms": r.first_s * 1000 if r.first_s is not None else None,
        "check": None
        if r.check is None
        else {
            "ok": r.check.ok,
            "cells": r.check.cells,
            "suppressed": r.check.suppressed,
            "left_out": r.check.left_out,
            "released_share": round(r.check.released_share, 4),
            "mismatches": list(r.check.mismatches),
        },
        "note": r.note,
        "needs": list(r.query.needs),
        "code": r.query.code,
        "sql": r.query.sql,
    }


def write_json(
    path: Path,
    setup: Setup,
    results: list[QueryResult],
    small: SmallJobs | None,
    breakdowns: dict[str, list[Part]],
    extra: dict[str, Any] | None = None,
) -> None:
    body: dict[str, Any] = {
        "machine": machine(),
        "setup": setup.__dict__,
        "queries": [_result_json(r) for r in results],
        "small_jobs": None
        if small is None
        else {
            **_result_json(small.result),
            "p50_ms": median_ms(small.sequential_s),
            "p99_ms": percentile_ms(small.sequential_s, 99),
            "clients": small.clients,
            "concurrent_jobs": small.concurrent_jobs,
            "concurrent_wall_s": small.concurrent_wall_s,
            "jobs_per_s": small.throughput,
            "concurrent_p50_ms": median_ms(small.concurrent_s),
            "concurrent_p99_ms": percentile_ms(small.concurrent_s, 99),
            "failures": list(small.failures),
        },
        "breakdown": {name: [p.__dict__ for p in parts] for name, parts in breakdowns.items()},
        **(extra or {}),
    }
    path.write_text(json.dumps(body, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
