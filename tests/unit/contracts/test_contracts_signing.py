import base64
import dataclasses
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from contracts.canonical import canonical_bytes
from contracts.document import ContractDocument
from contracts.errors import ContractSignatureError
from contracts.signing import sign_contract, verify_contract
from operators.errors import InvalidPublicKey
from operators.keys import generate_private_key, public_key_b64, sign, verify
from operators.submission import SUBMISSION_DOMAIN

BUREAU = generate_private_key()
OPERATOR = generate_private_key()
DOC = ContractDocument(
    id="c-12",
    version=1,
    operator_id="op-7",
    datasets={"人口": {"区县": ("group_by", "filter")}},
    purpose="养老规划",
    purpose_class="commercial",
    valid_from=datetime(2026, 3, 1, tzinfo=UTC),
    valid_to=datetime(2027, 3, 1, tzinfo=UTC),
    quotas={"jobs_per_day": 10},
    spend_cap=Decimal("100.00"),
    issued_at=datetime(2026, 2, 20, tzinfo=UTC),
)


@pytest.mark.parametrize("key", [BUREAU, OPERATOR], ids=["bureau", "operator"])
def test_signature_verifies(key) -> None:
    verify_contract(public_key_b64(key), DOC, sign_contract(key, DOC))


def test_signature_is_over_the_canonical_bytes() -> None:
    signature = sign_contract(BUREAU, DOC)
    verify(public_key_b64(BUREAU), canonical_bytes(DOC), signature)
    # An operator signing the bytes GET /v1/contracts/{id} hands out produces a valid signature.
    verify_contract(public_key_b64(OPERATOR), DOC, sign(OPERATOR, canonical_bytes(DOC)))


@pytest.mark.parametrize(
    "change",
    [
        {"spend_cap": Decimal("100.01")},
        {"datasets": {"人口": {"区县": ("group_by", "filter", "join")}}},
        {"version": 2},
    ],
)
def test_tampered_document_is_detected(change: dict) -> None:
    signature = sign_contract(BUREAU, DOC)
    with pytest.raises(ContractSignatureError) as info:
        verify_contract(public_key_b64(BUREAU), dataclasses.replace(DOC, **change), signature)
    assert info.value.code == "contract_signature"
    assert "canonical bytes of contract c-12" in str(info.value)
    assert "GET /v1/contracts/c-12" in str(info.value)


def test_signature_by_the_other_party_does_not_count() -> None:
    with pytest.raises(ContractSignatureError, match="does not verify"):
        verify_contract(public_key_b64(BUREAU), DOC, sign_contract(OPERATOR, DOC))


def test_signature_over_bytes_without_domain_prefix_is_refused() -> None:
    body_only = canonical_bytes(DOC).split(b"\n", 1)[1]
    with pytest.raises(ContractSignatureError):
        verify_contract(public_key_b64(OPERATOR), DOC, sign(OPERATOR, body_only))


def test_submission_signature_is_not_a_contract_signature() -> None:
    assert not canonical_bytes(DOC).startswith(SUBMISSION_DOMAIN)
    forged = sign(OPERATOR, SUBMISSION_DOMAIN + canonical_bytes(DOC))
    with pytest.raises(ContractSignatureError):
        verify_contract(public_key_b64(OPERATOR), DOC, forged)


@pytest.mark.parametrize("bad", ["", "!!!", base64.b64encode(b"\x00" * 32).decode()])
def test_malformed_signature(bad: str) -> None:
    with pytest.raises(ContractSignatureError, match="64-byte Ed25519 signature"):
        verify_contract(public_key_b64(OPERATOR), DOC, bad)


def test_malformed_public_key_is_a_key_error() -> None:
    with pytest.raises(InvalidPublicKey):
        verify_contract("not-a-key", DOC, sign_contract(OPERATOR, DOC))
