"""The sm crypto suite against the standards' published vectors, not only round trips.

SM3: GB/T 32905-2016 Appendix A (examples 1 and 2). SM2: GB/T 32918.5-2017 (GM/T 0003.5-2012)
Annex A, signature with the recommended curve, user identity 1234567812345678 and message
"message digest". Tongsuo does not let a caller fix the nonce k, so the example is checked
as the standard's own published signature verifying, the published public key following
from the published private key, and any other message, key or signature failing.
"""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from operators.errors import InvalidPrivateKey, InvalidPublicKey, SignatureInvalid
from operators.keys import (
    generate_key,
    parse_public_key,
    private_key_from_pem,
    private_key_to_pem,
    public_key_b64,
    sign,
    suite_of,
    verify,
)
from operators.sm2 import InvalidSM2Signature, SM2PrivateKey, SM2PublicKey
from operators.submission import sign_submission, submission_bytes
from operators.suite import Suite, digest, parse_suite, sm3
from operators.tokens import hash_token, token_matches

SM3_ABC = "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
SM3_ABCD_16 = "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"

D = int("3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8", 16)
PUBLIC = bytes.fromhex(
    "04"
    "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020"
    "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13"
)
SIGNATURE = bytes.fromhex(
    "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3"
    "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA"
)
MESSAGE = b"message digest"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# --- SM3 (GB/T 32905) --------------------------------------------------------------------------


def test_sm3_of_abc_is_the_standards_example_1() -> None:
    assert sm3(b"abc").hex() == SM3_ABC
    assert digest(Suite.sm, b"abc").hex() == SM3_ABC


def test_sm3_of_64_bytes_is_the_standards_example_2() -> None:
    assert sm3(b"abcd" * 16).hex() == SM3_ABCD_16


def test_the_international_suite_still_hashes_with_sha256() -> None:
    assert digest(Suite.international, b"abc").hex() == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


# --- SM2 (GB/T 32918.5 Annex A) -----------------------------------------------------------------


def test_the_published_private_key_gives_the_published_public_key() -> None:
    assert SM2PrivateKey.from_scalar(D).public_key().raw() == PUBLIC


def test_the_standards_signature_verifies_with_the_default_identity() -> None:
    SM2PublicKey.from_raw(PUBLIC).verify(SIGNATURE, MESSAGE)
    verify(b64(PUBLIC), MESSAGE, b64(SIGNATURE))


@pytest.mark.parametrize(
    ("message", "signature"),
    [
        (b"message digesT", SIGNATURE),
        (MESSAGE, SIGNATURE[:31] + bytes([SIGNATURE[31] ^ 1]) + SIGNATURE[32:]),
        (MESSAGE, SIGNATURE[:63] + bytes([SIGNATURE[63] ^ 1])),
        (MESSAGE, SIGNATURE[32:] + SIGNATURE[:32]),
        (MESSAGE, bytes(64)),
    ],
)
def test_anything_but_the_standards_message_and_signature_fails(
    message: bytes, signature: bytes
) -> None:
    with pytest.raises(InvalidSM2Signature):
        SM2PublicKey.from_raw(PUBLIC).verify(signature, message)


def test_the_standards_signature_fails_under_another_key() -> None:
    other = SM2PrivateKey.generate().public_key()
    with pytest.raises(InvalidSM2Signature):
        other.verify(SIGNATURE, MESSAGE)


def test_a_signature_made_with_the_published_key_verifies_under_the_published_public_key() -> None:
    signature = SM2PrivateKey.from_scalar(D).sign(MESSAGE)
    assert len(signature) == 64
    SM2PublicKey.from_raw(PUBLIC).verify(signature, MESSAGE)


def test_a_point_off_the_curve_is_no_public_key() -> None:
    with pytest.raises(InvalidPublicKey, match="SM2 curve"):
        parse_public_key(b64(b"\x04" + bytes(range(64))))


# --- keys as the API carries them -----------------------------------------------------------


def test_an_sm2_key_round_trips_through_pem_and_base64() -> None:
    key = generate_key(Suite.sm)
    again = private_key_from_pem(private_key_to_pem(key))
    assert suite_of(again) is Suite.sm
    assert public_key_b64(again) == public_key_b64(key)
    assert len(base64.b64decode(public_key_b64(key))) == 65
    verify(public_key_b64(key), b"data", sign(again, b"data"))


def test_a_key_of_the_other_suite_is_refused_with_the_way_out() -> None:
    ed = b64(Ed25519PrivateKey.generate().public_key().public_bytes_raw())
    with pytest.raises(InvalidPublicKey, match="keys generate --suite sm"):
        parse_public_key(ed, Suite.sm)
    with pytest.raises(InvalidPublicKey, match="--suite international"):
        parse_public_key(public_key_b64(generate_key(Suite.sm)), Suite.international)


def test_an_sm2_signature_of_other_bytes_is_refused_naming_sm2() -> None:
    key = generate_key(Suite.sm)
    with pytest.raises(SignatureInvalid, match="SM2 signature over"):
        verify(public_key_b64(key), b"one", sign(key, b"other"))


def test_a_pem_that_is_not_a_key_is_refused() -> None:
    with pytest.raises(InvalidPrivateKey):
        private_key_from_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")


def test_an_unknown_suite_name_says_which_exist() -> None:
    with pytest.raises(ValueError, match="international, sm"):
        parse_suite("gost")


# --- token hashes and submissions ---------------------------------------------------------------


def test_token_hashes_are_sm3_in_the_sm_suite() -> None:
    assert hash_token("abc", Suite.sm) == SM3_ABC
    assert token_matches("abc", SM3_ABC, Suite.sm)
    assert not token_matches("abc", SM3_ABC)


def test_a_submission_signed_with_sm2_commits_to_the_codes_sm3() -> None:
    key = generate_key(Suite.sm)
    signed = sign_submission(key, "c-1", "abc", {}, None, "2026-01-01T00:00:00Z")
    data = submission_bytes("c-1", "abc", {}, None, "2026-01-01T00:00:00Z", Suite.sm)
    assert f'"code_sm3":"{SM3_ABC}"'.encode() in data
    verify(public_key_b64(key), data, signed["signature"])


def test_the_international_submission_bytes_are_unchanged() -> None:
    data = submission_bytes("c-1", "abc", {}, None, "2026-01-01T00:00:00Z")
    assert b'"code_sha256":"ba7816bf' in data
