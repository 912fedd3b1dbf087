"""The canonical bytes of a job submission, which an operator signs with its key.

The code is represented by its SHA-256 (``code_sha256``), or by its SM3 (``code_sm3``) when
signed with an SM2 key of the ``sm`` suite, so the signed message stays small; the domain
prefix keeps a submission signature from ever being valid as any other kind of signature.
The signing time is part of the bytes, so a signed submission cannot be replayed later.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import rfc8785

from operators.errors import SubmissionInvalid
from operators.keys import PrivateKey, sign, suite_of
from operators.suite import DEFAULT_SUITE, Suite, digest

SUBMISSION_DOMAIN = b"public-data-sandbox/job-submission/v1\n"


def submission_bytes(
    contract_id: str,
    code: str,
    params: Mapping[str, Any],
    idempotency_key: str | None,
    signed_at: str,
    suite: Suite = DEFAULT_SUITE,
) -> bytes:
    code_field = "code_sha256" if suite is Suite.international else "code_sm3"
    body = {
        "contract_id": contract_id,
        code_field: digest(suite, code.encode("utf-8")).hex(),
        "params": _plain_json(params, "params"),
        "idempotency_key": idempotency_key,
        "signed_at": signed_at,
    }
    try:
        return SUBMISSION_DOMAIN + rfc8785.dumps(body)
    except rfc8785.CanonicalizationError as exc:
        raise SubmissionInvalid(
            f"params cannot be put in canonical JSON form ({exc}); use strings, booleans, "
            "null, lists, objects with string keys, integers within ±2**53 and finite "
            "floats (send larger or exact numbers as strings)"
        ) from exc


def _plain_json(value: Any, where: str) -> Any:
    """Turn any Mapping/Sequence nesting into the dict/list shapes rfc8785 serializes."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise SubmissionInvalid(
                    f"{where} has a key of type {type(key).__name__}; object keys must be strings"
                )
            out[key] = _plain_json(item, f"{where}.{key}")
        return out
    if isinstance(value, (list, tuple)):
        return [_plain_json(item, f"{where}[{i}]") for i, item in enumerate(value)]
    return value


def now_text() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def sign_submission(
    private_key: PrivateKey,
    contract_id: str,
    code: str,
    params: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
    signed_at: str | None = None,
) -> dict[str, str]:
    """The `signature` and `signed_at` fields of a signed job submission (signed now)."""
    at = signed_at or now_text()
    data = submission_bytes(
        contract_id, code, params or {}, idempotency_key, at, suite_of(private_key)
    )
    return {"signature": sign(private_key, data), "signed_at": at}


def parse_signed_at(value: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        moment = None
    if moment is None or moment.tzinfo is None:
        raise SubmissionInvalid(
            f"signed_at must be an ISO 8601 time with a time zone, e.g. {now_text()!r}"
        )
    return moment
