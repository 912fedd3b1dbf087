import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1
from cryptography.hazmat.primitives.asymmetric.ec import generate_private_key as ec_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from operators.errors import InvalidPrivateKey, InvalidPublicKey, SignatureInvalid
from operators.keys import (
    generate_private_key,
    parse_public_key,
    private_key_from_pem,
    private_key_to_pem,
    public_key_b64,
    sign,
    verify,
)

KEY = generate_private_key()
PUB = public_key_b64(KEY)


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def test_public_key_is_base64_of_32_raw_bytes() -> None:
    raw = base64.b64decode(PUB, validate=True)
    assert len(raw) == 32
    assert raw == _raw_public(KEY.public_key())


def test_parse_public_key_round_trip() -> None:
    assert _raw_public(parse_public_key(PUB)) == base64.b64decode(PUB)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "not base64!",
        base64.b64encode(b"\x01" * 31).decode(),
        base64.b64encode(b"\x01" * 33).decode(),
        PUB[:-4],
        "公钥",
        bytes(32).hex(),  # hex, not base64: decodes to 48 bytes
    ],
    # Named, not shown: the truncated key is new in each process, and every worker of the
    # run must collect the same tests.
    ids=["empty", "not-base64", "31-bytes", "33-bytes", "truncated", "cjk", "hex"],
)
def test_parse_public_key_rejects_malformed(bad: str) -> None:
    with pytest.raises(InvalidPublicKey, match="base64 of the 32 raw bytes") as info:
        parse_public_key(bad)
    assert info.value.code == "invalid_public_key"


def test_parse_public_key_rejects_pem() -> None:
    pem = KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(InvalidPublicKey, match="not PEM"):
        parse_public_key(pem.decode())


def test_private_key_pem_round_trip() -> None:
    pem = private_key_to_pem(KEY)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    again = private_key_from_pem(pem)
    assert public_key_b64(again) == PUB
    verify(PUB, b"x", sign(again, b"x"))


@pytest.mark.parametrize(
    "data", [b"", b"garbage", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"]
)
def test_private_key_from_pem_rejects_garbage(data: bytes) -> None:
    with pytest.raises(InvalidPrivateKey, match="PEM private key"):
        private_key_from_pem(data)


def test_private_key_from_pem_rejects_other_algorithms() -> None:
    pem = ec_key(SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(InvalidPrivateKey, match="not an Ed25519 private key"):
        private_key_from_pem(pem)


def test_private_key_from_pem_rejects_encrypted_key() -> None:
    pem = KEY.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    with pytest.raises(InvalidPrivateKey, match="decrypt"):
        private_key_from_pem(pem)


def test_sign_then_verify() -> None:
    signature = sign(KEY, "城关区".encode())
    assert len(base64.b64decode(signature)) == 64
    verify(PUB, "城关区".encode(), signature)


def test_verify_rejects_tampered_data() -> None:
    signature = sign(KEY, b"payload")
    with pytest.raises(SignatureInvalid, match="does not verify") as info:
        verify(PUB, b"payload!", signature, subject="the test payload")
    assert "the test payload" in str(info.value)
    assert "private key that belongs to this public key" in str(info.value)
    assert info.value.code == "signature_invalid"


def test_verify_rejects_other_key() -> None:
    signature = sign(generate_private_key(), b"payload")
    with pytest.raises(SignatureInvalid, match="does not verify"):
        verify(PUB, b"payload", signature)


def test_verify_rejects_flipped_signature_bit() -> None:
    raw = bytearray(base64.b64decode(sign(KEY, b"payload")))
    raw[10] ^= 1
    with pytest.raises(SignatureInvalid):
        verify(PUB, b"payload", base64.b64encode(bytes(raw)).decode())


@pytest.mark.parametrize(
    ("bad", "found"),
    [
        ("%%%", "not valid base64"),
        ("签名", "not valid base64"),
        (base64.b64encode(b"\x00" * 63).decode(), "got 63 bytes"),
        (base64.b64encode(b"\x00" * 65).decode(), "got 65 bytes"),
        ("", "got 0 bytes"),
    ],
)
def test_verify_rejects_malformed_signature(bad: str, found: str) -> None:
    with pytest.raises(SignatureInvalid, match="64-byte Ed25519 signature") as info:
        verify(PUB, b"payload", bad)
    assert found in str(info.value)


def test_verify_with_malformed_public_key_blames_the_key() -> None:
    with pytest.raises(InvalidPublicKey):
        verify("abc", b"payload", sign(KEY, b"payload"))
