"""Jobs as their owners and regulators see them."""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.orm import Session

from operators.client import released_table
from operators.roles import Role
from pricing.money import format_money
from sandbox.common import clock, exports
from sandbox.context import Context
from sandbox.disclosure.threshold import operator_view
from sandbox.errors import (
    NotFound,
)
from sandbox.records.principals import Actor, require
from sandbox.store.models import Job, JobOutput, OutputReview


@dataclass(frozen=True)
class Reservation:
    """What a job reserved when it was admitted: the scans and outputs its quote covers, the
    month and volume its price tier was taken at, and the ε it holds per private dataset
    (spread over its collect() call sites). Kept in the job's record as `usage["bounds"]`,
    which operators read, so its JSON keeps that shape."""

    rows_scanned: int
    outputs: int
    month: str = ""
    month_to_date: Mapping[str, int] = field(default_factory=dict)
    requested_epsilon: Mapping[str, str] | None = None
    epsilon: Mapping[str, str] = field(default_factory=dict)
    collect_sites: int = 1

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "rows_scanned": self.rows_scanned,
            "outputs": self.outputs,
            "month": self.month,
            "month_to_date": dict(self.month_to_date),
            "requested_epsilon": (
                dict(self.requested_epsilon) if self.requested_epsilon is not None else None
            ),
        }
        if self.epsilon:
            body.update(epsilon=dict(self.epsilon), collect_sites=self.collect_sites)
        return body

    @classmethod
    def of(cls, job: Job) -> Reservation:
        b = (job.usage or {}).get("bounds", {})
        return cls(
            int(b.get("rows_scanned", 0)),
            int(b.get("outputs", 1)),
            str(b.get("month", "")),
            dict(b.get("month_to_date", {})),
            b.get("requested_epsilon"),
            dict(b.get("epsilon", {})),
            int(b.get("collect_sites", 1)),
        )


def load_job(session: Session, actor: Actor, job_id: str) -> Job:
    job = session.get(Job, job_id)
    visible = job is not None and (
        actor.role == Role.regulator
        or (actor.role == Role.operator and job.operator_id == actor.id)
    )
    if not visible:
        raise NotFound(f"no job {job_id!r} visible to you")
    return job  # type: ignore[return-value]


def latest_reviews(session: Session, job_ids: list[str]) -> dict[str, OutputReview]:
    """Each job's latest output review, for those that had one."""
    latest: dict[str, OutputReview] = {}
    for review in session.scalars(
        select(OutputReview)
        .where(OutputReview.job_id.in_(job_ids))
        .order_by(OutputReview.created_at, OutputReview.release_index)
    ):
        latest[review.job_id] = review
    return latest


def review_summary(job: Job, review: OutputReview | None) -> dict[str, Any]:
    """What anyone who may read the job sees of its output review: the rules that held it,
    how far the reviewers are, their reasons (never the held release), and how long it has
    waited."""
    if review is None:
        return {}
    body: dict[str, Any] = {
        "review": {
            "id": review.id,
            "status": review.status,
            "release_index": review.release_index,
            "reasons": list(review.reasons),
            "required": review.required,
            "released_by": sum(1 for d in review.decisions if d.get("decision") == "release"),
            "decisions": [
                {"decision": d.get("decision"), "reason": d.get("reason"), "at": d.get("at")}
                for d in review.decisions
            ],
        }
    }
    if job.status == "held":
        waited = max(0.0, (clock.stored_now() - review.created_at).total_seconds())
        body |= {"held_since": clock.text(review.created_at), "waited_seconds": int(waited)}
    return body


def view(
    job: Job, outputs: dict[str, Any], full: bool, review: OutputReview | None = None
) -> dict[str, Any]:
    disclosure = job.disclosure or {"releases": []}
    return {
        "id": job.id,
        "contract_id": job.contract_id,
        "operator_id": job.operator_id,
        "status": job.status,
        "created_at": clock.text(job.created_at),
        "finished_at": clock.text(job.finished_at),
        "quote": job.quote,
        "charge": job.charge,
        "usage": job.usage,
        "versions": job.versions,
        "outputs": outputs,
        "disclosure": disclosure if full else operator_view(disclosure),
        "error": job.error,
        "contract_version": job.contract_version,
        **review_summary(job, review),
        "origin": origin(job),
        **(
            {
                "code": job.code,
                "params": job.params,
                "signature": job.signature,
                "signed_at": job.signed_at,
                "signing_key_id": job.signing_key_id,
            }
            if full
            else {}
        ),
    }


def origin(job: Job) -> dict[str, Any] | None:
    """The approved template a job ran, and the product call it answered (with the price
    the operator charged its customer for it), if any."""
    if job.template_id is None:
        return None
    return {
        "template_id": job.template_id,
        "template_version": job.template_version,
        **({"product_id": job.product_id} if job.product_id else {}),
        **(
            {"price": format_money(Decimal(job.price_fen) / 100)}
            if job.price_fen is not None
            else {}
        ),
    }


def get(ctx: Context, actor: Actor, job_id: str) -> dict[str, Any]:
    with ctx.reading() as s:
        job = load_job(s, actor, job_id)
        outputs = {
            o.name: o.body
            for o in s.scalars(
                select(JobOutput).where(JobOutput.job_id == job_id).order_by(JobOutput.name)
            )
        }
        review = latest_reviews(s, [job_id]).get(job_id)
        return view(job, outputs, full=actor.role == Role.regulator, review=review)


def output(ctx: Context, actor: Actor, job_id: str, name: str) -> dict[str, Any]:
    require(actor, Role.operator, Role.regulator)
    with ctx.reading() as s:
        load_job(s, actor, job_id)
        out = s.get(JobOutput, (job_id, name))
        if out is None:
            raise NotFound(f"job {job_id} has no output named {name!r}")
        return out.body


_NUMERIC_TYPES = ("int", "uint", "float", "double", "decimal", "halffloat")


def output_parquet(body: dict[str, Any]) -> bytes:
    """A released output as a Parquet file: a table's released cells (suppressed ones null),
    or a scalar as one row."""
    table = (
        released_table(body) if body["kind"] == "table" else pa.table({"value": [body["value"]]})
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def output_table(name: str, body: dict[str, Any]) -> exports.Table:
    """A released output as an export table; suppressed cells are marked, not blank."""
    if body["kind"] == "scalar":
        value = body["value"]
        kind = exports.Kind.TEXT if isinstance(value, (str, bool)) else exports.Kind.NUMBER
        return exports.Table(name, [exports.Column("value", "值", kind)], [{"value": value}])
    columns = [
        exports.Column(
            c["name"],
            c["name"],
            exports.Kind.NUMBER if str(c["type"]).startswith(_NUMERIC_TYPES) else exports.Kind.TEXT,
        )
        for c in body["columns"]
    ]
    hidden = {(i, column) for i, column in body.get("suppressed", [])}
    rows = [
        {
            c.key: exports.SUPPRESSED if (i, c.key) in hidden else value
            for c, value in zip(columns, row)
        }
        for i, row in enumerate(body["rows"])
    ]
    return exports.Table(name, columns, rows)
