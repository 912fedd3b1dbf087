from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from sandbox.api.deps import Ctx, CurrentActor
from sandbox.api.files import ListingFormat, OutputFormat, export_response
from sandbox.api.models.common import ERRORS, SIGNED_IN, ModelRoute, errors, files
from sandbox.api.models.jobs import Check, Job, Jobs, Output, Quote
from sandbox.common import exports
from sandbox.pipeline import submission
from sandbox.records import jobs, listings

router = APIRouter(tags=["jobs"], route_class=ModelRoute, responses=ERRORS)

# A submission may find the contract, a quota or the cluster unavailable.
SUBMISSION = SIGNED_IN | errors(404, 409, 429, 503)


@router.post("/quotes", response_model=Quote, responses=SUBMISSION)
def quote(body: submission.JobRequest, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    return submission.quote(ctx, actor, body)


@router.post("/checks", response_model=Check, responses=SUBMISSION)
def check(body: submission.JobRequest, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    """Operator: what is wrong with a job, with line numbers, before paying for it — the
    language's refusals, methods the language lacks, aggregates of conditions, emit() or
    collect() in a loop, names the contract does not grant — and its quote when none is an
    error. Nothing runs, nothing is read, recorded or charged."""
    return submission.check_job(ctx, actor, body)


@router.post("/jobs", status_code=201, response_model=Job, responses=SUBMISSION)
async def submit(
    body: submission.JobRequest, ctx: Ctx, actor: CurrentActor, wait: bool = False
) -> dict[str, Any]:
    # The job runs elsewhere; this thread only records and (with wait) waits for it.
    return await run_in_threadpool(submission.submit, ctx, actor, body, wait)


@router.get("/jobs", response_model=Jobs, responses=SIGNED_IN | files("csv", "xlsx"))
def list_jobs(
    ctx: Ctx,
    actor: CurrentActor,
    contract_id: str | None = None,
    operator_id: str | None = None,
    status: str | None = None,
    period: str | None = None,
    limit: int = 100,
    offset: int = 0,
    format: ListingFormat = "json",
) -> Any:
    """Jobs: an operator's own; for the regulator every job, with code, signature and the
    full disclosure report. `period` (YYYY-MM) filters by submission month; `format=csv` or
    `xlsx` for a spreadsheet."""
    rows = listings.jobs(ctx, actor, contract_id, operator_id, status, period, limit, offset)
    if format != "json":
        return export_response(listings.jobs_table(rows), format, "jobs")
    return {"jobs": rows}


@router.get("/jobs/{job_id}", response_model=Job, responses=SIGNED_IN | errors(404))
def get(job_id: str, ctx: Ctx, actor: CurrentActor) -> dict[str, Any]:
    return jobs.get(ctx, actor, job_id)


@router.get(
    "/jobs/{job_id}/outputs/{name}",
    response_model=Output,
    responses=SIGNED_IN | errors(404) | files("csv", "xlsx", "parquet"),
)
def output(
    job_id: str, name: str, ctx: Ctx, actor: CurrentActor, format: OutputFormat = "json"
) -> Any:
    """One released output: JSON, a spreadsheet (`csv`, `xlsx`) or Parquet."""
    body = jobs.output(ctx, actor, job_id, name)
    if format == "json":
        return body
    if format != "parquet":
        return export_response(jobs.output_table(name, body), format, name)
    return Response(
        jobs.output_parquet(body),
        media_type="application/vnd.apache.parquet",
        headers=exports.attachment(f"{name}.parquet"),
    )
