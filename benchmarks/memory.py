"""Peak memory of a q3 job across every process of the instance, under Ray's memory settings.

    python -m benchmarks.memory [--residents 4000000] [--partition-rows 1000000]
                                [--configs default,store512,cpus1]

Each configuration runs in a fresh process of its own (Ray starts once per process): a
throw-away instance (`benchmarks.instance`) with a private local Ray started by
`ensure_ray` under that configuration's `SANDBOX_RAY_OBJECT_STORE_MB` and
`SANDBOX_RAY_NUM_CPUS`, then q3 submitted over HTTP `--jobs` times. A thread samples the
process tree every `--interval` seconds: this process (the API and the job's submitter), and
all its descendants — Ray's GCS, raylet (which holds the object store), agents, the workers
running the job's driver, the partition tasks and the scan cache, and the job's jail. Memory
is PSS (proportional set size: a page shared by k processes counts 1/k in each), so the
object store's shared memory, mapped by the raylet and every worker that reads from it, is
counted once in the total. RSS, which counts it once per process mapping it, is reported too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from benchmarks.instance import Options, running_instance
from benchmarks.jobs import JobClient
from benchmarks.queries import QUERIES

MB = 1 << 20
QUERY = "q3"
# name → the settings it runs under (environment variables); the rest keep their defaults.
CONFIGS: dict[str, dict[str, str]] = {
    "default": {},
    "store512": {"SANDBOX_RAY_OBJECT_STORE_MB": "512"},
    "store256": {"SANDBOX_RAY_OBJECT_STORE_MB": "256"},
    "cpus1": {"SANDBOX_RAY_NUM_CPUS": "1"},
    "store256-cpus1": {"SANDBOX_RAY_OBJECT_STORE_MB": "256", "SANDBOX_RAY_NUM_CPUS": "1"},
    "tables64": {"SANDBOX_ENGINE_WORKER_TABLES_MB": "64"},
    "tables0": {"SANDBOX_ENGINE_WORKER_TABLES_MB": "0"},
    "tables0-cpus1": {"SANDBOX_ENGINE_WORKER_TABLES_MB": "0", "SANDBOX_RAY_NUM_CPUS": "1"},
}
SETTINGS = sorted({name for config in CONFIGS.values() for name in config})
KINDS = (
    "benchmark + API process",
    "Ray GCS",
    "raylet + object store",
    "Ray workers",
    "other Ray processes",
    "jails and other",
)


def kind_of(proc: psutil.Process, me: int) -> str:
    if proc.pid == me:
        return KINDS[0]
    try:
        name = proc.name()
        cmd = " ".join(proc.cmdline()[:3])
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return KINDS[5]
    if "gcs_server" in name:
        return KINDS[1]
    if "raylet" in name:
        return KINDS[2]
    # Ray workers rename themselves "ray::<task or actor>" (ray::IDLE between tasks).
    if cmd.startswith("ray::"):
        return KINDS[3]
    if "ray" in cmd:
        return KINDS[4]
    return KINDS[5]


def _title(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())[:100] or proc.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return "?"


@dataclass
class Sampler:
    """Samples the PSS and RSS of this process and all its descendants until stopped."""

    interval: float
    samples: int = 0
    peak_pss: float = 0.0
    peak_rss: float = 0.0
    at_peak: dict[str, float] = field(default_factory=dict)
    kind_peaks: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    processes_at_peak: int = 0
    top_at_peak: list[tuple[str, str, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _procs: dict[int, tuple[psutil.Process, str]] = field(default_factory=dict)

    def sample(self) -> None:
        me = psutil.Process()
        tree = [me, *me.children(recursive=True)]
        by_kind: dict[str, float] = defaultdict(float)
        rss = 0.0
        each: list[tuple[str, str, float]] = []
        for proc in tree:
            known = self._procs.get(proc.pid)
            if known is None or known[0] != proc:  # a new process (or a reused pid)
                known = (proc, "")
            # Asked every time: a Ray worker names itself only once it has started.
            known = self._procs[proc.pid] = (known[0], kind_of(known[0], me.pid))
            try:
                info = known[0].memory_full_info()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            by_kind[known[1]] += info.pss / MB
            each.append((known[1], _title(known[0]), info.pss / MB))
            rss += info.rss / MB
        total = sum(by_kind.values())
        self.samples += 1
        for kind, value in by_kind.items():
            self.kind_peaks[kind] = max(self.kind_peaks[kind], value)
        self.peak_rss = max(self.peak_rss, rss)
        if total > self.peak_pss:
            self.peak_pss, self.at_peak, self.processes_at_peak = total, dict(by_kind), len(tree)
            self.top_at_peak = sorted(each, key=lambda e: -e[2])[:10]

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.sample()
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self._loop, name="memory-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()

    def summary(self, seconds: float) -> dict[str, Any]:
        return {
            "peak_pss_mb": self.peak_pss,
            "peak_rss_sum_mb": self.peak_rss,
            "at_peak_mb": self.at_peak,
            "kind_peaks_mb": dict(self.kind_peaks),
            "processes_at_peak": self.processes_at_peak,
            "top_at_peak": self.top_at_peak,
            "samples": self.samples,
            "seconds": seconds,
        }


def _spilled_mb(ray_dir: str) -> float:
    total = 0
    for root, _, files in os.walk(ray_dir):
        if "spilled" in root:
            total += sum(
                os.path.getsize(os.path.join(root, f))
                for f in files
                if os.path.exists(os.path.join(root, f))
            )
    return total / MB


def child(args: argparse.Namespace) -> dict[str, Any]:
    """One configuration, in this process: what the parent prints for it."""
    import ray

    opts = Options(
        residents=args.residents,
        small_rows=0,
        seed=args.seed,
        executor="ray",
        partition_rows=args.partition_rows,
        ingest="direct",
        datasets=frozenset(QUERIES[QUERY].datasets),
        cache_dir=args.cache,
    )
    out: dict[str, Any] = {"jobs": []}
    with running_instance(opts) as inst:
        out["object_store_mb"] = ray.cluster_resources().get("object_store_memory", 0) / MB
        out["cpus"] = ray.cluster_resources().get("CPU", 0)
        idle = Sampler(args.interval)
        for _ in range(5):
            idle.sample()
            time.sleep(args.interval)
        out["idle"] = idle.summary(0)
        with JobClient(inst) as client:
            for _ in range(args.jobs):
                sampler = Sampler(args.interval)
                started = time.monotonic()
                with sampler:
                    outcome = client.submit(QUERIES[QUERY].code)
                job = sampler.summary(time.monotonic() - started)
                job["status"] = outcome.status
                job["message"] = None if outcome.ok else outcome.explain()
                job["result"] = (outcome.output or {}).get("result")
                out["jobs"].append(job)
        out["spilled_mb"] = _spilled_mb(os.environ.get("RAY_TMPDIR", "/tmp"))
    return out


def run_config(name: str, args: argparse.Namespace) -> dict[str, Any]:
    settings = CONFIGS[name]
    ray_dir = tempfile.mkdtemp(prefix="pds-ray-", dir="/tmp")
    unset = {"RAY_ADDRESS", "SANDBOX_RAY_ADDRESS", *SETTINGS}
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env["RAY_TMPDIR"] = ray_dir
    env.update(settings)
    argv = [sys.executable, "-m", "benchmarks.memory", "--child", name]
    argv += ["--residents", str(args.residents), "--partition-rows", str(args.partition_rows)]
    argv += ["--jobs", str(args.jobs), "--interval", str(args.interval), "--seed", str(args.seed)]
    if args.cache:
        argv += ["--cache", str(args.cache)]
    try:
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    finally:
        shutil.rmtree(ray_dir, ignore_errors=True)
    if proc.returncode != 0:
        return {"name": name, "error": proc.stderr[-3000:]}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"name": name, "settings": settings, **out}


def _rows(result: Any) -> Any:
    if not isinstance(result, dict):
        return result
    return sorted(map(repr, result.get("rows", [])))


def report(runs: list[dict[str, Any]]) -> None:
    print()
    print(
        f"q3 peak memory, every process of the instance (PSS, MiB; {os.cpu_count()} cores, "
        "shared machine). Peak over the job; 'job 1' starts with cold Ray workers and an empty "
        "scan cache."
    )
    header = f"{'configuration':<16}{'store MiB':>10}{'CPUs':>6}{'idle':>8}"
    header += "".join(f"{f'job {i + 1}':>8}" for i in range(len(runs[0].get("jobs", []))))
    print(header + f"{'RSS sum':>9}{'spilled':>9}  result")
    reference = None
    for run in runs:
        if "error" in run:
            print(f"{run['name']:<16} failed: {run['error'][-300:]}")
            continue
        jobs = run["jobs"]
        results = [_rows(j["result"]) for j in jobs]
        if reference is None:
            reference = results[0]
        same = all(r == reference for r in results) and all(
            j["status"] == "succeeded" for j in jobs
        )
        print(
            f"{run['name']:<16}{run['object_store_mb']:>10.0f}{run['cpus']:>6.0f}"
            f"{run['idle']['peak_pss_mb']:>8.0f}"
            + "".join(f"{j['peak_pss_mb']:>8.0f}" for j in jobs)
            + f"{max(j['peak_rss_sum_mb'] for j in jobs):>9.0f}{run['spilled_mb']:>9.0f}  "
            + ("equal" if same else "MISMATCH")
        )
    print()
    print("At each configuration's peak (the job with the highest), by kind of process:")
    ok = [r for r in runs if "error" not in r]
    print(f"{'kind':<26}" + "".join(f"{r['name']:>16}" for r in ok))
    for kind in KINDS:
        cells = []
        for r in ok:
            top = max(r["jobs"], key=lambda j: j["peak_pss_mb"])
            cells.append(
                f"{top['at_peak_mb'].get(kind, 0):>9.0f} (≤{top['kind_peaks_mb'].get(kind, 0):.0f})"
            )
        print(f"{kind:<26}" + "".join(f"{c:>16}" for c in cells))
    print("(in brackets: that kind's own peak during the job, which may fall at another moment)")
    intervals = [j["seconds"] / max(j["samples"], 1) * 1000 for r in ok for j in r["jobs"]]
    if intervals:
        print(
            f"sampled every {statistics.median(intervals):.0f} ms (median; the aim was the --interval)"
        )


def parser() -> argparse.ArgumentParser:
    a = argparse.ArgumentParser(
        prog="python -m benchmarks.memory", description=__doc__.split("\n")[0]
    )
    a.add_argument("--residents", type=int, default=4_000_000)
    a.add_argument("--partition-rows", type=int, default=1_000_000)
    a.add_argument("--configs", default="default,store512,cpus1", help=f"of {', '.join(CONFIGS)}")
    a.add_argument("--jobs", type=int, default=2, help="q3 jobs per configuration")
    a.add_argument("--interval", type=float, default=0.05, help="seconds between samples")
    a.add_argument("--seed", type=int, default=2026)
    a.add_argument("--cache", type=Path, default=None, help="keep the city's Parquet files here")
    a.add_argument("--json", type=Path, default=None)
    a.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return a


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        raise SystemExit(
            f"unknown configurations: {', '.join(unknown)}; known: {', '.join(CONFIGS)}"
        )
    runs = []
    for name in names:
        print(f"{name}: {args.residents:,} residents, q3 × {args.jobs} …", flush=True)
        runs.append(run_config(name, args))
    report(runs)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))
        print(f"numbers written to {args.json}")
    return 0 if all("error" not in r for r in runs) else 1


if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        raise SystemExit(main())
