"""Submitting a job, one function per step:

    submit ─ idempotency ─ contract usable ─ signature ─ compile ─ early scope check
           ─ quote and reserve (atomically against the spend cap) ─ dispatch (execution)

A refusal before anything is reserved is recorded as a rejected job, with what detection
reads in its code. Every state change is logged in the same transaction that makes it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.document import ContractDocument, Use
from contracts.errors import ContractError, ContractScopeError
from contracts.lifecycle import Status, check_usable
from contracts.quota import check_quotas
from contracts.scope import check_scope
from operators.errors import OperatorError, SubmissionInvalid
from operators.keys import parse_public_key, suite_of, verify
from operators.roles import Role
from operators.submission import parse_signed_at, submission_bytes
from pricing import Charge
from sandbox.catalog.models import DatasetInfo
from sandbox.common import clock, logs, metrics
from sandbox.context import Context
from sandbox.engine.validate import check_group_key
from sandbox.errors import (
    CompileError,
    Conflict,
    DisclosureRefused,
    JobError,
    JobStatus,
    PlanError,
    SandboxError,
)
from sandbox.language import check
from sandbox.language.analysis import CodeFacts, analyse
from sandbox.language.policy import check_source, compile_checked
from sandbox.ledger import log
from sandbox.pipeline import execution
from sandbox.pipeline.driver import code_observation
from sandbox.pipeline.settlement import detect
from sandbox.records import agreements, budgets, counters, money, principals, registry
from sandbox.records.jobs import Reservation, get
from sandbox.records.principals import Actor, new_id, require
from sandbox.store.models import Contract, ContractVersion, Job, TemplateVersion

logger = logging.getLogger(__name__)

SIGNATURE_MAX_AGE_SECONDS = 600


class JobRequest(BaseModel):
    """Body of `POST /v1/jobs` and `POST /v1/quotes`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    contract_id: str = Field(min_length=1, max_length=64)
    code: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = Field(None, min_length=1, max_length=200)
    signature: str | None = None
    # ε per differentially private dataset, as decimal strings; else the contract's
    # per_job_epsilon. Not part of the signed bytes.
    epsilon: dict[str, str] | None = None
    signed_at: str | None = Field(
        None,
        max_length=40,
        description=("When the submission was signed (ISO 8601); part of the signed bytes"),
    )

    @field_validator("params")
    @classmethod
    def _params(cls, v: dict[str, Any]) -> dict[str, Any]:
        check_params(v)
        return v


# Parameters are recorded in the log as canonical JSON (RFC 8785), which holds integers only
# up to 2**53 - 1 exactly, and they reach the job's code: bounded like the code itself.
MAX_PARAMS_BYTES = 64 * 1024
MAX_PARAMS_DEPTH = 32
MAX_EXACT_INT = 2**53 - 1


def check_params(params: Any) -> None:
    """Refuse parameters the log cannot hold exactly or that are too large to be a job's
    settings, with what to change."""
    stack: list[tuple[Any, int]] = [(params, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_PARAMS_DEPTH:
            raise ValueError(f"params nest more than {MAX_PARAMS_DEPTH} levels deep; flatten them")
        if isinstance(value, dict):
            stack += [(x, depth + 1) for x in value.values()]
        elif isinstance(value, list):
            stack += [(x, depth + 1) for x in value]
        elif isinstance(value, bool) or value is None or isinstance(value, str):
            continue
        elif isinstance(value, int) and abs(value) > MAX_EXACT_INT:
            raise ValueError(
                f"params hold an integer beyond ±{MAX_EXACT_INT} (2^53 − 1), "
                "which the log's canonical JSON cannot hold exactly; pass it as "
                "a string or a float"
            )
        elif isinstance(value, float) and not math.isfinite(value):
            raise ValueError("params hold a number that is not finite")
    size = len(json.dumps(params, ensure_ascii=False).encode("utf-8"))
    if size > MAX_PARAMS_BYTES:
        raise ValueError(
            f"params are {size} bytes of JSON, more than {MAX_PARAMS_BYTES}; "
            "pass fewer or smaller values"
        )


class RejectedJob(SandboxError):
    """A submission refused before it ran; the job is recorded as rejected."""

    def __init__(self, cause: Exception, job_id: str) -> None:
        super().__init__(getattr(cause, "message", None) or str(cause))
        self.cause, self.job_id = cause, job_id
        self.code = getattr(cause, "code", "rejected")


@dataclass(frozen=True)
class Origin:
    """Where a job comes from when it is not written by hand: a run of an approved template
    (by id and version), possibly as a call of a data product by one customer's key, with
    the operator's price for that call in fen. Recorded on the job and in the log."""

    template_id: str
    template_version: int
    product_id: str | None = None
    product_key_id: str | None = None
    price_fen: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "template_id": self.template_id,
            "template_version": self.template_version,
            **({"product_id": self.product_id} if self.product_id else {}),
            **({"product_key_id": self.product_key_id} if self.product_key_id else {}),
            **({"price_fen": self.price_fen} if self.price_fen is not None else {}),
        }


def check_origin(
    session: Session, contract: ContractDocument, code: str, origin: Origin | None
) -> None:
    """A contract that runs approved templates only refuses any other code; a template run
    must be of a version its departments approved, with exactly the code they approved."""
    if origin is None:
        if contract.templates_only:
            raise ContractScopeError(
                f"contract {contract.id} runs approved templates only; submit the analysis "
                "as a template for the departments' review (POST /v1/templates), then run "
                "it once approved (POST /v1/templates/{id}/runs)"
            )
        return
    version = session.get(TemplateVersion, (origin.template_id, origin.template_version))
    if version is None or version.status != "approved":
        raise ContractScopeError(
            f"template {origin.template_id} version {origin.template_version} is not "
            "approved by every department whose data it reads; it cannot run until it is"
        )
    if version.code_sha256 != _sha(code):
        raise ContractScopeError(
            f"the code differs from what was approved as template {origin.template_id} "
            f"version {origin.template_version}; submit the new code as a new version"
        )


@dataclass(frozen=True)
class Prepared:
    contract: ContractDocument
    datasets: dict[str, DatasetInfo]
    facts: CodeFacts
    schedule_id: int
    quote: Charge
    bound: money.Bound
    month_to_date: dict[str, int]  # the operator's volume this month, fixing its price tier
    contract_version: int
    signing_key_id: str | None


# --- submit ------------------------------------------------------------------------------


def load_usable_contract(session: Session, actor: Actor, contract_id: str) -> ContractDocument:
    """The version in force of a contract jobs may run under now, for a licensed operator.

    A contract found past its term is moved to 'expired' and that is committed at once: the
    refusal that follows would otherwise roll the expiry back with the caller's transaction.
    """
    at = clock.now()
    principals.check_license(session, actor.id, at)
    row = agreements.load(session, actor, contract_id)
    if agreements.expire_current_if_due(session, row):
        session.commit()
    doc = agreements.document(row)
    check_usable(doc, Status(row.status), at)
    return doc


def verify_signature(session: Session, actor: Actor, req: JobRequest) -> str | None:
    """A signature, when sent, must verify against the operator's key in force now; returns
    that key's id, so the record shows which key signed. An unsigned submission is accepted
    (and recorded with no signature)."""
    if req.signature is None:
        return None
    key = principals.current_key(session, actor.id)
    if key is None:
        raise OperatorError(
            "the submission is signed but you have no registered public key; "
            "ask the bureau to register it, or submit without a signature"
        )
    if req.signed_at is None:
        raise SubmissionInvalid(
            "a signed submission needs signed_at, the time it was signed "
            "(ISO 8601), which is part of the signed bytes"
        )
    lag = abs((clock.now() - parse_signed_at(req.signed_at)).total_seconds())
    if lag > SIGNATURE_MAX_AGE_SECONDS:
        raise SubmissionInvalid(
            f"the submission was signed at {req.signed_at}, more than "
            f"{SIGNATURE_MAX_AGE_SECONDS // 60} minutes from the service's clock; sign it again "
            "now (a signature is only accepted close to when it was made, so it cannot be "
            "replayed)"
        )
    # The code's digest is the registered key's suite's, as the signer's client computes it.
    suite = suite_of(parse_public_key(key.public_key))
    data = submission_bytes(
        req.contract_id, req.code, req.params, req.idempotency_key, req.signed_at, suite
    )
    verify(
        key.public_key,
        data,
        req.signature,
        subject=f"the job submission's canonical bytes (key {key.id})",
    )
    return key.id


@functools.lru_cache(maxsize=512)
def compile_code(code: str) -> CodeFacts:
    """What the code uses, once it compiles. Kept per source text: the same job is often
    submitted again and again (a dashboard's refresh), and compiling is pure. A refusal is
    not kept; it is raised anew each time."""
    tree = check_source(code)
    facts = analyse(tree)
    compile_checked(code)
    for problem in check.problems(tree):
        # Certain to fail when it runs: refused now, before anything is reserved or read.
        if problem.severity == "error":
            raise CompileError(problem.message, problem.line, sign=problem.sign)
    return facts


def check_names(
    contract: ContractDocument, facts: CodeFacts, datasets: Mapping[str, DatasetInfo]
) -> None:
    """Refuse before running a job whose literal dataset names, column names or column uses
    fall outside the contract. Run-time plans are checked again in full by the driver."""
    check_scope(contract, {name: {} for name in facts.datasets or ()})
    used = facts.datasets if facts.datasets is not None else frozenset(contract.datasets)
    for column in sorted(facts.columns - facts.defined):
        holders = [d for d in sorted(used) if d in datasets and datasets[d].column(column)]
        wanted = facts.uses.get(column, frozenset())
        if not holders:
            _check_not_removed(contract, used, datasets, column)
        if holders and not any(_grants(contract, d, column, wanted) for d in holders):
            check_scope(contract, {holders[0]: {column: cast(frozenset[Use], wanted)}})
        if "group_by" in wanted:
            for d in holders:
                check_group_key(datasets[d], column)


def _check_not_removed(
    contract: ContractDocument,
    used: Collection[str],
    datasets: Mapping[str, DatasetInfo],
    column: str,
) -> None:
    """A column the contract grants that the dataset's current version no longer has: say
    so, rather than that it does not exist."""
    for name in sorted(used):
        info = datasets.get(name)
        if info is not None and column in contract.datasets.get(name, {}) and info.version > 1:
            raise PlanError(
                f"column {column!r} was removed from dataset {name!r} (it is not in version "
                f"{info.version}, the version in force), though contract {contract.id} grants "
                "it; change the job to do without it, or ask the department about the column"
            )


def _grants(contract: ContractDocument, dataset: str, column: str, uses: frozenset[str]) -> bool:
    granted = contract.datasets.get(dataset, {}).get(column)
    return granted is not None and uses <= set(granted)


def prepare(
    ctx: Context, session: Session, actor: Actor, req: JobRequest, origin: Origin | None = None
) -> Prepared:
    contract = load_usable_contract(session, actor, req.contract_id)
    check_origin(session, contract, req.code, origin)
    signing_key_id = verify_signature(session, actor, req)
    compiling = time.monotonic()
    facts = compile_code(req.code)
    metrics.STAGE.labels("compile").observe(time.monotonic() - compiling)
    datasets = registry.get_many(ctx, session, contract.datasets)
    check_names(contract, facts, datasets)
    schedule_id, schedule = money.in_force(session)
    bound = money.upper_bound(facts, contract, datasets, ctx.settings.job_wall_seconds)
    volume = money.volume_this_month(session, actor.id, clock.now())
    return Prepared(
        contract,
        datasets,
        facts,
        schedule_id,
        money.quote(schedule, bound, contract, volume),
        bound,
        volume,
        contract.version,
        signing_key_id,
    )


def quote(
    ctx: Context, actor: Actor, req: JobRequest, origin: Origin | None = None
) -> dict[str, Any]:
    require(actor, Role.operator)
    # A transaction, not a read: finding the contract past its term records its expiry.
    with ctx.transaction() as s:
        p = prepare(ctx, s, actor, req, origin)
    epsilon = budgets.job_epsilon(p.contract, p.facts, req.epsilon)
    return {
        "contract_id": req.contract_id,
        "quote": p.quote.to_json(),
        "bounds": {
            "rows_scanned": p.bound.max_rows,
            "outputs": p.bound.max_outputs,
            "compute_seconds": ctx.settings.job_wall_seconds,
            **_epsilon_bounds(epsilon, p.facts),
        },
    }


def check_job(ctx: Context, actor: Actor, req: JobRequest) -> dict[str, Any]:
    """What is wrong with a job, found without running it, reading data or charging: the
    language's refusals and the source's problems (`language.check`, with their lines), then
    the contract's (in force, granting what the code names), and the quote when all is well.
    Submission refuses exactly the errors found here before it reserves anything."""
    require(actor, Role.operator)
    found: list[dict[str, Any]] = []
    try:
        tree = check_source(req.code)
        compile_checked(req.code)
    except CompileError as e:
        return _checked([_problem(e)])
    found += [p.to_json() for p in check.problems(tree)]
    if any(p["severity"] == "error" for p in found):
        return _checked(found)
    try:
        with ctx.transaction() as s:
            p = prepare(ctx, s, actor, req)
    except (SandboxError, ContractError, OperatorError) as e:
        found.append(_problem(e))
        return _checked(found)
    return _checked(found, p.quote.to_json())


def _problem(e: Exception) -> dict[str, Any]:
    line = getattr(e, "line", None)
    message = getattr(e, "message", None) or str(e)
    if line is not None and message.startswith(f"line {line}: "):
        message = message[len(f"line {line}: ") :]
    return {
        "line": line,
        "severity": "error",
        "message": message,
        "code": getattr(e, "code", "error"),
    }


def _checked(found: list[dict[str, Any]], quote: Any = None) -> dict[str, Any]:
    found = sorted(found, key=lambda p: (p["line"] or 0, p["severity"]))
    return {
        "ok": not any(p["severity"] == "error" for p in found),
        "problems": found,
        "quote": quote,
    }


def _existing(session: Session, actor: Actor, req: JobRequest) -> Job | None:
    if req.idempotency_key is None:
        return None
    job = session.scalar(
        select(Job).where(Job.operator_id == actor.id, Job.idempotency_key == req.idempotency_key)
    )
    requested = Reservation.of(job).requested_epsilon if job else None
    if job is not None and (
        job.code != req.code
        or job.contract_id != req.contract_id
        or job.params != req.params
        or requested != req.epsilon
    ):
        raise Conflict(
            "this idempotency_key was already used for a different submission; "
            "use a new key for new work"
        )
    return job


def _record_rejection(
    ctx: Context, actor: Actor, req: JobRequest, exc: Exception, origin: Origin | None
) -> str:
    error = JobError.of(exc).to_json()
    job_id = new_id("j")
    with ctx.transaction() as s:
        # Without its contract there is nothing to attach a record to; the error alone explains.
        known = s.get(Contract, req.contract_id) is not None
        if known:
            _write_rejection(ctx, s, actor, req, exc, job_id, error, origin)
    # The contract's id only once it names a contract: otherwise it is whatever was sent.
    with logs.bound(job_id=job_id, contract_id=req.contract_id if known else None):
        logger.info("job refused", extra=logs.fields(code=error["code"]))
    return job_id


def _write_rejection(
    ctx: Context,
    s: Session,
    actor: Actor,
    req: JobRequest,
    exc: Exception,
    job_id: str,
    error: dict[str, Any],
    origin: Origin | None,
) -> None:
    # Submitted and refused in one moment: both times from one reading of the clock, so the
    # record never finishes before it was created.
    at = clock.stored(clock.now())
    job = Job(
        id=job_id,
        contract_id=req.contract_id,
        operator_id=actor.id,
        code=req.code,
        params=req.params,
        idempotency_key=None,
        signature=req.signature,
        status=JobStatus.REJECTED,
        error=error,
        created_at=at,
        finished_at=at,
        **_origin_columns(origin),
    )
    s.add(job)
    s.flush()
    log.append(
        s,
        "job.rejected",
        actor.id,
        job_id,
        {
            "contract_id": req.contract_id,
            "code_sha256": _sha(req.code),
            "error": error,
            **({"origin": origin.to_json()} if origin else {}),
        },
    )
    observed = code_observation(req.code, 0, getattr(exc, "sign", None))
    if isinstance(exc, DisclosureRefused):
        # Refused by the disclosure rules before it ran: a sign for the regulator too.
        observed.append({"index": 0, "refused": exc.code, "reason": str(exc)[:300]})
    if observed:
        detect(ctx, s, job, observed)


def _sha(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


def _origin_columns(origin: Origin | None) -> dict[str, Any]:
    if origin is None:
        return {}
    return {
        "template_id": origin.template_id,
        "template_version": origin.template_version,
        "product_id": origin.product_id,
        "product_key_id": origin.product_key_id,
        "price_fen": origin.price_fen,
    }


def reserve(
    ctx: Context, actor: Actor, req: JobRequest, origin: Origin | None = None
) -> tuple[Job, bool]:
    """Quote the job and reserve its quote against the contract's spend cap, atomically.

    What only reads (the contract, the signature, compiling, the quote) is done first, outside
    the write transaction: writers take turns, so the turn is kept short. The write
    transaction checks again what may have changed meanwhile."""
    with ctx.reading() as s:
        existing = _existing(s, actor, req)
        if existing is not None:
            return existing, False
        early = _prepare_reading(ctx, s, actor, req, origin)
    runner = ctx.runner_id()
    with ctx.money_lock, ctx.transaction() as s:
        existing = _existing(s, actor, req)
        if existing is not None:
            return existing, False
        contract = money.lock_contract(s, req.contract_id)
        p = early.prepared if early is not None and early.still(contract) else None
        if p is None:
            # The contract changed (or is due to expire) since it was read: again, in here.
            p = prepare(ctx, s, actor, req, origin)
            contract = money.lock_contract(s, req.contract_id)
        assert contract is not None
        quote_fen = money.to_fen(p.quote.amount)
        check_quotas(p.contract, *_quota_usage(s, contract.id), p.bound.max_rows)
        epsilon = budgets.job_epsilon(p.contract, p.facts, req.epsilon)
        money.reserve_under_cap(s, contract, p.contract.spend_cap, quote_fen)
        money.reserve_prepaid(s, actor.id, quote_fen)
        job = Job(
            id=new_id("j"),
            contract_id=contract.id,
            operator_id=actor.id,
            code=req.code,
            created_at=clock.stored(clock.now()),
            params=req.params,
            idempotency_key=req.idempotency_key,
            signature=req.signature,
            signing_key_id=p.signing_key_id,
            signed_at=req.signed_at if req.signature else None,
            contract_version=p.contract_version,
            status=JobStatus.QUEUED,
            runner=runner,
            schedule_id=p.schedule_id,
            quote=p.quote.to_json(),
            quote_fen=quote_fen,
            versions={name: info.version for name, info in sorted(p.datasets.items())},
            usage={
                "bounds": Reservation(
                    p.bound.max_rows,
                    p.bound.max_outputs,
                    money.period_of(clock.now()),
                    p.month_to_date,
                    req.epsilon,
                    {name: str(eps) for name, eps in sorted(epsilon.items())},
                    max(p.facts.collects, 1),
                ).to_json()
            },
            **_origin_columns(origin),
        )
        s.add(job)
        s.flush()
        # Counted now, with the reservation: the quota checks of the next jobs read these.
        counters.add(s, counters.JOBS_OF_DAY, contract.id, counters.day_of(job.created_at), 1)
        counters.add(
            s,
            counters.ROWS_OF_MONTH,
            contract.id,
            counters.month_of(job.created_at),
            p.bound.max_rows,
        )
        # Enough to re-check the operator's signature from the log alone.
        log.append(
            s,
            "job.submitted",
            actor.id,
            job.id,
            {
                "contract_id": contract.id,
                "contract_version": p.contract_version,
                "code_sha256": _sha(req.code),
                "params": req.params,
                "idempotency_key": req.idempotency_key,
                "signature": req.signature,
                "signed_at": job.signed_at,
                "signing_key_id": p.signing_key_id,
                "quote": p.quote.to_json(),
                "versions": job.versions,
                **({"origin": origin.to_json()} if origin else {}),
            },
        )
        budgets.reserve(s, p.contract, job.id, actor.id, epsilon)
        return job, True


@dataclass(frozen=True)
class _Early:
    """A submission prepared from a read, and the state of its contract row at that read."""

    prepared: Prepared
    contract_state: tuple[int, str]

    def still(self, row: money.ContractMoney | None) -> bool:
        # Not updated_at: every reservation touches the row.
        return row is not None and (row.version, row.status) == self.contract_state


def _prepare_reading(
    ctx: Context, session: Session, actor: Actor, req: JobRequest, origin: Origin | None
) -> _Early | None:
    """The submission prepared in a read-only session; None when preparing it must write
    (its contract is past its term, and the expiry is to be recorded)."""
    row = session.get(Contract, req.contract_id)
    # Held while prepare() runs, which reads the same version again: the session's identity
    # map keeps a row only while something refers to it, and would load it a second time.
    current = None if row is None else session.get(ContractVersion, (row.id, row.version))
    if row is not None and agreements.current_due_to_expire(session, row):
        return None
    p = prepare(ctx, session, actor, req, origin)
    assert row is not None and current is not None  # prepare refuses a contract it cannot find
    return _Early(p, (row.version, row.status))


def _epsilon_bounds(epsilon: Mapping[str, Any], facts: CodeFacts) -> dict[str, Any]:
    """The ε a job reserved, and the collect() call sites the driver spreads it over."""
    if not epsilon:
        return {}
    return {
        "epsilon": {name: str(eps) for name, eps in sorted(epsilon.items())},
        "collect_sites": max(facts.collects, 1),
    }


def _quota_usage(session: Session, contract_id: str) -> tuple[int, int]:
    """Jobs admitted today, and rows scanned or still reserved this month, for a contract:
    its running counters (records.counters), one row each, whatever its history."""
    at = clock.stored_now()
    return (
        counters.one(session, counters.JOBS_OF_DAY, contract_id, counters.day_of(at)),
        counters.one(session, counters.ROWS_OF_MONTH, contract_id, counters.month_of(at)),
    )


def submit(
    ctx: Context,
    actor: Actor,
    req: JobRequest,
    wait: bool = False,
    origin: Origin | None = None,
) -> dict[str, Any]:
    """Admit and start a job. `origin` says which approved template (and product call) it
    runs; the caller has checked who may run it and with which parameters."""
    require(actor, Role.operator)
    with logs.bound(principal_id=actor.id):
        job = _admit(ctx, actor, req, wait, origin)
    return get(ctx, actor, job.id)


def _admit(ctx: Context, actor: Actor, req: JobRequest, wait: bool, origin: Origin | None) -> Job:
    started = time.monotonic()
    try:
        job, created = reserve(ctx, actor, req, origin)
    except (CompileError, ContractScopeError, DisclosureRefused) as exc:
        metrics.JOBS.labels(str(JobStatus.REJECTED), JobError.of(exc).code).inc()
        raise RejectedJob(exc, _record_rejection(ctx, actor, req, exc, origin)) from exc
    seconds = time.monotonic() - started
    metrics.STAGE.labels("submit").observe(seconds)
    with logs.bound(job_id=job.id, contract_id=job.contract_id):
        if created:
            logger.info(
                "job accepted",
                extra=logs.fields(quote_fen=job.quote_fen, submit_seconds=round(seconds, 3)),
            )
            # The job's own thread carries this request's ids on (`logs`).
            future = execution.dispatch(ctx, job)
            if wait:
                future.result()
        else:
            logger.info("job already submitted under this idempotency key")
            if wait:
                execution.wait_for(ctx, job.id)
    return job
