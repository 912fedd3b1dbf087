"""Submitting a job over HTTP and waiting for its released result, timed from the client."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from benchmarks.instance import HTTP_TIMEOUT, auth
from benchmarks.queries import OUTPUT
from operators.submission import sign_submission
from sandbox.language.api import Expr, Grouped, Table, namespace

# Refusals that mean "the language or the engine cannot express this (yet)".
PLAN_CODES = frozenset({"code_rejected", "plan_invalid"})


def missing_features(needs: tuple[str, ...]) -> tuple[str, ...]:
    """Names the job language does not offer: neither a global of job code nor a method."""
    offered = set(namespace(_NoChannel(), {})) | {
        n for cls in (Table, Grouped, Expr) for n in dir(cls) if not n.startswith("_")
    }
    return tuple(n for n in needs if n not in offered)


class _NoChannel:
    def collect(self, plan: Any) -> dict[str, Any]:
        raise AssertionError("only the language's names are looked at")

    def emit(self, name: str, value: Any) -> None:
        raise AssertionError("only the language's names are looked at")


@dataclass(frozen=True)
class Outcome:
    """One submission: how long it took end to end, and what came back."""

    seconds: float
    status: str  # the job's status, or "rejected" for a refused submission
    code: str | None = None  # error code when not succeeded
    message: str | None = None
    output: dict[str, Any] | None = None
    compute_seconds: float | None = None  # the job's own wall time in its jail, as metered

    @property
    def ok(self) -> bool:
        return self.status == "succeeded" and self.output is not None

    def unsupported(self, needs: tuple[str, ...]) -> bool:
        """A refusal because a feature the query needs does not exist yet: the language lacks
        one of its names, or the job was refused with a plan error."""
        if self.ok or not needs:
            return False
        return bool(missing_features(needs)) or self.code in PLAN_CODES

    def explain(self) -> str:
        return f"{self.status} ({self.code}): {(self.message or '').strip()[:160]}"


class JobTarget(Protocol):
    """Where an operator submits: an in-process instance or a separately served one."""

    @property
    def url(self) -> str: ...
    @property
    def operator_token(self) -> str: ...
    @property
    def operator_key(self) -> Ed25519PrivateKey: ...
    @property
    def contract_id(self) -> str: ...


class JobClient:
    """An operator's HTTP client with its own connection, as one of several concurrent users."""

    def __init__(self, instance: JobTarget) -> None:
        self._instance = instance
        self._http = httpx.Client(
            base_url=instance.url, timeout=HTTP_TIMEOUT, headers=auth(instance.operator_token)
        )

    def __enter__(self) -> JobClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def submit(self, code: str) -> Outcome:
        """POST /v1/jobs?wait=true, signed like the SDK does; returns when the job finished."""
        inst = self._instance
        started = time.perf_counter()
        signed = sign_submission(inst.operator_key, inst.contract_id, code)
        try:
            r = self._http.post(
                "/v1/jobs",
                params={"wait": "true"},
                json={"contract_id": inst.contract_id, "code": code, **signed},
            )
        except httpx.HTTPError as exc:
            return Outcome(time.perf_counter() - started, "unreachable", "transport", repr(exc))
        return _outcome(r, time.perf_counter() - started)


def _outcome(r: httpx.Response, seconds: float) -> Outcome:
    try:
        body = r.json()
    except ValueError:
        return Outcome(seconds, "rejected", f"http_{r.status_code}", r.text[:200])
    if r.status_code != 201:
        return Outcome(seconds, "rejected", body.get("code"), body.get("error"))
    error = body.get("error") or {}
    usage = body.get("usage") or {}
    compute = usage.get("compute_seconds")
    return Outcome(
        seconds,
        body["status"],
        error.get("code"),
        error.get("message"),
        (body.get("outputs") or {}).get(OUTPUT),
        float(compute) if compute is not None else None,
    )
