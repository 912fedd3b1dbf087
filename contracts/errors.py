"""Errors raised by the contracts package.

Every error carries a snake_case ``code`` that the API puts in its JSON error envelope::

    ContractError
    ├── ContractInvalid         an application or stored document is malformed
    ├── ContractStateError      a transition is not allowed in the current status
    ├── ContractInactive        the contract cannot be used now (status or term)
    ├── ContractScopeError      a job touches a dataset, column or use not granted
    ├── ContractQuotaExceeded   a job would exceed a quota (jobs per day, rows per month)
    ├── ContractBudgetExceeded  a job would exceed a dataset's privacy budget (ε)
    └── ContractSignatureError  a contract signature is malformed or does not verify
"""

from __future__ import annotations


class ContractError(Exception):
    code: str = "contract_error"


class ContractInvalid(ContractError):
    code = "contract_invalid"


class ContractStateError(ContractError):
    code = "contract_state"


class ContractInactive(ContractError):
    code = "contract_inactive"


class ContractScopeError(ContractError):
    code = "contract_scope"


class ContractSignatureError(ContractError):
    code = "contract_signature"


class ContractQuotaExceeded(ContractError):
    """A job would exceed one of the contract's quotas."""

    code = "contract_quota"


class ContractBudgetExceeded(ContractError):
    """A job would spend more privacy budget (ε) on a dataset than the contract has left."""

    code = "privacy_budget_exceeded"
