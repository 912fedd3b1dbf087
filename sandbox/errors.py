"""The service's error tree. Each class carries the `code` of the JSON error envelope;
`sandbox.api.errors` maps classes to HTTP statuses at one place.

    SandboxError
    ├── BadRequest                 400  malformed or invalid input
    │   ├── PlanError                   a job's plan is invalid (type error, unknown column…)
    │   ├── CompileError                operator code refused by the language policy
    │   └── IngestError                 a dataset file or policy could not be ingested
    ├── Unauthenticated            401  missing or unknown token
    │   └── TokenRevoked                a token that was rotated or revoked
    ├── Forbidden                  403  role or ownership does not allow this
    │   ├── DisclosureRefused           a request that disclosure rules never allow
    │   ├── PrincipalSuspended          the caller is suspended
    │   └── LicenseExpired              the operator's licence is no longer valid
    ├── NotFound                   404
    ├── Conflict                   409  duplicate name, wrong state
    ├── QuotaExceeded              429  contract quota or spend cap would be exceeded
    ├── JobFailed                  500  the job failed for a reason that is not the operator's
    ├── LedgerInconsistent         503  the stored log does not add up; writes stop
    └── RayUnavailable             503  the configured Ray cluster cannot be reached

The domain packages keep their own trees (`operators.errors.OperatorError`,
`contracts.errors.ContractError`, `pricing.errors.PricingError`); they are mapped beside these.
"""

from __future__ import annotations


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

    def __init__(self, message: str, line: int | None = None, *,
                 sign: str | None = None) -> None:
        super().__init__(f"line {line}: {message}" if line else message, sign=sign)
        self.line = line


class IngestError(BadRequest):
    code = "ingest_failed"


class Unauthenticated(SandboxError):
    code = "unauthenticated"


class TokenRevoked(Unauthenticated):
    code = "token_revoked"


class Forbidden(SandboxError):
    code = "forbidden"


class PrincipalSuspended(Forbidden):
    code = "principal_suspended"


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


class LedgerInconsistent(SandboxError):
    """The log's stored rows disagree with each other (e.g. a row was deleted by hand). Every
    state change is logged, so the service refuses changes rather than log around the gap."""

    code = "ledger_inconsistent"


class RayUnavailable(SandboxError):
    """The Ray cluster named by `SANDBOX_RAY_ADDRESS`/`RAY_ADDRESS` did not answer in time."""

    code = "ray_unavailable"
