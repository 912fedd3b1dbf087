"""Jobs: quotes, the job as its owner or the regulator sees it, released outputs."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from sandbox.api.models.common import Number, Open
from sandbox.api.models.pricing import Charge


class Bounds(Open):
    """The most the job may use; the quote prices this."""

    rows_scanned: int
    outputs: int
    compute_seconds: Number


class Quote(Open):
    contract_id: str
    quote: Charge
    bounds: Bounds


class Problem(Open):
    line: int | None = Field(description="The line of the code, when the problem has one")
    severity: str = Field(description="error (the job would be refused or fail) or warning")
    message: str
    code: str = Field(description="The error code a submission would be refused with")


class Check(Open):
    """A job checked without running it: nothing read, nothing recorded, nothing charged."""

    ok: bool = Field(description="No errors: the job would be admitted")
    problems: list[Problem]
    quote: Charge | None = Field(description="The job's quote, when it would be admitted")


class JobError(Open):
    code: str
    message: str
    line: int | None = None


class OutputColumn(Open):
    name: str
    type: str
    bounds: list[list[float | int | None]] | None = Field(
        None,
        description=(
            "A banded key column (bucket(), histogram()): each band's [low, high), in the "
            "order the rows come in; null where a band is open"
        ),
    )


class Output(Open):
    """A released output: a table (`columns`, `rows`, `suppressed`) or a scalar (`value`).
    Suppressed cells are null and listed in `suppressed` as [row index, column]."""

    kind: str = Field(description="table or scalar")
    columns: list[OutputColumn] | None = None
    rows: list[list[Any]] | None = None
    suppressed: list[list[Any]] | None = None
    value: Any = None


class _JobFields(Open):
    """What a job and a listed job share."""

    id: str
    contract_id: str
    operator_id: str
    status: str = Field(
        description="queued, running, held (waiting for output reviewers), succeeded, failed, rejected, cancelled"
    )
    created_at: str | None
    finished_at: str | None
    quote: Charge | None
    charge: Charge | None
    usage: dict[str, Any] | None = Field(
        description="At least rows_scanned and compute_seconds once finished"
    )
    disclosure: dict[str, Any] = Field(description="Which rule suppressed what, per release")
    error: JobError | None
    contract_version: int | None
    versions: dict[str, int] | None = Field(
        None, description="The version of each dataset the job reads, fixed when it was submitted"
    )
    review: dict[str, Any] | None = Field(
        None,
        description="Its latest output review: id, status, reasons, required, released_by, "
        "decisions (with the reviewers' reasons); never the held release",
    )
    held_since: str | None = Field(None, description="While held: when its release was held")
    waited_seconds: int | None = Field(None, description="While held: seconds waited so far")
    origin: dict[str, Any] | None = Field(
        None,
        description=(
            "The approved template the job ran (template_id, template_version) and the "
            "data product call it answered (product_id, and the price the operator charged "
            "its customer for it), when not written by hand"
        ),
    )
    code: str | None = None
    params: dict[str, Any] | None = None
    signature: str | None = None
    signed_at: str | None = None
    signing_key_id: str | None = None


class Job(_JobFields):
    """A job as its owner sees it; the regulator also sees `code`, `params`, `signature`,
    `signed_at`, `signing_key_id` and the full disclosure report."""

    outputs: dict[str, Output] = Field(description="Released outputs by name")


class ListedJob(_JobFields):
    """A job in a listing: its outputs by name only, and the operator's name."""

    outputs: list[str] = Field(description="Names of the released outputs")
    operator_name: str | None = None


class Jobs(Open):
    jobs: list[ListedJob]
