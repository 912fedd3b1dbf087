"""The service's error tree. Each class carries the `code` of the JSON error envelope;
`sandbox.api.errors` maps classes to HTTP statuses at one place.

    SandboxError
    ├── BadRequest                 400  malformed or invalid input
    │   ├── PlanError                   a job's plan is invalid (type error, unknown column…)
    │   ├── CompileError                operator code refused by the language policy
    │   ├── ParamsInvalid               a template's parameter schema, or parameters it refuses
    │   └── IngestError                 a dataset file, policy or source could not be ingested
    │       ├── QualityRefused          a version its dataset's quality rules refuse
    │       └── SourceError             a department's database could not be read (which host
    │                                   and database, what to check; never the password)
    ├── Unauthenticated            401  missing or unknown token
    │   └── TokenRevoked                a token that was rotated or revoked
    ├── Forbidden                  403  role or ownership does not allow this
    │   ├── DisclosureRefused           a request that disclosure rules never allow
    │   ├── PrincipalSuspended          the caller is suspended
    │   ├── ProductSuspended            a data product the bureau or the regulator suspended
    │   └── LicenseExpired              the operator's licence is no longer valid
    ├── NotFound                   404
    ├── Conflict                   409  duplicate name, wrong state
    ├── QuotaExceeded              429  contract quota or spend cap would be exceeded
    ├── JobFailed                  500  the job failed for a reason that is not the operator's
    ├── ServiceFault               503  the service could not do its part of a job
    │   ├── WorkerLost                  the Ray worker running the job's work died
    │   ├── DataUnavailable             a registered dataset's file is missing or damaged
    │   └── VersionRetired              a job waited past its dataset version's retention
    ├── ProductCallFailed          (the job's)  a product call whose job did not succeed, with the
    │                                   job's own code and status; 502 when the product's own
    │                                   analysis failed (its code raised, timed out, or reviewers
    │                                   refused its release)
    ├── StorageFull                507  the data directory ran out of space; nothing was kept
    ├── LedgerInconsistent         503  the stored log does not add up; writes stop
    └── RayUnavailable             503  the configured Ray cluster cannot be reached

A job that did not succeed carries a `JobError` (code, message, line, and whether the service
was at fault) from where it ended to its record; its status is a `JobStatus`.

The domain packages keep their own trees (`operators.errors.OperatorError`,
`contracts.errors.ContractError`, `pricing.errors.PricingError`); they are mapped beside these.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class SandboxError(Exception):
    code = "error"

    def __init__(self, message: str, *, sign: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        # What the error says about the code that caused it (`sandbox.language.signs`), for
        # detection: never part of what the operator is shown.
        self.sign = sign


class BadRequest(SandboxError):
    code = "bad_request"


class PlanError(BadRequest):
    code = "plan_invalid"


class CompileError(BadRequest):
    code = "code_rejected"

    def __init__(self, message: str, line: int | None = None, *, sign: str | None = None) -> None:
        super().__init__(f"line {line}: {message}" if line else message, sign=sign)
        self.line = line


class ParamsInvalid(BadRequest):
    code = "params_invalid"


class IngestError(BadRequest):
    code = "ingest_failed"


class QualityRefused(IngestError):
    code = "quality_refused"


class SourceError(IngestError):
    """A pull from a department's database failed: it could not be reached, refused the
    account, or could not give the rows (`sandbox.catalog.sources`). The message names the
    host and database and what to check there; it never holds the password."""

    code = "source_failed"


class Unauthenticated(SandboxError):
    code = "unauthenticated"


class TokenRevoked(Unauthenticated):
    code = "token_revoked"


class Forbidden(SandboxError):
    code = "forbidden"


class PrincipalSuspended(Forbidden):
    code = "principal_suspended"


class ProductSuspended(Forbidden):
    code = "product_suspended"


class LicenseExpired(Forbidden):
    code = "license_expired"


class DisclosureRefused(Forbidden):
    code = "disclosure_refused"


class NotFound(SandboxError):
    code = "not_found"


class Conflict(SandboxError):
    code = "conflict"


class QuotaExceeded(SandboxError):
    code = "quota_exceeded"


class JobFailed(SandboxError):
    code = "job_failed"


class ServiceFault(SandboxError):
    """The service could not do its part of a job: the job fails at the service's fault,
    costs nothing, and may be submitted again. `incident` is what the bureau is told (which
    file, what went wrong); it is logged, never shown to the operator."""

    code = "service_error"

    def __init__(self, message: str, incident: str = "") -> None:
        super().__init__(message)
        self.incident = incident or message
        # Rebuilt from these when it crosses a process boundary (Ray pickles exceptions).
        self.args = (message, self.incident)

    def job_error(self) -> JobError:
        return JobError(self.code, self.message, fault=Fault.SERVICE)


class WorkerLost(ServiceFault):
    code = "worker_lost"

    @classmethod
    def of(cls, cause: BaseException) -> WorkerLost:
        return cls(
            "the worker running this job was lost (the service's fault, not the job's): the "
            "job was not charged and any ε it reserved was returned; you may submit it again",
            f"{type(cause).__name__}: {str(cause).splitlines()[0][:300] if str(cause) else ''}",
        )


class DataUnavailable(ServiceFault):
    """A registered dataset's partition file cannot be read: missing, truncated or damaged."""

    code = "data_unavailable"

    @classmethod
    def of(cls, dataset: str, path: str, cause: BaseException) -> DataUnavailable:
        reason = str(cause).splitlines()[0][:300] if str(cause) else ""
        return cls(
            f"dataset '{dataset}' cannot be read right now: one of its files is missing or "
            "damaged. The bureau has been told; the job was not charged and any ε it reserved "
            "was returned. Submit it again once the bureau has restored the dataset (contact "
            "the bureau if this persists)",
            f"dataset {dataset!r}: partition file {path} cannot be read "
            f"({type(cause).__name__}: {reason})",
        )


class VersionRetired(ServiceFault):
    """The dataset version a job was submitted against has been retired (its files removed)."""

    code = "version_retired"


class ProductCallFailed(SandboxError):
    """A customer's call of a data product whose job was refused or failed: answered as
    the job would be, with the job's code and HTTP status, and the call's (job's) id."""

    def __init__(self, message: str, *, code: str, status: int, call_id: str) -> None:
        super().__init__(message)
        self.code, self.status, self.call_id = code, status, call_id


class StorageFull(SandboxError):
    """The data directory has no space left (or the file size limit was reached)."""

    code = "storage_full"


class LedgerInconsistent(SandboxError):
    """The log's stored rows disagree with each other (e.g. a row was deleted by hand). Every
    state change is logged, so the service refuses changes rather than log around the gap."""

    code = "ledger_inconsistent"


class RayUnavailable(SandboxError):
    """The Ray cluster named by `SANDBOX_RAY_ADDRESS`/`RAY_ADDRESS` did not answer in time."""

    code = "ray_unavailable"


class JobStatus(StrEnum):
    """Where a job is. The last four are final. A held job waits for people to check a
    release before its code receives it; it runs on once they release it."""

    QUEUED = "queued"
    RUNNING = "running"
    HELD = "held"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self not in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.HELD)


class Fault(StrEnum):
    """Whose fault a job's failure is. The service's costs the operator nothing."""

    SERVICE = "service"


@dataclass(frozen=True)
class JobError:
    """Why a job did not succeed: one value from the jail (or the driver, or the service) to
    the job's record and the HTTP response, where it is written as `to_json()`."""

    code: str
    message: str
    line: int | None = None
    fault: Fault | None = None

    @classmethod
    def of(cls, exc: BaseException) -> JobError:
        return cls(
            str(getattr(exc, "code", "rejected")),
            getattr(exc, "message", None) or str(exc),
            getattr(exc, "line", None),
        )

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> JobError:
        fault = body.get("fault")
        return cls(
            body["code"],
            body["message"],
            body.get("line"),
            Fault(fault) if fault is not None else None,
        )

    @property
    def service_fault(self) -> bool:
        return self.fault is Fault.SERVICE

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message, "line": self.line}
        return {**body, "fault": self.fault.value} if self.fault is not None else body
