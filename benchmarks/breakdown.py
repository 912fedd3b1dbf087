"""Where a job's time goes: its parts measured one at a time, next to the end-to-end time.

    end to end (HTTP)  = submit (API: auth, checks, quote, reservation, ledger)  + queue
                         + run (the driver task: its code, plan check, engine, disclosure rules)
                         + settle (charging, recording)  + HTTP and the client's own work

The stages are the service's own measurements (`sandbox_job_stage_seconds`, means over the
timed jobs). Beside them, parts measured apart: a bare job process (one that only emits a number)
and the engine alone on the job's checked plan, in-process and as Ray tasks started here.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks.instance import Instance
from benchmarks.queries import Query
from benchmarks.run import QueryResult, median_ms
from sandbox.disclosure.threshold import threshold_for
from sandbox.engine.executor import LocalExecutor
from sandbox.engine.validate import CheckedPlan, check_plan
from sandbox.jail.process import Limits, run_in_jail
from sandbox.language.api import namespace
from sandbox.language.plan import plan_from_json
from sandbox.language.policy import compile_job, restricted_globals
from sandbox.records import registry

BARE_JOB = 'emit("one", 1)\n'

# The stages the service measures itself (sandbox_job_stage_seconds), mean ms per job.
STAGES = (
    ("submit", "checks, quote, reservation (the API)"),
    ("queue", "waiting for a job slot"),
    ("run", "the job's driver task: its code (read, or run in a job process), engine, rules"),
    ("engine", "  … of which computing the plan (partition tasks, merge)"),
    ("disclosure", "  … of which the disclosure rules and the release audit"),
    ("settle", "charging and recording the job"),
)


@dataclass(frozen=True)
class Part:
    label: str
    median_ms: float | None
    how: str


class _Recorder:
    """A channel that keeps the plans a job's code sends and answers with an empty table."""

    def __init__(self) -> None:
        self.plans: list[Any] = []

    def collect(self, plan: Any) -> dict[str, Any]:
        self.plans.append(plan)
        return {"kind": "table", "columns": [], "rows": [], "suppressed": []}

    def emit(self, name: str, value: Any) -> None:
        return None


def plans_of(code: str) -> list[Any]:
    """The plans a job's code would send, from running it against a recording channel."""
    recorder = _Recorder()
    exec(compile_job(code), restricted_globals(namespace(recorder, {})))  # noqa: S102 - our own
    return recorder.plans


def checked_plan(inst: Instance, query: Query) -> CheckedPlan:
    plan = plans_of(query.code)[0]
    with inst.ctx.reading() as s:
        datasets = {d.name: d for d in registry.all_datasets(inst.ctx, s)}
    # As the job's driver checks it in exact mode: with the disclosure statistics (contributor
    # sets, dominance), which are part of the engine's work.
    checked = check_plan(plan_from_json(plan), datasets)
    window = max(threshold_for(read.dataset.level, {}) for read in checked.reads)
    return dataclasses.replace(checked, disclosure_stats=True, quantile_window=window)


def _median_of(fn: Callable[[], Any], repeat: int) -> float | None:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return median_ms(times)


class _Quiet:
    def collect(self, plan: Any) -> dict[str, Any]:
        raise AssertionError("the bare job collects nothing")

    def emit(self, name: str, value: Any) -> None:
        return None


def _bare_jail_median(repeat: int) -> float | None:
    return _median_of(lambda: run_in_jail(BARE_JOB, {}, _Quiet(), Limits()), repeat)


def bare_jail_ms(repeat: int, executor: str) -> float | None:
    """A bare job's jail, started where jobs' jails start: in a Ray worker, or in this process
    (forking a large process with many threads costs more than forking a small one)."""
    if executor != "ray":
        return _bare_jail_median(repeat)
    import ray

    task = ray.remote(_bare_jail_median).options(num_cpus=1, max_retries=0)
    return ray.get(task.remote(repeat))  # type: ignore[no-any-return]


def ray_noop_ms(repeat: int) -> float | None:
    import ray

    noop = ray.remote(lambda: None).options(num_cpus=1)
    return _median_of(lambda: ray.get(noop.remote()), repeat)


def engine_ms(checked: CheckedPlan, executor: str, repeat: int) -> float | None:
    """The engine alone: ``local`` in this process; ``ray`` with a new executor per run, as the
    job driver makes one per job; ``ray-reused`` with one executor for all runs."""
    if executor == "local":
        local = LocalExecutor()
        return _median_of(lambda: local.aggregate(checked), repeat)
    from sandbox.engine.executor import RayExecutor

    if executor == "ray":
        return _median_of(lambda: RayExecutor(in_place_max_rows=0).aggregate(checked), repeat)
    reused = RayExecutor(in_place_max_rows=0)
    return _median_of(lambda: reused.aggregate(checked), repeat)


def parts(
    inst: Instance,
    result: QueryResult,
    executor: str,
    repeat: int,
    bare_ms: float | None,
    noop_ms: float | None,
) -> list[Part]:
    """The parts of one measured query's job time, median milliseconds each."""
    checked = checked_plan(inst, result.query)
    e2e = median_ms(result.sandbox_s)
    stages = result.stages_ms
    inside = sum(stages.get(k, 0.0) for k in ("submit", "queue", "run", "settle"))
    out = [
        Part("end to end over HTTP", e2e, "client: submit → released result (median)"),
        *(Part(f"  {stage}", stages[stage], how) for stage, how in STAGES if stage in stages),
        Part(
            "  HTTP and client",
            e2e - inside if e2e is not None and stages else None,
            "the rest: the request and response, signing, JSON (median less the means)",
        ),
        Part(
            "bare job process",
            bare_ms,
            "what a job that is not straight-line adds: a process that only emits 1, forked "
            "from the template, filtered, compiled, exited; started "
            + ("in a Ray worker" if executor == "ray" else "by the API process"),
        ),
        Part(
            "engine in-process",
            engine_ms(checked, "local", repeat),
            "the checked plan on the same partitions, one after another in this process",
        ),
    ]
    if executor == "ray":
        out += [
            Part(
                "engine on Ray tasks",
                engine_ms(checked, "ray", repeat),
                "a Ray task per partition, merged here; a new executor per job, as the driver does",
            ),
            Part(
                "  … executor reused",
                engine_ms(checked, "ray-reused", repeat),
                "the same, with the remote function registered once",
            ),
            Part("Ray no-op task", noop_ms, "submit + get of an empty task"),
        ]
    return out
