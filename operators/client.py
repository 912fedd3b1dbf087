"""Python client of the sandbox's HTTP API, for operators and the bureau's scripts.

    c = SandboxClient("http://127.0.0.1:8000", token="sbx_…", signing_key=private_key)
    job = c.submit(contract_id, code, params={}, wait=True)
    table = job.output("elderly_by_district")      # pyarrow.Table, None in suppressed cells

In a notebook: `job = c.run(contract_id, code)` prints the job's progress and raises the error
class of the service's code (`PlanInvalid`, with `line`); `job.table(name)` converts
(`to_arrow()`, `to_pandas()`) and shows as HTML, suppressed cells marked with their rule.

Built on a synchronous httpx client. pyarrow is imported only when an output is read, so
importing this module stays fast.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import html
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import quote as _quote

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from operators.errors import SignatureInvalid
from operators.keys import PrivateKey, public_key_b64, raw_public_bytes, sign, verify
from operators.released import ReleasedTable, tables_of
from operators.rotation import rotation_bytes
from operators.sm2 import SM2PrivateKey, SM2PublicKey
from operators.submission import sign_submission

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "ERRORS_BY_CODE",
    "ClientError",
    "CodeRejected",
    "Conflict",
    "ContractInactive",
    "ContractMismatch",
    "ContractQuota",
    "ContractScope",
    "DataUnavailable",
    "DisclosureRefused",
    "Forbidden",
    "InvalidRequest",
    "Job",
    "JobCodeError",
    "JobFailed",
    "JobWaitTimeout",
    "NotFound",
    "OutputUnavailable",
    "ParamsInvalid",
    "PlanInvalid",
    "PrivacyBudgetExceeded",
    "Progress",
    "QuotaExceeded",
    "ReleasedTable",
    "SandboxAPIError",
    "SandboxClient",
    "ServiceError",
    "SigningKeyMissing",
    "TokenRevoked",
    "Unauthenticated",
    "WorkerLost",
    "error_for",
]

# Long enough for `?wait=true` on a job that runs up to the service's default 30 s wall
# clock, plus queueing and a cold Ray start.
DEFAULT_TIMEOUT = 120.0
FINISHED = frozenset({"succeeded", "failed", "rejected", "cancelled"})
OutputFormat = Literal["json", "csv", "xlsx", "parquet"]


# --- errors ------------------------------------------------------------------------------


class ClientError(Exception):
    """Base of everything this client raises on its own account (besides httpx transport
    errors, which mean the service could not be reached at all)."""

    code: str = "client_error"


# Error classes by the service's code, filled in as each subclass of SandboxAPIError is made.
ERRORS_BY_CODE: dict[str, type[SandboxAPIError]] = {}


class SandboxAPIError(ClientError):
    """The service refused a request (a non-2xx status and its JSON error envelope), or a
    job did not succeed (`status` None: its own answers were 2xx; `Job.raise_for_error`).

    Raised as the subclass for its code where there is one (`PlanInvalid` for
    `plan_invalid`…; `ERRORS_BY_CODE`), so callers may catch either."""

    code = "api_error"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        ERRORS_BY_CODE[cls.code] = cls

    def __init__(
        self,
        status: int | None,
        code: str,
        message: str,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        # The service's code shadows the class default on purpose: callers branch on it.
        self.code = code
        self.message = message
        # Extra envelope fields, e.g. `job_id` and `line` of a rejected submission.
        self.details: dict[str, Any] = dict(details or {})

    @property
    def line(self) -> int | None:
        """The line of the job's code the error is about, when the service names one."""
        line = self.details.get("line")
        return line if isinstance(line, int) and not isinstance(line, bool) else None

    @property
    def job_id(self) -> str | None:
        job_id = self.details.get("job_id")
        return job_id if isinstance(job_id, str) else None

    def __str__(self) -> str:
        where = (
            f" (line {self.line})"
            if self.line is not None and f"line {self.line}" not in self.message
            else ""
        )
        if self.status is None:
            return f"job {self.job_id} {self.code}: {self.message}{where}"
        return f"HTTP {self.status} {self.code}: {self.message}{where}"

    def __repr__(self) -> str:
        line = f", line={self.line!r}" if self.line is not None else ""
        return f"{type(self).__name__}({self.status!r}, {self.code!r}, {self.message!r}{line})"


def error_for(
    status: int | None, code: str, message: str, details: Mapping[str, Any] | None = None
) -> SandboxAPIError:
    """The error for a service's code: its own class, else SandboxAPIError."""
    return ERRORS_BY_CODE.get(code, SandboxAPIError)(status, code, message, details)


class InvalidRequest(SandboxAPIError):
    """The request's body or query was malformed (400)."""

    code = "invalid_request"


class CodeRejected(SandboxAPIError):
    """The job's code is refused by the language before it runs; `line` says where."""

    code = "code_rejected"


class PlanInvalid(SandboxAPIError):
    """A plan the job built is invalid: an unknown column, a type error…; `line` where the
    job's code built it, when known."""

    code = "plan_invalid"


class ParamsInvalid(SandboxAPIError):
    code = "params_invalid"


class JobCodeError(SandboxAPIError):
    """The job's code raised while it ran (e.g. ZeroDivisionError); `line` says where."""

    code = "job_code_error"


class Unauthenticated(SandboxAPIError):
    code = "unauthenticated"


class TokenRevoked(Unauthenticated):
    code = "token_revoked"


class Forbidden(SandboxAPIError):
    code = "forbidden"


class ContractScope(Forbidden):
    """The job uses a dataset, column or use its contract does not grant."""

    code = "contract_scope"


class ContractInactive(Forbidden):
    code = "contract_inactive"


class DisclosureRefused(Forbidden):
    """A request the disclosure rules never allow (grouping by an identifier…)."""

    code = "disclosure_refused"


class NotFound(SandboxAPIError):
    code = "not_found"


class Conflict(SandboxAPIError):
    code = "conflict"


class QuotaExceeded(SandboxAPIError):
    code = "quota_exceeded"


class ContractQuota(QuotaExceeded):
    code = "contract_quota"


class PrivacyBudgetExceeded(QuotaExceeded):
    code = "privacy_budget_exceeded"


class JobFailed(SandboxAPIError):
    code = "job_failed"


class ServiceError(SandboxAPIError):
    """The service could not do its part of a job: nothing was charged; submit it again."""

    code = "service_error"


class WorkerLost(ServiceError):
    code = "worker_lost"


class DataUnavailable(ServiceError):
    code = "data_unavailable"


class SigningKeyMissing(ClientError):
    code = "signing_key_missing"


class ContractMismatch(ClientError):
    """What the service asks the operator to sign is not what it shows as the contract."""

    code = "contract_mismatch"


class OutputUnavailable(ClientError):
    code = "output_unavailable"


class JobWaitTimeout(ClientError):
    code = "job_wait_timeout"


# --- jobs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One job as `GET /v1/jobs/{id}` shows it to its operator.

    The instance is a snapshot; `refresh()` and `wait()` return a newer one.
    """

    id: str
    status: str
    contract_id: str | None
    outputs: Mapping[str, Any]
    usage: Mapping[str, Any]
    quote: Mapping[str, Any] | None
    charge: Mapping[str, Any] | None
    disclosure: Mapping[str, Any]
    error: Mapping[str, Any] | None
    client: SandboxClient = field(repr=False, compare=False)
    # While held for output review: its review (status, reasons) and how long it has waited.
    review: Mapping[str, Any] | None = None
    waited_seconds: int | None = None
    # The approved template (and product call) the job ran, when not written by hand.
    origin: Mapping[str, Any] | None = None

    @classmethod
    def from_json(cls, body: Mapping[str, Any], client: SandboxClient) -> Job:
        return cls(
            id=body["id"],
            status=body["status"],
            contract_id=body.get("contract_id"),
            outputs=body.get("outputs") or {},
            usage=body.get("usage") or {},
            quote=body.get("quote"),
            charge=body.get("charge"),
            disclosure=body.get("disclosure") or {},
            error=body.get("error"),
            client=client,
            review=body.get("review"),
            waited_seconds=body.get("waited_seconds"),
            origin=body.get("origin"),
        )

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def quote_amount(self) -> Decimal | None:
        return _amount(self.quote)

    @property
    def charge_amount(self) -> Decimal | None:
        return _amount(self.charge)

    def output(self, name: str, as_: Literal["arrow", "json"] = "arrow") -> Any:
        """A released output: a `pyarrow.Table` for a table (suppressed cells are None) or
        the value of a scalar; `as_="json"` gives the body exactly as the API sent it."""
        if name not in self.outputs:
            raise OutputUnavailable(self._missing_output_message(name))
        body = self.outputs[name]
        if as_ == "json":
            return body
        if as_ != "arrow":
            raise ValueError(f"as_ must be 'arrow' or 'json', got {as_!r}")
        if body.get("kind") == "scalar":
            return body.get("value")
        return released_table(body)

    def table(self, name: str) -> ReleasedTable:
        """A table output with its disclosure report: `.to_arrow()`, `.to_pandas()`, and in
        a notebook an HTML table with each suppressed cell marked by its rule."""
        if name not in self.outputs:
            raise OutputUnavailable(self._missing_output_message(name))
        body = self.outputs[name]
        if body.get("kind") == "scalar":
            raise OutputUnavailable(
                f"output {name!r} of job {self.id} is a value, not a table; read it with "
                f"job.output({name!r})"
            )
        return ReleasedTable.of(name, body, self.disclosure)

    def tables(self) -> dict[str, ReleasedTable]:
        """Every table output by name (values, emitted as scalars, left out)."""
        return tables_of(self.outputs, self.disclosure)

    def raise_for_error(self) -> Job:
        """This job, when it succeeded or has not finished; else raise the error for its
        code (`PlanInvalid`, `JobCodeError`…, with its message and line)."""
        if not self.finished or self.status == "succeeded":
            return self
        error = dict(self.error or {})
        code = str(error.get("code") or self.status)
        message = str(error.get("message") or f"the job was {self.status}")
        details = {k: v for k, v in error.items() if k not in ("code", "message")}
        raise error_for(None, code, message, {**details, "job_id": self.id, "status": self.status})

    def refresh(self) -> Job:
        return self.client.job(self.id)

    def wait(
        self,
        timeout: float = DEFAULT_TIMEOUT,
        poll: float = 0.5,
        progress: Callable[[Job], None] | None = None,
    ) -> Job:
        """Poll until the job has finished; returns the finished snapshot. `progress` is
        called with the first snapshot and each whose status changed (e.g. `Progress()`,
        which prints a line each time)."""
        deadline = time.monotonic() + timeout
        job = self
        if progress is not None:
            progress(job)
        while not job.finished:
            if time.monotonic() >= deadline:
                raise JobWaitTimeout(
                    f"job {self.id} is still {job.status} after {timeout:g} s; call wait() "
                    "again with a longer timeout, or check it later with client.job(id)"
                )
            time.sleep(poll)
            previous, job = job.status, job.refresh()
            if progress is not None and job.status != previous:
                progress(job)
        return job

    def _repr_html_(self) -> str:
        charged = f", charged {self.charge_amount} CNY" if self.charge_amount is not None else ""
        head = f"<p>job <code>{_html(self.id)}</code>: {_html(self.status)}{_html(charged)}</p>"
        if self.error:
            line = self.error.get("line")
            where = f" (line {line})" if isinstance(line, int) else ""
            head += (
                f"<p><b>{_html(str(self.error.get('code')))}</b>{where}: "
                f"{_html(str(self.error.get('message')))}</p>"
            )
        values = [
            f"<li><code>{_html(name)}</code> = {_html(str(body.get('value')))}</li>"
            for name, body in self.outputs.items()
            if isinstance(body, Mapping) and body.get("kind") == "scalar"
        ]
        listed = f"<ul>{''.join(values)}</ul>" if values else ""
        return head + listed + "".join(t._repr_html_() for t in self.tables().values())

    def _missing_output_message(self, name: str) -> str:
        available = ", ".join(sorted(self.outputs)) or "none"
        if not self.finished:
            return (
                f"job {self.id} is {self.status}, so output {name!r} is not there yet; "
                "call job.wait() (or submit with wait=True) before reading outputs"
            )
        if self.status != "succeeded":
            reason = (self.error or {}).get("message", "no reason given")
            return f"job {self.id} {self.status} and released no output {name!r}: {reason}"
        return (
            f"job {self.id} has no output named {name!r}; outputs: {available}. "
            "Use the name given to emit() in the job's code"
        )


def _amount(money: Mapping[str, Any] | None) -> Decimal | None:
    return Decimal(money["amount"]) if money and "amount" in money else None


def _html(text: str) -> str:
    return html.escape(text, quote=True)


class Progress:
    """A `progress` for `Job.wait` and `SandboxClient.run`: one line per status the job
    reaches, with the seconds since it was first seen, printed (in a notebook, under the
    cell) or handed to `write`."""

    def __init__(self, write: Callable[[str], None] | None = None) -> None:
        self._write = write or (lambda line: print(line, flush=True))
        self._started: float | None = None

    def __call__(self, job: Job) -> None:
        now = time.monotonic()
        if self._started is None:
            self._started = now
        self._write(f"job {job.id}: {self._status(job)} ({now - self._started:.1f} s)")

    @staticmethod
    def _status(job: Job) -> str:
        if job.status == "held":
            return "held for people to check its release"
        if job.status == "succeeded":
            charged = f", charged {job.charge_amount} CNY" if job.charge_amount is not None else ""
            return f"succeeded: {len(job.outputs)} outputs{charged}"
        if job.error:
            line = job.error.get("line")
            where = f" at line {line}" if isinstance(line, int) else ""
            return f"{job.status}: {job.error.get('code')}{where}"
        return job.status


# --- released tables as Arrow --------------------------------------------------------------

_DECIMAL = re.compile(r"^decimal(128|256)\((\d+),\s*(-?\d+)\)$")
_TIMESTAMP = re.compile(r"^timestamp\[(s|ms|us|ns)(?:,\s*tz=(.+))?\]$")


def released_table(body: Mapping[str, Any]) -> pa.Table:
    """The API's released-table JSON as a `pyarrow.Table`, each column typed as announced."""
    import pyarrow as pa

    names = [c["name"] for c in body["columns"]]
    rows = body.get("rows") or []
    columns = list(zip(*rows)) if rows else [() for _ in names]
    arrays = [_column(pa, list(values), c["type"]) for values, c in zip(columns, body["columns"])]
    return pa.Table.from_arrays(arrays, names=names)


def _arrow_type(pa: Any, spelling: str) -> Any:
    """The Arrow type a column's `type` string names (pyarrow's own `str(type)`), or None."""
    try:
        return pa.type_for_alias(spelling)
    except (ValueError, KeyError):
        pass
    if m := _DECIMAL.match(spelling):
        make = pa.decimal128 if m[1] == "128" else pa.decimal256
        return make(int(m[2]), int(m[3]))
    if m := _TIMESTAMP.match(spelling):
        return pa.timestamp(m[1], tz=m[2])
    return None


def _column(pa: Any, values: list[Any], spelling: str) -> Any:
    arrow_type = _arrow_type(pa, spelling)
    if arrow_type is None:
        # A type this client does not know yet: keep the values rather than refuse them.
        return pa.array(values)
    try:
        return pa.array(values, type=arrow_type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        # Dates and timestamps travel as ISO strings, decimals possibly as strings:
        # Arrow's cast parses them.
        try:
            return pa.array(values).cast(arrow_type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ClientError(
                f"a column announced as {spelling} could not be read as that type ({exc}); "
                "read the output with as_='json' and convert it yourself"
            ) from None


# --- the client --------------------------------------------------------------------------


class SandboxClient:
    """The sandbox's API for one principal (one bearer token).

    Give `signing_key` (the operator's Ed25519 private key, registered with the bureau) to
    sign contracts and job submissions. Pass `http_client` to reuse an existing
    `httpx.Client` (its own timeout then applies, and `close()` leaves it open).
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        signing_key: PrivateKey | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        http_client: httpx.Client | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._key = signing_key
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(timeout=timeout)

    def __repr__(self) -> str:
        signed = ", signing" if self._key is not None else ""
        return f"SandboxClient({self.base_url!r}{signed})"

    def __enter__(self) -> SandboxClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    # -- anyone ---------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self._request("GET", "/health", auth=False)

    def keys(self) -> dict[str, Any]:
        """The service's public keys, e.g. `{"bureau": base64 raw Ed25519, …}`."""
        return self._request("GET", "/keys", auth=False)

    def price_schedule(self) -> dict[str, Any]:
        return self._request("GET", "/price-schedules/current", auth=False)

    # -- any principal --------------------------------------------------------------------

    def me(self) -> dict[str, Any]:
        return self._request("GET", "/me")

    def datasets(self) -> list[dict[str, Any]]:
        return self._listing("/datasets", "datasets")

    def dataset(self, name: str) -> dict[str, Any]:
        return self._request("GET", f"/datasets/{_seg(name)}")

    def dummy_data(
        self,
        name: str,
        rows: int | None = None,
        format: Literal["parquet", "csv", "xlsx"] = "parquet",
    ) -> bytes:
        """A dataset's dummy table (generated from its published schema only: no real value,
        no real distribution) as a Parquet, CSV or XLSX file, for checking that code runs."""
        params: dict[str, Any] = {"format": format}
        if rows is not None:
            params["rows"] = rows
        return self._send("GET", f"/datasets/{_seg(name)}/dummy", params=params).content

    def dummy_catalog(self, name: str) -> dict[str, Any]:
        """What a local run needs next to the dummy table: the catalog entry and the
        disclosure rules in force."""
        return self._request("GET", f"/datasets/{_seg(name)}/dummy/catalog")

    def contract(self, contract_id: str) -> dict[str, Any]:
        return self._request("GET", f"/contracts/{_seg(contract_id)}")

    def bills(self, period: str, operator_id: str | None = None) -> dict[str, Any]:
        """Charges of a month (`YYYY-MM`); an operator always sees only its own."""
        params = {"period": period, **({"operator_id": operator_id} if operator_id else {})}
        return self._request("GET", "/bills", params=params)

    # -- operator -------------------------------------------------------------------------

    def apply_contract(
        self,
        datasets: Mapping[str, Mapping[str, list[str]]],
        purpose: str,
        purpose_class: str,
        valid_from: str | dt.datetime,
        valid_to: str | dt.datetime,
        quotas: Mapping[str, Any] | None = None,
        spend_cap: str | Decimal | int | None = None,
        draft: bool = False,
        privacy: Mapping[str, Mapping[str, str]] | None = None,
        disclosure: Mapping[str, int] | None = None,
    ) -> dict[str, Any]:
        """Apply for a contract: `datasets` maps dataset → column → uses. With `draft=True`
        the application stays an editable draft until `submit_contract`. `privacy` maps a
        dataset to `{"epsilon": "1.0", "per_job_epsilon": "0.1"}` (differential privacy);
        `disclosure` may raise the threshold, e.g. `{"min_contributors": 20}`."""
        body = _terms(datasets, purpose, purpose_class, valid_from, valid_to, quotas, spend_cap)
        if draft:
            body["draft"] = True
        if privacy is not None:
            body["privacy"] = {k: dict(v) for k, v in privacy.items()}
        if disclosure is not None:
            body["disclosure"] = dict(disclosure)
        return self._request("POST", "/contracts", json=body)

    def edit_contract(
        self,
        contract_id: str,
        datasets: Mapping[str, Mapping[str, list[str]]],
        purpose: str,
        purpose_class: str,
        valid_from: str | dt.datetime,
        valid_to: str | dt.datetime,
        quotas: Mapping[str, Any] | None = None,
        spend_cap: str | Decimal | int | None = None,
    ) -> dict[str, Any]:
        """Replace the terms of a draft."""
        body = _terms(datasets, purpose, purpose_class, valid_from, valid_to, quotas, spend_cap)
        return self._request("PUT", f"/contracts/{_seg(contract_id)}", json=body)

    def submit_contract(self, contract_id: str) -> dict[str, Any]:
        """Send a draft for approval."""
        return self._request("POST", f"/contracts/{_seg(contract_id)}/submit")

    def amend_contract(
        self,
        contract_id: str,
        datasets: Mapping[str, Mapping[str, list[str]]],
        purpose: str,
        purpose_class: str,
        valid_from: str | dt.datetime,
        valid_to: str | dt.datetime,
        quotas: Mapping[str, Any] | None = None,
        spend_cap: str | Decimal | int | None = None,
    ) -> dict[str, Any]:
        """Propose new terms for an active contract as its next version; the version in force
        stays in force until the new one is approved and signed (`sign_contract`)."""
        body = _terms(datasets, purpose, purpose_class, valid_from, valid_to, quotas, spend_cap)
        return self._request("POST", f"/contracts/{_seg(contract_id)}/amend", json=body)

    def terminate_contract(self, contract_id: str, reason: str) -> dict[str, Any]:
        """End a contract for good (its operator, or the bureau)."""
        return self._request(
            "POST", f"/contracts/{_seg(contract_id)}/terminate", json={"reason": reason}
        )

    def contract_version(self, contract_id: str, version: int) -> dict[str, Any]:
        """One version of a contract, e.g. a superseded one or an amendment in progress."""
        return self._request("GET", f"/contracts/{_seg(contract_id)}/versions/{int(version)}")

    def rotate_token(self) -> str:
        """Replace this client's API token; the old one stops working at once. Returns the
        new token (store it: it is shown only this once); the client uses it from now on."""
        token: str = self._request("POST", "/me/token")["token"]
        self._token = token
        return token

    def rotate_key(self, new_key: PrivateKey) -> dict[str, Any]:
        """Register `new_key`'s public half as this principal's key, signed by the current
        signing key; the client signs with `new_key` from now on. Contracts signed with the
        old key stay verifiable against it (`principal_keys` lists every key)."""
        if self._key is None:
            raise SigningKeyMissing(
                "rotating a key needs the current private key to sign the rotation; create "
                "the client with signing_key=<current key>, or ask the bureau to register "
                "the new key"
            )
        me = self.me()["id"]
        current = next((k for k in self.principal_keys(me) if k["current"]), None)
        if current is None:
            raise ClientError(
                f"{me} has no current key to rotate from; the bureau registers "
                "a principal's first key"
            )
        public = public_key_b64(new_key)
        signature = sign(self._key, rotation_bytes(me, public, current["id"]))
        registered = self._request(
            "POST",
            f"/principals/{_seg(me)}/keys",
            json={"public_key": public, "signature": signature},
        )
        self._key = new_key
        return registered

    def sign_contract(self, contract_id: str) -> dict[str, Any]:
        """Sign a contract, or the amendment of it that is in progress. With a signing key:
        checks that the canonical bytes are the document shown and carry a valid bureau
        signature, then signs them as the operator. Without a key, only the bureau can sign
        (the service holds its key)."""
        path = f"/contracts/{_seg(contract_id)}/sign"
        if self._key is None:
            if self.me().get("role") == "bureau":
                return self._request("POST", path)
            raise SigningKeyMissing(
                f"signing contract {contract_id} needs the operator's Ed25519 private key; "
                "create the client with SandboxClient(..., signing_key=key), where key is the "
                "private half of the public key the bureau registered for you "
                "(operators.keys.private_key_from_pem reads a PEM file)"
            )
        view = self.contract(contract_id)
        if view.get("amendment"):
            # The service takes the operator's signature for the version in progress.
            view = self.contract_version(contract_id, view["amendment"]["version"])
        canonical = _canonical_of(view)
        self._check_bureau_signature(view, canonical)
        return self._request("POST", path, json={"signature": sign(self._key, canonical)})

    def quote(
        self, contract_id: str, code: str, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The price of a job without running it: `{contract_id, quote, bounds}`."""
        body = {"contract_id": contract_id, "code": code, "params": dict(params or {})}
        return self._request("POST", "/quotes", json=body)

    def check(
        self, contract_id: str, code: str, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """What is wrong with a job before paying for it: `{ok, problems, quote}`, each
        problem with its line, severity, message and code. Nothing runs or is charged."""
        body = {"contract_id": contract_id, "code": code, "params": dict(params or {})}
        return self._request("POST", "/checks", json=body)

    def submit(
        self,
        contract_id: str,
        code: str,
        params: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        wait: bool = False,
        epsilon: Mapping[str, str] | None = None,
    ) -> Job:
        """Submit a job, signed when the client has a signing key. With `wait=True` the call
        returns once the job has finished. `epsilon` (dataset → decimal string) overrides the
        contract's per-job privacy budget for datasets under differential privacy."""
        params = dict(params or {})
        body: dict[str, Any] = {"contract_id": contract_id, "code": code, "params": params}
        if idempotency_key is not None:
            body["idempotency_key"] = idempotency_key
        if epsilon is not None:
            body["epsilon"] = dict(epsilon)
        if self._key is not None:
            body.update(sign_submission(self._key, contract_id, code, params, idempotency_key))
        query = {"wait": "true"} if wait else None
        return Job.from_json(self._request("POST", "/jobs", json=body, params=query), self)

    def run(
        self,
        contract_id: str,
        code: str,
        params: Mapping[str, Any] | None = None,
        *,
        progress: bool | Callable[[Job], None] = True,
        timeout: float = DEFAULT_TIMEOUT,
        poll: float = 0.5,
        idempotency_key: str | None = None,
        epsilon: Mapping[str, str] | None = None,
    ) -> Job:
        """Submit a job, wait for it showing its progress (`True`: a printed line per status;
        or a callable given each new status), and return it once it succeeded; a job refused
        or failed raises the error for its code, e.g. `PlanInvalid` with its `line`."""
        job = self.submit(
            contract_id, code, params, idempotency_key=idempotency_key, epsilon=epsilon
        )
        report = Progress() if progress is True else progress or None
        return job.wait(timeout=timeout, poll=poll, progress=report).raise_for_error()

    def job(self, job_id: str) -> Job:
        return Job.from_json(self._request("GET", f"/jobs/{_seg(job_id)}"), self)

    def jobs(self, **filters: Any) -> list[dict[str, Any]]:
        """Your jobs, newest first, as the listing gives them (outputs by name only);
        `filters` are the listing's query parameters (status, contract_id…)."""
        return self._listing("/jobs", "jobs", params={k: v for k, v in filters.items() if v})

    def output_file(self, job_id: str, name: str, format: OutputFormat = "parquet") -> bytes:
        """One released output as a file: Parquet, CSV (UTF-8 with BOM) or an XLSX workbook."""
        response = self._send(
            "GET", f"/jobs/{_seg(job_id)}/outputs/{_seg(name)}", params={"format": format}
        )
        return response.content

    # -- provider, bureau, regulator ------------------------------------------------------

    def approve_contract(self, contract_id: str) -> dict[str, Any]:
        return self._request("POST", f"/contracts/{_seg(contract_id)}/approve")

    def refuse_contract(self, contract_id: str, reason: str) -> dict[str, Any]:
        return self._request(
            "POST", f"/contracts/{_seg(contract_id)}/refuse", json={"reason": reason}
        )

    def suspend_contract(self, contract_id: str, reason: str) -> dict[str, Any]:
        return self._request(
            "POST", f"/contracts/{_seg(contract_id)}/suspend", json={"reason": reason}
        )

    def resume_contract(self, contract_id: str, reason: str) -> dict[str, Any]:
        """Regulator: lift a contract's suspension."""
        return self._request(
            "POST", f"/contracts/{_seg(contract_id)}/resume", json={"reason": reason}
        )

    def create_principal(
        self,
        name: str,
        role: str,
        license_no: str | None = None,
        public_key: str | Ed25519PublicKey | SM2PublicKey | None = None,
        license_valid_to: str | dt.datetime | None = None,
    ) -> dict[str, Any]:
        """Bureau: register a principal. The answer holds its token, shown only this once."""
        body: dict[str, Any] = {"name": name, "role": role}
        if license_no is not None:
            body["license_no"] = license_no
        if license_valid_to is not None:
            body["license_valid_to"] = _instant(license_valid_to)
        if public_key is not None:
            body["public_key"] = _public_key_b64(public_key)
        return self._request("POST", "/principals", json=body)

    def principal(self, principal_id: str) -> dict[str, Any]:
        """Bureau, regulator, or the principal itself: status, licence, history, key id."""
        return self._request("GET", f"/principals/{_seg(principal_id)}")

    def update_license(
        self,
        principal_id: str,
        license_no: str | None = None,
        license_valid_to: str | dt.datetime | None = None,
    ) -> dict[str, Any]:
        """Bureau: record a renewed licence (`license_valid_to=None`: no end date)."""
        body = {
            "license_no": license_no,
            "license_valid_to": None if license_valid_to is None else _instant(license_valid_to),
        }
        return self._request("POST", f"/principals/{_seg(principal_id)}/license", json=body)

    def suspend_principal(self, principal_id: str, reason: str) -> dict[str, Any]:
        """Bureau, regulator: the principal is refused everywhere but `GET /v1/me`."""
        return self._request(
            "POST", f"/principals/{_seg(principal_id)}/suspend", json={"reason": reason}
        )

    def resume_principal(self, principal_id: str, reason: str) -> dict[str, Any]:
        return self._request(
            "POST", f"/principals/{_seg(principal_id)}/resume", json={"reason": reason}
        )

    def revoke_tokens(
        self, principal_id: str, reason: str, reissue: bool = False
    ) -> dict[str, Any]:
        """Bureau: every token of the principal stops working; with `reissue` the answer
        holds a new one, shown only this once."""
        return self._request(
            "POST",
            f"/principals/{_seg(principal_id)}/revoke-tokens",
            json={"reason": reason, "reissue": reissue},
        )

    def principal_keys(self, principal_id: str) -> list[dict[str, Any]]:
        """Every key the principal ever had, oldest first, with `valid_from`/`revoked_at`."""
        return self._listing(f"/principals/{_seg(principal_id)}/keys", "keys")

    def register_key(
        self,
        principal_id: str,
        public_key: str | Ed25519PublicKey | SM2PublicKey,
        reason: str | None = None,
    ) -> dict[str, Any]:
        """Bureau: make `public_key` the principal's current key (the previous one is revoked
        and kept). A principal rotates its own key with `rotate_key`."""
        body: dict[str, Any] = {"public_key": _public_key_b64(public_key)}
        if reason is not None:
            body["reason"] = reason
        return self._request("POST", f"/principals/{_seg(principal_id)}/keys", json=body)

    def publish_prices(self, schedule: Mapping[str, Any]) -> dict[str, Any]:
        return self._request("POST", "/price-schedules", json=schedule)

    def ingest(self, path: str | Path, meta: Mapping[str, Any]) -> dict[str, Any]:
        """Bureau: register a CSV or Parquet file as a dataset described by `meta`."""
        path = Path(path)
        with path.open("rb") as fh:
            return self._request(
                "POST",
                "/datasets",
                files={"file": (path.name, fh)},
                data={"meta": json.dumps(meta, ensure_ascii=False)},
            )

    def checkpoint(self) -> dict[str, Any]:
        """Regulator, bureau: the ledger's latest signed checkpoint."""
        return self._request("GET", "/ledger/checkpoint")

    def ledger_entries(self, start: int = 0, end: int | None = None) -> list[dict[str, Any]]:
        params = {"start": start, **({"end": end} if end is not None else {})}
        return self._listing("/ledger/entries", "entries", params=params)

    # -- demand lists and objections -------------------------------------------------------

    def raise_demand(
        self,
        title: str,
        description: str,
        purpose: str,
        dataset: str | None = None,
        columns: list[str] | None = None,
    ) -> dict[str, Any]:
        """Operator: ask for data the catalog lacks, or for more `columns` of a `dataset`."""
        body: dict[str, Any] = {"title": title, "description": description, "purpose": purpose}
        if dataset is not None:
            body["dataset"] = dataset
        if columns is not None:
            body["columns"] = list(columns)
        return self._request("POST", "/demands", json=body)

    def demands(self, status: str | None = None) -> list[dict[str, Any]]:
        """The demands visible to you, newest first."""
        return self._listing("/demands", "demands", params={"status": status} if status else None)

    def demand(self, demand_id: str) -> dict[str, Any]:
        return self._request("GET", f"/demands/{_seg(demand_id)}")

    def route_demand(
        self, demand_id: str, provider_id: str, note: str | None = None
    ) -> dict[str, Any]:
        """Bureau: send a demand to the department that could provide the data."""
        body = {"provider_id": provider_id, "note": note}
        return self._request("POST", f"/demands/{_seg(demand_id)}/route", json=body)

    def answer_demand(
        self,
        demand_id: str,
        status: Literal["planned", "refused", "published"],
        answer: str | None = None,
        answer_dataset: str | None = None,
    ) -> dict[str, Any]:
        """Its department, or the bureau: planned, refused (with the reason) or published
        (naming the dataset in `answer_dataset`)."""
        body = {"status": status, "answer": answer, "answer_dataset": answer_dataset}
        return self._request("POST", f"/demands/{_seg(demand_id)}/answer", json=body)

    def raise_objection(
        self,
        kind: Literal["quality", "refusal"],
        text: str,
        dataset: str | None = None,
        version: int | None = None,
        job_id: str | None = None,
    ) -> dict[str, Any]:
        """`quality`: about a `dataset`'s `version`; `refusal`: about your refused `job_id`."""
        body: dict[str, Any] = {"kind": kind, "text": text}
        for name, value in (("dataset", dataset), ("version", version), ("job_id", job_id)):
            if value is not None:
                body[name] = value
        return self._request("POST", "/objections", json=body)

    def objections(
        self, status: str | None = None, kind: str | None = None
    ) -> list[dict[str, Any]]:
        """The objections visible to you, newest first."""
        params = {k: v for k, v in (("status", status), ("kind", kind)) if v}
        return self._listing("/objections", "objections", params=params or None)

    def objection(self, objection_id: str) -> dict[str, Any]:
        return self._request("GET", f"/objections/{_seg(objection_id)}")

    def answer_objection(self, objection_id: str, answer: str) -> dict[str, Any]:
        """Its owner: the dataset's department (or the bureau), or the bureau for a refusal."""
        return self._request(
            "POST", f"/objections/{_seg(objection_id)}/answer", json={"answer": answer}
        )

    # -- data products --------------------------------------------------------------------

    def product_caps(self) -> list[dict[str, Any]]:
        """Every scenario's cap per call (public)."""
        return self._listing("/product-caps", "caps", auth=False)

    def set_product_cap(
        self, scenario: str, max_price: str, description: str | None = None
    ) -> dict[str, Any]:
        """Bureau: the most a product of `scenario` may charge per call (yuan as text)."""
        body = {"max_price": max_price, "description": description}
        return self._request("PUT", f"/product-caps/{_seg(scenario)}", json=body)

    def publish_product(
        self,
        name: str,
        scenario: str,
        description: str,
        contract_id: str,
        template_id: str,
        template_version: int,
        price: str,
        trial_price: str | None = None,
        trial_until: str | None = None,
    ) -> dict[str, Any]:
        """Operator: sell calls of an approved template version, at most the scenario's cap."""
        body: dict[str, Any] = {
            "name": name,
            "scenario": scenario,
            "description": description,
            "contract_id": contract_id,
            "template_id": template_id,
            "template_version": template_version,
            "price": price,
        }
        if trial_price is not None:
            body |= {"trial_price": trial_price, "trial_until": trial_until}
        return self._request("POST", "/products", json=body)

    def products(self) -> list[dict[str, Any]]:
        """Your products (all, for the bureau and the regulator), with calls and revenue."""
        return self._listing("/products", "products")

    def product(self, product_id: str) -> dict[str, Any]:
        return self._request("GET", f"/products/{_seg(product_id)}")

    def public_products(self) -> list[dict[str, Any]]:
        """The active products by scenario (public)."""
        return self._listing("/public/products", "scenarios", auth=False)

    def issue_product_key(self, product_id: str, customer: str) -> dict[str, Any]:
        """Operator: a key for one customer; `key` is in this answer only."""
        path = f"/products/{_seg(product_id)}/keys"
        return self._request("POST", path, json={"customer": customer})

    def product_keys(self, product_id: str) -> list[dict[str, Any]]:
        """Operator: the keys issued for a product (never the keys themselves)."""
        return self._listing(f"/products/{_seg(product_id)}/keys", "keys")

    def revoke_product_key(self, product_id: str, key_id: str) -> dict[str, Any]:
        path = f"/products/{_seg(product_id)}/keys/{_seg(key_id)}/revoke"
        return self._request("POST", path)

    def suspend_product(self, product_id: str, reason: str) -> dict[str, Any]:
        """Bureau or regulator: stop a product's calls, saying why."""
        path = f"/products/{_seg(product_id)}/suspend"
        return self._request("POST", path, json={"reason": reason})

    def resume_product(self, product_id: str, reason: str) -> dict[str, Any]:
        path = f"/products/{_seg(product_id)}/resume"
        return self._request("POST", path, json={"reason": reason})

    # -- analysis templates ---------------------------------------------------------------

    def submit_template(
        self,
        name: str,
        code: str,
        params_schema: Mapping[str, Any] | None = None,
        description: str | None = None,
    ) -> dict[str, Any]:
        """Operator: submit code and its parameters' schema for review by the departments
        whose data it reads; under a name used before, other code becomes the next version."""
        body: dict[str, Any] = {"name": name, "code": code}
        if params_schema is not None:
            body["params_schema"] = dict(params_schema)
        if description is not None:
            body["description"] = description
        return self._request("POST", "/templates", json=body)

    def templates(self, status: str | None = None, awaiting: bool = False) -> list[dict[str, Any]]:
        """The templates visible to you, newest first, without their code; `awaiting` (a
        department) those waiting for your review."""
        params: dict[str, str] = {}
        if status:
            params["status"] = status
        if awaiting:
            params["awaiting"] = "true"
        return self._listing("/templates", "templates", params=params or None)

    def template(self, template_id: str) -> dict[str, Any]:
        """A template with its versions: code, schema and each department's decision."""
        return self._request("GET", f"/templates/{_seg(template_id)}")

    def review_template(
        self,
        template_id: str,
        version: int,
        decision: Literal["approve", "refuse"],
        reason: str | None = None,
        conditions: str | None = None,
    ) -> dict[str, Any]:
        """A department whose data the version reads: approve or refuse (with the reason)."""
        body = {"decision": decision, "reason": reason, "conditions": conditions}
        path = f"/templates/{_seg(template_id)}/versions/{int(version)}/reviews"
        return self._request("POST", path, json=body)

    def withdraw_template(self, template_id: str, version: int) -> dict[str, Any]:
        path = f"/templates/{_seg(template_id)}/versions/{int(version)}/withdraw"
        return self._request("POST", path)

    def run_template(
        self,
        template_id: str,
        contract_id: str,
        params: Mapping[str, Any] | None = None,
        version: int | None = None,
        idempotency_key: str | None = None,
        wait: bool = False,
    ) -> Job:
        """Operator: run an approved template (`version`, else its latest approved one) with
        parameters its schema allows; a job like any other, with the template as its origin."""
        body: dict[str, Any] = {"contract_id": contract_id, "params": dict(params or {})}
        if version is not None:
            body["version"] = int(version)
        if idempotency_key is not None:
            body["idempotency_key"] = idempotency_key
        query = {"wait": "true"} if wait else None
        path = f"/templates/{_seg(template_id)}/runs"
        return Job.from_json(self._request("POST", path, json=body, params=query), self)

    # -- plumbing -------------------------------------------------------------------------

    def _check_bureau_signature(self, view: Mapping[str, Any], canonical: bytes) -> None:
        bureau_signature = (view.get("signatures") or {}).get("bureau")
        if not bureau_signature:
            return  # the service refuses the operator's signature before the bureau's
        try:
            verify(
                self.keys()["bureau"],
                canonical,
                bureau_signature,
                subject=f"contract {view.get('id')}",
            )
        except SignatureInvalid as exc:
            raise ContractMismatch(
                f"the bureau's signature on contract {view.get('id')} does not verify against "
                f"the service's bureau key ({exc}); do not sign, and report this to the "
                "bureau"
            ) from None

    def _request(
        self, method: str, path: str, *, auth: bool = True, **kwargs: Any
    ) -> dict[str, Any]:
        # Every route of the API answers a JSON object.
        return cast(dict[str, Any], self._send(method, path, auth=auth, **kwargs).json())

    def _listing(self, path: str, key: str, **kwargs: Any) -> list[dict[str, Any]]:
        """The list of objects a GET answers under `key`, e.g. `{"datasets": [...]}`."""
        items: list[dict[str, Any]] = self._request("GET", path, **kwargs)[key]
        return items

    def _send(self, method: str, path: str, *, auth: bool = True, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self._token}"} if auth and self._token else {}
        response = self._http.request(
            method, f"{self.base_url}/v1{path}", headers=headers, **kwargs
        )
        if not response.is_success:
            raise api_error(response)
        return response


class ProductClient:
    """A customer of a data product: calls it with the key its operator issued
    (`X-Product-Key`), never a principal's token."""

    def __init__(
        self,
        base_url: str,
        key: str,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        http_client: httpx.Client | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = key
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(timeout=timeout)

    def __repr__(self) -> str:
        return f"ProductClient({self.base_url!r})"

    def __enter__(self) -> ProductClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def call(
        self,
        product_id: str,
        params: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """One call, answered when done: `{id, status, outputs, price, charged}`. A refused
        call raises SandboxAPIError with the job's code (its id in `details["job_id"]`)."""
        body: dict[str, Any] = {"params": dict(params or {})}
        if idempotency_key is not None:
            body["idempotency_key"] = idempotency_key
        return self._send("POST", f"/products/{_seg(product_id)}/calls", json=body)

    def get_call(self, product_id: str, call_id: str) -> dict[str, Any]:
        return self._send("GET", f"/products/{_seg(product_id)}/calls/{_seg(call_id)}")

    def output(self, call: Mapping[str, Any], name: str) -> pa.Table:
        """A released table output of a call as a pyarrow Table (None in suppressed cells)."""
        return released_table(call["outputs"][name])

    def _send(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self._http.request(
            method,
            f"{self.base_url}/v1{path}",
            headers={"X-Product-Key": self._key},
            **kwargs,
        )
        if not response.is_success:
            raise api_error(response)
        return cast(dict[str, Any], response.json())


def api_error(response: httpx.Response) -> SandboxAPIError:
    """The SandboxAPIError for a non-2xx response, from its JSON envelope when it has one."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("code"), str):
        details = {k: v for k, v in body.items() if k not in ("ok", "status", "code", "error")}
        status = body.get("status")
        return error_for(
            status if isinstance(status, int) else response.status_code,
            body["code"],
            str(body.get("error", "")),
            details,
        )
    # Not the service's envelope, e.g. a proxy in front of it.
    snippet = response.text[:200].strip() or response.reason_phrase
    return SandboxAPIError(
        response.status_code,
        "http_error",
        f"{response.request.method} {response.request.url} answered "
        f"without the sandbox's error envelope: {snippet}",
    )


def _canonical_of(view: Mapping[str, Any]) -> bytes:
    """The contract's canonical bytes, after checking they encode the document shown.

    Canonical bytes are a one-line domain prefix and the document's RFC 8785 JSON, which
    never contains a raw newline; so the JSON starts after the first newline.
    """
    contract_id = view.get("id")
    try:
        canonical = base64.b64decode(view["canonical"], validate=True)
        _, _, document_json = canonical.partition(b"\n")
        signed_document = json.loads(document_json)
    except (KeyError, TypeError, binascii.Error, ValueError):
        raise ContractMismatch(
            f"the service sent no readable canonical bytes for contract {contract_id}; do not "
            "sign, and report this to the bureau"
        ) from None
    if signed_document != view.get("document"):
        raise ContractMismatch(
            f"the canonical bytes of contract {contract_id} do not encode the document the "
            "service shows; do not sign, and report this to the bureau"
        )
    return canonical


def _terms(
    datasets: Mapping[str, Mapping[str, list[str]]],
    purpose: str,
    purpose_class: str,
    valid_from: str | dt.datetime,
    valid_to: str | dt.datetime,
    quotas: Mapping[str, Any] | None,
    spend_cap: str | Decimal | int | None,
) -> dict[str, Any]:
    """The body of an application, a draft edit or an amendment."""
    body: dict[str, Any] = {
        "datasets": datasets,
        "purpose": purpose,
        "purpose_class": purpose_class,
        "valid_from": _instant(valid_from),
        "valid_to": _instant(valid_to),
    }
    if quotas is not None:
        body["quotas"] = quotas
    if spend_cap is not None:
        body["spend_cap"] = _money(spend_cap, "spend_cap")
    return body


def _seg(value: str) -> str:
    """One URL path segment; ids and names may hold any character."""
    return _quote(value, safe="")


def _instant(value: str | dt.datetime) -> str:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError(
                f"{value!r} has no time zone; pass an aware datetime "
                "(e.g. tzinfo=datetime.timezone.utc) or an ISO 8601 string"
            )
        return value.isoformat()
    return value


def _money(value: str | Decimal | int, what: str) -> str:
    # A float cannot hold most yuan amounts exactly (0.10 is not 0.1 in binary).
    if isinstance(value, float) or isinstance(value, bool):
        raise TypeError(
            f"{what} must be a decimal string, Decimal or int of yuan, not "
            f'{type(value).__name__}; e.g. "1000.00" or Decimal("1000.00")'
        )
    return str(value)


def _public_key_b64(key: str | Ed25519PublicKey | SM2PublicKey) -> str:
    if isinstance(key, Ed25519PrivateKey | SM2PrivateKey):
        raise TypeError(
            "pass the public key (private_key.public_key()), never the private "
            "key, when registering a principal"
        )
    if isinstance(key, Ed25519PublicKey | SM2PublicKey):
        return base64.b64encode(raw_public_bytes(key)).decode("ascii")
    return key
