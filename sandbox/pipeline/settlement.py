"""Settling a job: charge actual usage (never above the quote), release the reservation and
the ε not spent, store outputs, record released sets and observations for detection.

Every state change is logged in the same transaction that makes it."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from contracts.document import ContractDocument
from pricing import Charge, settle
from sandbox.common import clock, logs, metrics
from sandbox.context import Context
from sandbox.errors import Fault, JobError, JobStatus
from sandbox.ledger import log
from sandbox.pipeline.driver import JobResult, JobSpec, Replay, carried_usage, output_digest
from sandbox.records import agreements, budgets, counters, flags, money, registry, releases
from sandbox.records.jobs import Reservation
from sandbox.records.principals import new_id
from sandbox.store import core
from sandbox.store.models import Job, JobOutput, OutputReview

logger = logging.getLogger(__name__)


def all_suppressed(result: JobResult) -> bool:
    """Whether the job succeeded with nothing to show: every cell of every release
    suppressed. The operator sees that in its result already, so its charge may follow it.
    An empty release is not "all suppressed": whether its groups were left out as too small
    or never existed is what the rules hide, and the charge must not tell them apart."""
    releases = result.disclosure.get("releases", [])
    if result.status != JobStatus.SUCCEEDED or not releases:
        return False
    cells = sum(int(r.get("cells", 0)) for r in releases)
    hidden = sum(len(r.get("suppressed", [])) for r in releases)
    return cells > 0 and hidden >= cells


def _chargeable(result: JobResult) -> bool:
    """Operators pay for work that ran, unless the service was at fault. A job that did not
    succeed costs nothing until it read data (a typo found at run time before any collect()
    is a mistake, not a use of the data); one refused or failed part-way pays for the scans it
    made. Whether a job read data before it ended never depends on a value not released."""
    if result.error is not None and result.error.service_fault:
        return False
    read = result.usage.get("rows_scanned", 0) > 0 or bool(result.usage.get("epsilon_by_dataset"))
    return result.status == JobStatus.SUCCEEDED or read


_STATUS = select(Job.status).where(Job.id == bindparam("key"))


def settle_job(
    ctx: Context,
    job_id: str,
    result: JobResult,
    spec: JobSpec | None = None,
    reserved: Job | None = None,
) -> bool:
    """Charge, release the reservation, store the outputs. `spec`, when the job got as far as
    one, already holds the terms and datasets it ran under; `reserved` is the row as
    reserve() wrote it (nothing but its status changes until settlement), so it need not be
    read again.

    A job is settled once: if another process settled it first (it took this one for dead),
    nothing changes and False is returned."""
    with ctx.money_lock, ctx.transaction() as s:
        if core.execute(s, _STATUS, {"key": job_id}).scalar() not in _UNSETTLED:
            logger.info("job %s was settled already; kept as it was", job_id)
            return False
        job = s.merge(reserved, load=False) if reserved is not None else s.get(Job, job_id)
        assert job is not None
        contract = (
            spec.contract
            if spec is not None
            else agreements.version_document(s, job.contract_id, job.contract_version)
        )
        # Whatever the outcome, the job's code saw these cells: they stay in the history.
        releases.record(
            s,
            job.operator_id,
            job.contract_id,
            job.id,
            {d: sets for d, sets in result.released_sets.items() if sets},
        )
        quote = Charge.from_json(job.quote) if job.quote else None
        charge = None
        if quote is not None:
            schedule = money.schedule_by_id(s, job.schedule_id)
            actual = (
                money.actual(
                    schedule,
                    result.usage,
                    contract,
                    _levels(ctx, s, result, spec),
                    _settlement_volume(s, job),
                )
                if _chargeable(result)
                and (ctx.settings.charge_all_suppressed or not all_suppressed(result))
                else Charge.from_lines(())
            )
            charge = settle(quote, actual)
        job.status = result.status
        job.usage = {**(job.usage or {}), **result.usage}
        job.disclosure = result.disclosure
        job.error = result.error.to_json() if result.error is not None else None
        # The service's one clock; never before the job's creation, should it step back.
        job.finished_at = max(clock.stored(clock.now()), job.created_at)
        job.charge = charge.to_json() if charge else None
        job.charge_fen = money.to_fen(charge.amount) if charge else 0
        _add_to_counters(s, job, contract, charge is not None)
        money.settle_contract(s, job.contract_id, job.quote_fen, job.charge_fen)
        budgets.settle(
            s,
            job.contract_id,
            job_id,
            dict(Reservation.of(job).epsilon),
            result.usage,
            service_fault=result.error is not None and result.error.service_fault,
        )
        money.settle_prepaid(s, job.operator_id, job.quote_fen, job.charge_fen)
        for name, body in result.outputs.items():
            s.add(JobOutput(job_id=job_id, name=name, body=body))
        log.append(
            s,
            f"job.{result.status}",
            None,
            job_id,
            {
                "usage": result.usage,
                "error": job.error,
                "outputs": {n: output_digest(b) for n, b in result.outputs.items()},
                "disclosure": result.disclosure,
            },
        )
        if charge is not None:
            log.append(
                s,
                "charge.settled",
                None,
                job_id,
                {
                    "contract_id": job.contract_id,
                    "operator_id": job.operator_id,
                    "charge": charge.to_json(),
                },
            )
        # The regulator's second line: attack patterns, flags, suspension past their score.
        detect(ctx, s, job, result.observations)
        quote_fen, charge_fen, contract_id = job.quote_fen, job.charge_fen, job.contract_id
    _count(result)
    with logs.bound(job_id=job_id, contract_id=contract_id):
        logger.info(
            "job settled",
            extra=logs.fields(
                status=str(result.status),
                code=result.error.code if result.error is not None else None,
                quote_fen=quote_fen,
                charge_fen=charge_fen,
                rows_scanned=result.usage.get("rows_scanned"),
            ),
        )
    return True


def hold_job(ctx: Context, job_id: str, result: JobResult) -> str | None:
    """Put a job whose release a rule held in its reviewers' hands: nothing is settled (the
    money and ε stay reserved), the held release and what resuming needs go into a review,
    and the sets released so far count as released from now on. Returns the review's id, or
    None when the job was settled meanwhile."""
    assert result.review is not None
    with ctx.money_lock, ctx.transaction() as s:
        job = s.get(Job, job_id)
        if job is None or job.status != JobStatus.RUNNING:
            logger.info("job %s was settled already; kept as it was", job_id)
            return None
        # Conservative: the gate audited these as released, so the history keeps them even
        # if the reviewers refuse the release.
        releases.record(
            s,
            job.operator_id,
            job.contract_id,
            job.id,
            {d: sets for d, sets in result.released_sets.items() if sets},
        )
        review = OutputReview(
            id=new_id("rv"),
            job_id=job_id,
            release_index=result.review["index"],
            reasons=list(result.review["reasons"]),
            required=result.review["required"],
            decisions=[],
            status="pending",
            held=result.review["held"],
            state=result.review["state"],
        )
        s.add(review)
        job.status = JobStatus.HELD
        job.runner = None
        log.append(
            s,
            "job.held",
            None,
            job_id,
            {
                "review_id": review.id,
                "release_index": review.release_index,
                "reasons": review.reasons,
                "required": review.required,
            },
        )
        return review.id


def conclude_refused(ctx: Context, review_id: str) -> bool:
    """End the job of a refused review: failed, `output_refused`, charged for what it read
    (as a job refused part-way), no outputs; then clear what was held, which nobody reads
    again. Also run by recovery, should the process have stopped in between."""
    with ctx.reading() as s:
        review = s.get(OutputReview, review_id)
        if review is None or review.status != "refused" or review.state is None:
            return False
        job_id, result = review.job_id, _refused_result(ctx, s, review)
    settle_job(ctx, job_id, result)
    with ctx.transaction() as s:
        review = s.get(OutputReview, review_id)
        assert review is not None
        release = (review.held or {}).get("release", {})
        # Only which dataset it read stays, for the reviewers' queue.
        kept = {k: release[k] for k in ("index", "dataset", "joined") if k in release}
        review.held, review.state = {"release": kept}, None
        log.append(s, "output.cleared", None, review_id, {"job_id": job_id})
    return True


def _refused_result(ctx: Context, session: Session, review: OutputReview) -> JobResult:
    assert review.held is not None and review.state is not None
    replay = Replay.from_json(review.state, review.held)
    levels = {n: registry.get(ctx, session, n).level for n in replay.rows_by_dataset}
    reasons = "; ".join(
        str(d.get("reason")) for d in review.decisions if d.get("decision") == "refuse"
    )
    shown = [dict(r["release"]) for r in replay.releases[:-1]]
    held = replay.releases[-1]["release"]
    return JobResult(
        status=JobStatus.FAILED,
        outputs={},
        usage=carried_usage(replay, levels),
        # The refused release's report stays inside: which cells it hid says something of it.
        disclosure={
            "releases": [
                *shown,
                {"index": held["index"], "dataset": held["dataset"], "refused": "output_refused"},
            ]
        },
        error=JobError(
            "output_refused",
            f"reviewers refused release number {review.release_index + 1} of this job, so "
            f"the job ended without it and without outputs: {reasons}",
        ),
        observations=list(replay.observations),
    )


# Not final yet: what settlement (and recovery) may still act on.
_UNSETTLED = frozenset(status for status in JobStatus if not status.final)


def _count(result: JobResult) -> None:
    metrics.JOBS.labels(str(result.status), result.error.code if result.error else "").inc()
    for release in result.disclosure.get("releases", []):
        for cell in release.get("suppressed", []):
            if isinstance(cell, dict) and "rule" in cell:
                metrics.SUPPRESSED.labels(str(cell["rule"])).inc()


def detect(ctx: Context, session: Session, job: Job, observations: Any) -> None:
    flags.record(
        session,
        job,
        observations,
        suspend_score=ctx.settings.flag_suspend_score,
        window=dt.timedelta(days=ctx.settings.flag_window_days),
    )


def _levels(
    ctx: Context, session: Session, result: JobResult, spec: JobSpec | None
) -> dict[str, str]:
    known = spec.datasets if spec is not None else {}
    return {
        name: known[name].level if name in known else registry.get(ctx, session, name).level
        for name in result.usage.get("rows_by_dataset", {})
    }


def _add_to_counters(session: Session, job: Job, contract: ContractDocument, charged: bool) -> None:
    """The running counters brought to the job's outcome: its month's rows hold what it
    scanned instead of what it reserved, and a charged commercial job adds its rows to the
    operator's volume of the month it finished in."""
    usage = job.usage or {}
    reserved = Reservation.of(job).rows_scanned
    scanned = int(usage.get("rows_scanned", reserved) or 0)
    month = counters.month_of(job.created_at)
    counters.add(session, counters.ROWS_OF_MONTH, job.contract_id, month, scanned - reserved)
    if charged and contract.purpose_class == "commercial":
        counters.add_all(
            session,
            counters.VOLUME_OF_MONTH,
            job.operator_id,
            counters.month_of(job.finished_at or job.created_at),
            {lvl: int(n or 0) for lvl, n in (usage.get("rows_by_level") or {}).items()},
        )


def _settlement_volume(session: Session, job: Job) -> dict[str, int]:
    """The volume tier position to settle at: this month's volume now (never lower than at
    the quote, so never dearer), or the quote's if the month has turned since."""
    reserved = Reservation.of(job)
    if reserved.month == money.period_of(clock.now()):
        return money.volume_this_month(session, job.operator_id, clock.now())
    return dict(reserved.month_to_date)


def recover_interrupted(ctx: Context) -> int:
    """Jobs left queued or running by a process that is gone fail, uncharged, with their
    reservation released. Jobs of processes still serving (this one, other API workers) are
    theirs to finish. A held job belongs to no process: it waits for its reviewers."""
    with ctx.reading() as s:
        left = list(
            s.execute(
                select(Job.id, Job.runner).where(
                    Job.status.in_((JobStatus.QUEUED, JobStatus.RUNNING))
                )
            )
        )
    with ctx.reading() as s:
        refused = list(
            s.scalars(
                select(OutputReview.id)
                .join(Job, Job.id == OutputReview.job_id)
                .where(OutputReview.status == "refused", Job.status == JobStatus.HELD)
            )
        )
    for review_id in refused:
        conclude_refused(ctx, review_id)
    own = ctx.lease.id if ctx.lease is not None else None
    verdicts: dict[str | None, bool] = {}
    recovered = 0
    for job_id, runner in left:
        if runner == own:
            continue
        if runner not in verdicts:
            verdicts[runner] = runner is not None and ctx.runner_alive(runner)
        if verdicts[runner]:
            continue
        with logs.bound(job_id=job_id):
            if settle_job(ctx, job_id, _INTERRUPTED):
                recovered += 1
    if recovered:
        logger.warning(
            "jobs left unfinished by a stopped process failed", extra=logs.fields(jobs=recovered)
        )
    return recovered


def keep_recovering(ctx: Context, stop: threading.Event) -> None:
    """Recover, every `recovery_interval_seconds` until `stop`, the jobs of processes that
    died while this one serves: an API worker killed and restarted by its supervisor leaves
    its jobs to the others."""
    while not stop.wait(ctx.settings.recovery_interval_seconds):
        try:
            recover_interrupted(ctx)
        except Exception:  # noqa: BLE001 - the next round tries again
            logger.exception("recovering interrupted jobs failed")


_INTERRUPTED = JobResult(
    JobStatus.FAILED,
    {},
    {},
    {"releases": []},
    JobError(
        "interrupted",
        "the service stopped while this job was waiting or running; "
        "nothing was charged. Submit it again",
        fault=Fault.SERVICE,
    ),
)
