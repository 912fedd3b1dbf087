"""A customer's call of a data product (`sandbox.records.products`): authenticated by the
key the operator issued it, its parameters checked against the approved template's schema,
then run as one of the operator's jobs, with every check a job has, and waited for.

The customer sees the released outputs (suppressed cells marked as in the job) and the
price of the call; never the operator's code, contract or bill. A call that does not
succeed is answered with the job's own error code and status, and its id; it is recorded
and costs the customer nothing (the operator pays the bureau's schedule for the job).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pricing.money import format_money
from pricing.products import from_fen
from sandbox.common import clock
from sandbox.context import Context
from sandbox.errors import (
    BadRequest,
    Forbidden,
    JobError,
    JobStatus,
    NotFound,
    ProductCallFailed,
    ProductSuspended,
    Unauthenticated,
)
from sandbox.language.params import parse_schema
from sandbox.pipeline import submission
from sandbox.records.failures import DOMAIN_ERRORS, STATUS
from sandbox.records.jobs import get as get_job
from sandbox.records.principals import ACTIVE, actor_of
from sandbox.records.products import IDEMPOTENCY_MAX, charged_fen, hash_key
from sandbox.store.models import Job, Principal, Product, ProductCap, ProductKey
from sandbox.store.models import TemplateVersion as Version

ENDED = (JobStatus.FAILED, JobStatus.REJECTED, JobStatus.CANCELLED)


def _customer(session: Session, key: str | None, product_id: str) -> tuple[ProductKey, Product]:
    if not key:
        raise Unauthenticated("send the product key you were given as 'X-Product-Key: pk_…'")
    row = session.scalar(select(ProductKey).where(ProductKey.key_hash == hash_key(key)))
    if row is None:
        raise Unauthenticated("unknown product key; ask the product's operator for a valid one")
    if row.revoked_at is not None:
        raise Unauthenticated(
            f"this product key was revoked at {clock.text(row.revoked_at)}; ask the product's "
            "operator for a new one"
        )
    if row.product_id != product_id:
        raise Forbidden(f"this key is for another product ({row.product_id}), not {product_id}")
    p = session.get(Product, product_id)
    assert p is not None  # the key's foreign key
    if p.status != ACTIVE:
        raise ProductSuspended(
            f"product {p.name} ({p.id}) is suspended: {p.status_reason}; calls resume when the "
            "bureau or the regulator resumes it"
        )
    return row, p


def call_view(job: Mapping[str, Any], price_fen: int | None) -> dict[str, Any]:
    """A call as its customer sees it: the released outputs and the price, never the
    operator's code, bill or contract."""
    body: dict[str, Any] = {
        "id": job["id"],
        "product_id": (job.get("origin") or {}).get("product_id"),
        "status": job["status"],
        "created_at": job.get("created_at"),
        "finished_at": job.get("finished_at"),
        "outputs": job.get("outputs") or {},
        "price": format_money(from_fen(price_fen or 0)),
        "charged": job["status"] == JobStatus.SUCCEEDED,
        "currency": "CNY",
    }
    if job.get("error"):
        error = job["error"]
        body["error"] = {"code": error.get("code"), "message": error.get("message")}
    return body


def _status_of_code(code: str) -> int:
    """The HTTP status the API answers an error of `code` with: that of the class in the
    error trees that carries it (a job keeps its error's code, not its class). A code no
    class carries is the product's own analysis failing (its code raised, ran out of time,
    its release was refused by reviewers): to the customer, the product behind the service
    failed, 502."""
    stack: list[type[Exception]] = list(DOMAIN_ERRORS)
    while stack:
        cls = stack.pop()
        if getattr(cls, "code", None) == code:
            return next((status for c, status in STATUS if issubclass(cls, c)), 502)
        stack.extend(cls.__subclasses__())
    return 502


def call(
    ctx: Context,
    key: str | None,
    product_id: str,
    params: Any,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """A customer's call: its parameters checked against the template's schema, then run as
    a job of the operator's, waited for. A call that does not succeed is answered with the
    job's own error code (and its id); it costs the customer nothing."""
    idem = _idempotency(idempotency_key)
    with ctx.reading() as s:
        key_row, p = _customer(s, key, product_id)
        version = s.get(Version, (p.template_id, p.template_version))
        operator = s.get(Principal, p.operator_id)
        cap = s.get(ProductCap, p.scenario)
        assert version is not None and operator is not None and cap is not None
        if operator.status != ACTIVE:
            raise ProductSuspended(
                f"the operator of product {p.name} is suspended; the product takes no calls"
            )
        checked = parse_schema(version.params_schema).check(params if params is not None else {})
        origin = submission.Origin(
            p.template_id, p.template_version, p.id, key_row.id, charged_fen(p, cap, clock.now())
        )
        code, contract_id, actor = version.code, p.contract_id, actor_of(operator)
    req = submission.JobRequest(
        contract_id=contract_id,
        code=code,
        params=checked,
        # Namespaced: an operator's idempotency keys are shared by all its jobs.
        idempotency_key=f"product:{p.id}:{key_row.id}:{idem}" if idem else None,
    )
    job = submission.submit(ctx, actor, req, wait=True, origin=origin)
    with ctx.reading() as s:
        price_fen = s.scalar(select(Job.price_fen).where(Job.id == job["id"]))
    if job["status"] in ENDED:
        error = JobError.from_json(job["error"]) if job.get("error") else None
        code_ = error.code if error else "job_failed"
        status = 503 if error is not None and error.service_fault else _status_of_code(code_)
        raise ProductCallFailed(
            error.message if error else f"the call ended {job['status']}",
            code=code_,
            status=status,
            call_id=job["id"],
        )
    return call_view(job, price_fen)


def get_call(ctx: Context, key: str | None, product_id: str, call_id: str) -> dict[str, Any]:
    """A call by its customer's key (one still running or held shows its status)."""
    with ctx.reading() as s:
        key_row, p = _customer_reading(s, key, product_id)
        job = s.get(Job, call_id)
        if job is None or job.product_key_id != key_row.id:
            raise NotFound(f"no call {call_id!r} made with this key")
        operator = s.get(Principal, p.operator_id)
        assert operator is not None
        price_fen, actor = job.price_fen, actor_of(operator)
    return call_view(get_job(ctx, actor, call_id), price_fen)


def _customer_reading(
    session: Session, key: str | None, product_id: str
) -> tuple[ProductKey, Product]:
    # A suspended product's customer can still read the calls it made.
    try:
        return _customer(session, key, product_id)
    except ProductSuspended:
        row = session.scalar(select(ProductKey).where(ProductKey.key_hash == hash_key(key or "")))
        p = session.get(Product, product_id)
        assert row is not None and p is not None
        return row, p


def _idempotency(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value.strip()) > IDEMPOTENCY_MAX:
        raise BadRequest(f"idempotency_key must be text of at most {IDEMPOTENCY_MAX} characters")
    return value.strip()
