"""Running a reserved job: its spec, the driver on the executor (a Ray task or in-process),
then settlement. Jobs under differential privacy end on a whole step of time."""

from __future__ import annotations

import contextvars
import dataclasses
import logging
import time
from concurrent.futures import Future
from decimal import Decimal
from typing import Protocol

from sqlalchemy import bindparam, update
from sqlalchemy.orm import Session

from sandbox.common import clock, logs, metrics
from sandbox.context import WORKERS_PER_CPU, Context, ensure_ray
from sandbox.disclosure.dominance import parse_rules
from sandbox.disclosure.review import ReviewRules
from sandbox.engine.executor import LocalExecutor, surfaced
from sandbox.errors import Fault, JobError, JobStatus, ServiceFault
from sandbox.jail import seccomp
from sandbox.jail.process import Limits
from sandbox.ledger import log
from sandbox.pipeline.driver import (
    JobResult,
    JobSpec,
    Replay,
    ready_worker,
    run_job,
    run_job_on_ray,
)
from sandbox.pipeline.settlement import hold_job, settle_job
from sandbox.records import agreements, registry, releases
from sandbox.records.jobs import Reservation, latest_reviews
from sandbox.settings import Settings
from sandbox.store import core
from sandbox.store.models import Job

logger = logging.getLogger(__name__)


def limits(ctx: Context) -> Limits:
    s = ctx.settings
    return Limits(
        cpu_seconds=s.job_cpu_seconds,
        memory_bytes=s.job_memory_mb * 2**20,
        wall_seconds=s.job_wall_seconds,
        fork_template=s.jail_fork_template,
        require_seccomp=s.jail_require_seccomp,
        read_straight_line=s.jail_read_straight_line,
    )


def report_jail_filter(settings: Settings) -> str | None:
    """Say loudly at start when job processes cannot get their system-call filter here."""
    problem = seccomp.probe()
    if problem is None:
        return None
    if settings.jail_require_seccomp:
        logger.error(
            "JOBS WILL BE REFUSED: the job process's system-call filter (seccomp) "
            "cannot be installed on this host (%s); only straight-line jobs, which need no "
            "job process, are answered. Run the service on Linux with "
            "libseccomp, or set SANDBOX_JAIL_REQUIRE_SECCOMP=false to run jobs "
            "without it.",
            problem,
        )
    else:
        logger.error(
            "JOBS RUN WITHOUT A SYSTEM-CALL FILTER: seccomp cannot be installed on "
            "this host (%s) and SANDBOX_JAIL_REQUIRE_SECCOMP=false.",
            problem,
        )
    return problem


def dispatch(ctx: Context, job: Job, *, resumed: bool = False) -> Future[None]:
    """Run a job just reserved, or `resumed` after its held release was released; `job` is
    the row as reserve() wrote it (it holds what the run needs, so the run does not read it
    back)."""
    job_id = job.id
    # A pool's thread does not take the submitter's context: the request's ids go with it.
    future = ctx.jobs.submit(
        contextvars.copy_context().run, run_and_settle, ctx, job, resumed=resumed
    )
    ctx.running[job_id] = future
    future.add_done_callback(lambda _: ctx.running.pop(job_id, None))
    return future


def wait_for(ctx: Context, job_id: str) -> None:
    future = ctx.running.get(job_id)
    if future is not None:
        future.result()


def _spec(ctx: Context, job: Job, resumed: bool) -> JobSpec:
    with ctx.reading() as s:
        contract = agreements.version_document(s, job.contract_id, job.contract_version)
        datasets = registry.get_many(ctx, s, contract.datasets, job.versions)
        # Only a resumed job has runs to replay: a fresh one skips the reviews' query.
        replay = _replay(s, job.id) if resumed else None
    reserved = Reservation.of(job)
    spec = JobSpec(
        job_id=job.id,
        code=job.code,
        params=job.params,
        contract=contract,
        datasets=datasets,
        thresholds=ctx.settings.thresholds,
        limits=limits(ctx),
        max_rows=reserved.rows_scanned,
        max_outputs=reserved.outputs,
        epsilon=dict(reserved.epsilon),
        collect_sites=reserved.collect_sites,
        dominance=parse_rules(ctx.settings.dominance_rules),
        operator_id=job.operator_id,
        gate=releases.gate(ctx),
        in_place_max_rows=ctx.settings.engine_in_place_rows,
        worker_tables_bytes=ctx.settings.engine_worker_tables_mb << 20,
        timing_quantum=ctx.settings.timing_quantum_seconds,
        review=review_rules(ctx.settings, contract.review_outputs),
        replay=replay,
    )
    return spec


def review_rules(settings: Settings, contract_asks: bool) -> ReviewRules:
    return ReviewRules(
        levels=settings.review_level_set,
        max_cells=settings.review_max_cells,
        reviewers=settings.reviewers,
        reviewers_l4=settings.reviewers_l4,
        contract=contract_asks,
    )


def _replay(session: Session, job_id: str) -> Replay | None:
    """A resumed job's earlier runs: its latest review, released (which holds them all)."""
    review = latest_reviews(session, [job_id]).get(job_id)
    if review is None or review.status != "released" or not review.held or not review.state:
        return None
    return Replay.from_json(review.state, review.held)


class Runner(Protocol):
    """Where a job's driver runs: chosen once per instance (`runner`)."""

    def __call__(self, spec: JobSpec) -> JobResult: ...


class LocalRunner:
    """In this process, partitions and all: for tests and a single small machine."""

    def __call__(self, spec: JobSpec) -> JobResult:
        return run_job(spec, LocalExecutor())


class RayRunner:
    """As a Ray task, next to the data; its partition work fans out as Ray tasks."""

    def __init__(self, settings: Settings, limits: Limits) -> None:
        import ray

        ensure_ray(settings)
        # Never retried: a driver run again would run the operator's code again, and release
        # (and show) what it collects a second time. A driver whose worker dies ends the job
        # as the service's fault (`WorkerLost`): not charged, ε returned, submitted anew.
        self._task = ray.remote(run_job_on_ray).options(num_cpus=1, max_retries=0)
        # Workers readied in the background, as many as the cluster keeps (`WORKERS_PER_CPU`
        # per CPU): a cold worker spends seconds on imports, first uses of Arrow and the
        # job-process template, which the first jobs would otherwise wait for, and so would a
        # job arriving while another holds the only ready worker. Each task takes its share
        # of a CPU, so that they run side by side on workers of their own, and no more of them
        # at once however many API processes start together.
        ready = ray.remote(ready_worker).options(num_cpus=1 / WORKERS_PER_CPU, max_retries=0)
        cpus = ray.cluster_resources().get("CPU", 0)  # type: ignore[no-untyped-call]
        workers = WORKERS_PER_CPU * int(cpus)
        self.readying = [ready.remote(limits) for _ in range(workers)]

    def __call__(self, spec: JobSpec) -> JobResult:
        import ray

        with surfaced(ray):
            return ray.get(self._task.remote(spec))


def runner(ctx: Context) -> Runner:
    """The instance's runner, made once (starting or joining Ray when jobs run there)."""
    with ctx.runner_lock:
        if ctx.runner is None:
            ctx.runner = (
                RayRunner(ctx.settings, limits(ctx))
                if ctx.settings.executor == "ray"
                else LocalRunner()
            )
        return ctx.runner  # type: ignore[no-any-return]


def execute(ctx: Context, spec: JobSpec) -> JobResult:
    return runner(ctx)(spec)


_START = (
    update(Job)
    .where(Job.id == bindparam("key"), Job.status == JobStatus.QUEUED)
    .values(status=JobStatus.RUNNING)
)


def mark_running(ctx: Context, job_id: str) -> bool:
    """Start a queued job; False when it is not queued any more (settled meanwhile by a
    process that took this one for dead)."""
    with ctx.transaction() as s:
        if core.execute(s, _START, {"key": job_id}).rowcount != 1:
            return False
        log.append(s, "job.started", None, job_id, {})
        return True


def run_and_settle(ctx: Context, job: Job, *, resumed: bool = False) -> None:
    with logs.bound(job_id=job.id, contract_id=job.contract_id, principal_id=job.operator_id):
        _run_and_settle(ctx, job, resumed)


def _run_and_settle(ctx: Context, job: Job, resumed: bool) -> None:
    job_id = job.id
    spec = None
    started = time.monotonic()
    waited = 0.0
    if job.created_at is not None:
        waited = max(0.0, (clock.stored_now() - job.created_at).total_seconds())
        metrics.STAGE.labels("queue").observe(waited)
    # Whether the result is the driver's own, holding the sets it released: only then does
    # settlement record what the gate let this job hand on.
    delivered = False
    try:
        if not mark_running(ctx, job_id):
            return
        spec = _spec(ctx, job, resumed)
        result = execute(ctx, spec)
        delivered = True
    except ServiceFault as exc:
        result = JobResult(JobStatus.FAILED, {}, {}, {"releases": []}, exc.job_error())
        result = dataclasses.replace(result, incident=exc.incident)
    except Exception:  # noqa: BLE001 - a service fault; the operator pays nothing
        # Types and frames only (`logs`): the error's text may quote a value.
        logger.exception("job failed in the service")
        result = JobResult(
            JobStatus.FAILED,
            {},
            {},
            {"releases": []},
            JobError(
                "service_error",
                "the service failed while running this job; nothing was "
                "charged. Try again, and tell the bureau if it keeps happening",
                fault=Fault.SERVICE,
            ),
        )
    if result.incident:
        # For the bureau: what broke, where (a lost worker, a damaged dataset file).
        logger.error("job failed at the service's fault: %s", result.incident)
    ran = time.monotonic() - started
    metrics.STAGE.labels("run").observe(ran)
    for stage, seconds in result.stage_seconds.items():
        metrics.STAGE.labels(stage).observe(seconds)
    if spec is not None and spec.epsilon:
        _hold_to_quantum(started, ctx.settings.timing_quantum_seconds)
    settling = time.monotonic()
    if result.status == JobStatus.HELD:
        held = hold_job(ctx, job_id, result) is not None
        releases.settled(ctx, job_id, recorded=held and delivered)
        metrics.STAGE.labels("settle").observe(time.monotonic() - settling)
        logger.info("job held for output review")
        return
    recorded = settle_job(ctx, job_id, result, spec, job)
    releases.settled(ctx, job_id, recorded=recorded and delivered)
    settled = time.monotonic() - settling
    metrics.STAGE.labels("settle").observe(settled)
    logger.info(
        "job finished",
        extra=logs.fields(
            status=str(result.status),
            code=result.error.code if result.error is not None else None,
            queue_seconds=round(waited, 3),
            run_seconds=round(ran, 3),
            settle_seconds=round(settled, 3),
        ),
    )


def _hold_to_quantum(started: float, quantum: float) -> None:
    """A job under differential privacy ends at a whole number of quanta from its start:
    how long the engine worked on the data is then visible only in steps that coarse, not
    in the time its status and results take to appear."""
    if quantum <= 0:
        return
    elapsed = time.monotonic() - started
    steps = clock.whole_steps(Decimal(repr(elapsed)), Decimal(repr(quantum)))
    time.sleep(steps * quantum - elapsed)
