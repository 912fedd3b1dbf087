import hashlib
import json

import pytest

from operators.errors import SignatureInvalid, SubmissionInvalid
from operators.keys import generate_private_key, public_key_b64, sign, verify
from operators.submission import SUBMISSION_DOMAIN, submission_bytes

CODE = 'res = table("人口").group_by("区县").agg(n=count()).collect()\nemit("n", res)\n'
PARAMS = {"min_age": 65, "districts": ["城关区", "湖滨区"], "opts": {"a": 1, "b": [True, None]}}


def _bytes(**changes: object) -> bytes:
    args: dict = {
        "contract_id": "c-12",
        "code": CODE,
        "params": PARAMS,
        "idempotency_key": "k-1",
        "signed_at": "2026-11-25T08:00:00Z",
    }
    args.update(changes)
    return submission_bytes(**args)


def test_layout_is_domain_prefix_then_canonical_json() -> None:
    data = _bytes()
    assert SUBMISSION_DOMAIN == b"public-data-sandbox/job-submission/v1\n"
    assert data.startswith(SUBMISSION_DOMAIN)
    body = data[len(SUBMISSION_DOMAIN) :]
    assert json.loads(body) == {
        "contract_id": "c-12",
        "code_sha256": hashlib.sha256(CODE.encode("utf-8")).hexdigest(),
        "params": PARAMS,
        "idempotency_key": "k-1",
        "signed_at": "2026-11-25T08:00:00Z",
    }
    # RFC 8785: sorted keys, no whitespace, UTF-8 rather than \u escapes.
    assert body.startswith(b'{"code_sha256":"')
    assert b" " not in body
    assert "城关区".encode() in body


def test_stable_across_calls() -> None:
    assert _bytes() == _bytes()


def test_params_key_order_does_not_matter() -> None:
    reordered = {
        "opts": {"b": [True, None], "a": 1},
        "districts": ["城关区", "湖滨区"],
        "min_age": 65,
    }
    assert _bytes(params=reordered) == _bytes()


def test_null_idempotency_key() -> None:
    assert b'"idempotency_key":null' in _bytes(idempotency_key=None)


@pytest.mark.parametrize(
    "change",
    [
        {"contract_id": "c-13"},
        {"code": CODE + " "},
        {"params": {**PARAMS, "min_age": 66}},
        {"params": {**PARAMS, "districts": ["湖滨区", "城关区"]}},
        {"params": {}},
        {"idempotency_key": "k-2"},
        {"idempotency_key": None},
        {"signed_at": "2026-11-25T08:00:01Z"},
    ],
)
def test_any_field_change_changes_the_bytes(change: dict) -> None:
    assert _bytes(**change) != _bytes()


def test_signature_over_submission_verifies_and_detects_tampering() -> None:
    key = generate_private_key()
    signature = sign(key, _bytes())
    verify(public_key_b64(key), _bytes(), signature)
    tampered = CODE.replace("人口", "企业")
    assert tampered != CODE
    with pytest.raises(SignatureInvalid, match="does not verify"):
        verify(public_key_b64(key), _bytes(code=tampered), signature)


@pytest.mark.parametrize(
    "params",
    [{"big": 2**60}, {"x": float("nan")}, {"when": object()}, {"nested": {1: "non-string key"}}],
)
def test_params_that_are_not_canonical_json_are_refused(params: dict) -> None:
    with pytest.raises(SubmissionInvalid) as info:
        _bytes(params=params)
    assert info.value.code == "submission_invalid"
    assert "string" in str(info.value)


def test_sign_submission_gives_the_body_fields_and_a_verifiable_signature() -> None:
    from operators.submission import parse_signed_at, sign_submission

    key = generate_private_key()
    fields = sign_submission(key, "c-12", CODE, PARAMS, "k-1")
    assert set(fields) == {"signature", "signed_at"}
    assert parse_signed_at(fields["signed_at"]).tzinfo is not None
    data = submission_bytes("c-12", CODE, PARAMS, "k-1", fields["signed_at"])
    verify(public_key_b64(key), data, fields["signature"])
    with pytest.raises(SubmissionInvalid, match="time zone"):
        parse_signed_at("2026-11-25T08:00:00")
