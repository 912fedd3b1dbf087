"""Every error a person can cause, as the HTTP status that says what kind it is: the one map
that the API's JSON envelope (`sandbox.api.errors`) and the console's pages both answer by."""

from __future__ import annotations

from contracts import errors as ce
from operators import errors as oe
from pricing import errors as pe
from sandbox import errors as se
from sandbox.ledger import errors as le

# Most specific first: the first class an error is an instance of decides its status.
STATUS: tuple[tuple[type[Exception], int], ...] = (
    (se.DisclosureRefused, 403),
    (se.BadRequest, 400),
    (se.Unauthenticated, 401),
    (se.Forbidden, 403),
    (se.NotFound, 404),
    (se.Conflict, 409),
    (se.QuotaExceeded, 429),
    (se.JobFailed, 500),
    (se.LedgerInconsistent, 503),
    (se.RayUnavailable, 503),
    (se.ServiceFault, 503),
    (se.StorageFull, 507),
    (ce.ContractScopeError, 403),
    (ce.ContractQuotaExceeded, 429),
    (ce.ContractBudgetExceeded, 429),
    (ce.ContractInactive, 403),
    (ce.ContractSignatureError, 400),
    (ce.ContractStateError, 409),
    (ce.ContractInvalid, 400),
    (oe.SignatureInvalid, 400),
    (oe.OperatorError, 400),
    (pe.PricingError, 400),
    (le.ProofRangeError, 400),
    (le.LedgerError, 400),
)

DOMAIN_ERRORS = (
    se.SandboxError,
    ce.ContractError,
    oe.OperatorError,
    pe.PricingError,
    le.LedgerError,
)


def status_of(exc: Exception) -> int:
    return next((status for cls, status in STATUS if isinstance(exc, cls)), 500)
