"""Ed25519 keys and signatures as they travel over the API.

Public keys and signatures are exchanged as standard base64 of their raw bytes (32 and 64
bytes), private keys are kept as unencrypted PKCS#8 PEM files.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from operators.errors import InvalidPrivateKey, InvalidPublicKey, SignatureInvalid

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64


def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def public_key_b64(private: Ed25519PrivateKey) -> str:
    """Base64 of the 32 raw public key bytes (the form ``POST /v1/principals`` accepts)."""
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return base64.b64encode(raw).decode("ascii")


def parse_public_key(b64: str) -> Ed25519PublicKey:
    raw = strict_b64decode(b64)
    if raw is None or len(raw) != PUBLIC_KEY_BYTES:
        found = "text that is not valid base64" if raw is None else f"{len(raw)} bytes"
        raise InvalidPublicKey(
            f"public key must be base64 of the {PUBLIC_KEY_BYTES} raw bytes of an Ed25519 "
            f"public key, got {found}; export it with "
            "public_bytes(Encoding.Raw, PublicFormat.Raw) and base64-encode the result "
            "(not PEM, not hex)"
        )
    return Ed25519PublicKey.from_public_bytes(raw)


def private_key_to_pem(private: Ed25519PrivateKey) -> bytes:
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def private_key_from_pem(data: bytes) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        # TypeError is what cryptography raises for a password-protected file.
        raise InvalidPrivateKey(
            "could not read an unencrypted PKCS#8 PEM private key "
            f"({type(exc).__name__}); use a file written by private_key_to_pem or "
            "'sandbox init', or decrypt the key first"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidPrivateKey(
            f"the PEM file holds a {type(key).__name__}, not an Ed25519 private key; "
            "generate an Ed25519 key (e.g. 'openssl genpkey -algorithm ed25519')"
        )
    return key


def sign(private: Ed25519PrivateKey, data: bytes) -> str:
    """Base64 of the 64-byte Ed25519 signature over ``data``."""
    return base64.b64encode(private.sign(data)).decode("ascii")


def verify(
    public_b64: str,
    data: bytes,
    signature_b64: str,
    *,
    subject: str = "the signed bytes",
) -> None:
    """Raise SignatureInvalid unless ``signature_b64`` is a valid signature over ``data``.

    ``subject`` names what ``data`` is, so the message can tell the signer which bytes to
    sign. A malformed ``public_b64`` raises InvalidPublicKey: that is a registration
    problem, not the signer's.
    """
    public = parse_public_key(public_b64)
    raw = strict_b64decode(signature_b64)
    if raw is None or len(raw) != SIGNATURE_BYTES:
        found = "text that is not valid base64" if raw is None else f"{len(raw)} bytes"
        raise SignatureInvalid(
            f"signature must be base64 of a {SIGNATURE_BYTES}-byte Ed25519 signature, "
            f"got {found}; base64-encode the raw output of the Ed25519 sign operation"
        )
    try:
        public.verify(raw, data)
    except InvalidSignature:
        raise SignatureInvalid(
            f"the Ed25519 signature over {subject} does not verify against the "
            f"registered public key {public_b64}; sign exactly those bytes with the "
            "private key that belongs to this public key"
        ) from None


def strict_b64decode(text: object, *, canonical: bool = False) -> bytes | None:
    """Decode standard base64, or None when ``text`` is not base64 at all. ``canonical``
    also refuses every spelling but the one encoding gives (one value, one spelling), as
    signed notes and log entries need."""
    if not isinstance(text, str):
        return None
    try:
        # validate=True rejects stray characters instead of silently skipping them,
        # so a truncated or mangled value cannot decode to something else.
        raw = base64.b64decode(text if canonical else text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    if canonical and (not text or base64.b64encode(raw).decode("ascii") != text):
        return None
    return raw
