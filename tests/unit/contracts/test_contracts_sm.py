"""Contracts of an instance of the sm suite: the suite is part of the signed document, both
parties sign with SM2, and a key of the other suite is refused."""

import base64
import dataclasses
from datetime import UTC, datetime

import pytest

from contracts.canonical import canonical_bytes
from contracts.document import ContractDocument
from contracts.errors import ContractInvalid, ContractSignatureError
from contracts.signing import sign_contract, verify_contract
from contracts.verify import verify_export
from operators.errors import InvalidPublicKey
from operators.keys import generate_key, public_key_b64
from operators.suite import Suite

BUREAU = generate_key(Suite.sm)
OPERATOR = generate_key(Suite.sm)
INTERNATIONAL = ContractDocument(
    id="c-12",
    version=1,
    operator_id="op-7",
    datasets={"人口": {"区县": ("group_by", "filter")}},
    purpose="养老规划",
    purpose_class="commercial",
    valid_from=datetime(2026, 3, 1, tzinfo=UTC),
    valid_to=datetime(2027, 3, 1, tzinfo=UTC),
    quotas={},
    spend_cap=None,
    issued_at=datetime(2026, 2, 20, tzinfo=UTC),
)
SM = dataclasses.replace(INTERNATIONAL, crypto_suite="sm")


def export(doc: ContractDocument, **signatures: str) -> dict[str, object]:
    return {
        "document": doc.to_json(),
        "canonical": base64.b64encode(canonical_bytes(doc)).decode(),
        "signatures": signatures,
    }


def test_the_suite_is_in_the_signed_bytes_only_when_it_is_not_the_default() -> None:
    assert b'"crypto_suite":"sm"' in canonical_bytes(SM)
    assert b"crypto_suite" not in canonical_bytes(INTERNATIONAL)
    assert ContractDocument.from_json(SM.to_json()) == SM


def test_an_unknown_suite_is_refused() -> None:
    with pytest.raises(ContractInvalid, match="crypto_suite must be one of"):
        dataclasses.replace(INTERNATIONAL, crypto_suite="rsa")


def test_an_sm_contract_signed_by_both_parties_verifies_offline() -> None:
    check = verify_export(
        export(SM, bureau=sign_contract(BUREAU, SM), operator=sign_contract(OPERATOR, SM)),
        public_key_b64(BUREAU),
        public_key_b64(OPERATOR),
    )
    assert check.ok, check.problems
    assert "operator signature verifies" in check.checked


def test_an_sm2_signature_over_the_document_without_its_suite_is_refused() -> None:
    # Both the key's suite and the bytes must agree with the document.
    with pytest.raises(InvalidPublicKey, match="international crypto suite"):
        verify_contract(public_key_b64(BUREAU), INTERNATIONAL, sign_contract(BUREAU, SM))


def test_an_ed25519_key_for_an_sm_contract_is_refused_with_the_way_out() -> None:
    ed = generate_key(Suite.international)
    check = verify_export(export(SM, bureau=sign_contract(ed, SM)), public_key_b64(ed))
    assert not check.ok
    assert "keys generate --suite sm" in check.problems[0]


def test_a_tampered_sm_contract_is_caught() -> None:
    with pytest.raises(ContractSignatureError):
        verify_contract(
            public_key_b64(BUREAU),
            dataclasses.replace(SM, purpose="别的用途"),
            sign_contract(BUREAU, SM),
        )
