"""The canonical bytes of a job submission, which an operator signs with its Ed25519 key.

The code is represented by its SHA-256 so the signed message stays small; the domain
prefix keeps a submission signature from ever being valid as any other kind of signature.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import rfc8785

from operators.errors import SubmissionInvalid

SUBMISSION_DOMAIN = b"public-data-sandbox/job-submission/v1\n"


def submission_bytes(
    contract_id: str,
    code: str,
    params: Mapping[str, Any],
    idempotency_key: str | None,
) -> bytes:
    body = {
        "contract_id": contract_id,
        "code_sha256": hashlib.sha256(code.encode("utf-8")).hexdigest(),
        "params": _plain_json(params, "params"),
        "idempotency_key": idempotency_key,
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
                    f"{where} has a key of type {type(key).__name__}; "
                    "object keys must be strings"
                )
            out[key] = _plain_json(item, f"{where}.{key}")
        return out
    if isinstance(value, (list, tuple)):
        return [_plain_json(item, f"{where}[{i}]") for i, item in enumerate(value)]
    return value
