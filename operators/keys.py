"""Signature keys and signatures as they travel over the API: Ed25519, or SM2 for the ``sm``
suite (:mod:`operators.suite`).

Public keys and signatures are exchanged as standard base64 of their raw bytes: an Ed25519
public key is 32 bytes, an SM2 one the 65-byte uncompressed point; both signatures are 64
bytes (SM2: ``r || s``). The length of a public key tells its algorithm, so a signature is
checked with the algorithm of the key it is checked against. Private keys are kept as
unencrypted PKCS#8 PEM files.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from operators.errors import InvalidPrivateKey, InvalidPublicKey, SignatureInvalid
from operators.sm2 import InvalidSM2Signature, SM2PrivateKey, SM2PublicKey
from operators.suite import Suite

PUBLIC_KEY_BYTES = 32
SM2_PUBLIC_KEY_BYTES = 65
SIGNATURE_BYTES = 64

PrivateKey = Ed25519PrivateKey | SM2PrivateKey
PublicKey = Ed25519PublicKey | SM2PublicKey


def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def generate_key(suite: Suite) -> PrivateKey:
    """A fresh signing key of ``suite``'s algorithm."""
    return generate_private_key() if suite is Suite.international else SM2PrivateKey.generate()


def suite_of(key: PrivateKey | PublicKey) -> Suite:
    return Suite.sm if isinstance(key, SM2PrivateKey | SM2PublicKey) else Suite.international


def public_raw(private: PrivateKey) -> bytes:
    """The public key's raw bytes: 32 for Ed25519, the 65-byte point for SM2."""
    return raw_public_bytes(private.public_key())


def raw_public_bytes(public: PublicKey) -> bytes:
    if isinstance(public, SM2PublicKey):
        return public.raw()
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_b64(private: PrivateKey) -> str:
    """Base64 of the raw public key bytes (the form ``POST /v1/principals`` accepts)."""
    return base64.b64encode(public_raw(private)).decode("ascii")


def parse_public_key(b64: str, suite: Suite | None = None) -> PublicKey:
    """The public key ``b64`` encodes; with ``suite``, refuse a key of the other suite."""
    raw = strict_b64decode(b64)
    key: PublicKey | None = None
    if raw is not None and len(raw) == PUBLIC_KEY_BYTES:
        key = Ed25519PublicKey.from_public_bytes(raw)
    elif raw is not None and len(raw) == SM2_PUBLIC_KEY_BYTES:
        try:
            key = SM2PublicKey.from_raw(raw)
        except ValueError:
            raise InvalidPublicKey(
                f"public key is {SM2_PUBLIC_KEY_BYTES} bytes but not an SM2 public key "
                "(0x04 followed by the X and Y of a point of the SM2 curve); export it as "
                "the uncompressed point and base64-encode it"
            ) from None
    if key is None:
        found = "text that is not valid base64" if raw is None else f"{len(raw)} bytes"
        raise InvalidPublicKey(
            f"public key must be base64 of the {PUBLIC_KEY_BYTES} raw bytes of an Ed25519 "
            f"public key (or, on an instance of the sm suite, the {SM2_PUBLIC_KEY_BYTES}-byte "
            f"uncompressed point of an SM2 key), got {found}; 'sandbox keys generate' prints "
            "one in the right form (not PEM, not hex)"
        )
    if suite is not None and suite_of(key) is not suite:
        raise InvalidPublicKey(
            f"this instance uses the {suite.value} crypto suite, which signs with "
            f"{suite.signature_name}, but the public key is an {suite_of(key).signature_name} "
            f"key; generate one with 'sandbox keys generate --suite {suite.value}' and "
            "register that"
        )
    return key


def private_key_to_pem(private: PrivateKey) -> bytes:
    if isinstance(private, SM2PrivateKey):
        return private.to_pem()
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def private_key_from_pem(data: bytes) -> PrivateKey:
    """An Ed25519 or SM2 private key from unencrypted PKCS#8 PEM."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except UnsupportedAlgorithm:
        # pyca/cryptography has no SM2 curve; Tongsuo reads those keys.
        return _sm2_private_key_from_pem(data)
    except (ValueError, TypeError) as exc:
        # TypeError is what cryptography raises for a password-protected file.
        raise InvalidPrivateKey(
            "could not read an unencrypted PKCS#8 PEM private key "
            f"({type(exc).__name__}); use a file written by private_key_to_pem or "
            "'sandbox init', or decrypt the key first"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidPrivateKey(
            f"the PEM file holds a {type(key).__name__}, not an Ed25519 private key (nor an "
            "SM2 one); "
            "make one with 'sandbox keys generate' (add '--suite sm' for SM2)"
        )
    return key


def _sm2_private_key_from_pem(data: bytes) -> SM2PrivateKey:
    try:
        return SM2PrivateKey.from_pem(data)
    except ValueError as exc:
        raise InvalidPrivateKey(
            f"the PEM file holds a key of an algorithm this service does not use ({exc}); "
            "make one with 'sandbox keys generate' (add '--suite sm' for SM2)"
        ) from exc


def sign(private: PrivateKey, data: bytes) -> str:
    """Base64 of the 64-byte signature over ``data`` (Ed25519, or SM2 ``r || s``)."""
    return base64.b64encode(private.sign(data)).decode("ascii")


def verify(
    public_b64: str,
    data: bytes,
    signature_b64: str,
    *,
    subject: str = "the signed bytes",
) -> None:
    """Raise SignatureInvalid unless ``signature_b64`` is a valid signature over ``data``.

    The algorithm is the public key's. ``subject`` names what ``data`` is, so the message
    can tell the signer which bytes to sign. A malformed ``public_b64`` raises
    InvalidPublicKey: that is a registration problem, not the signer's.
    """
    public = parse_public_key(public_b64)
    algorithm = suite_of(public).signature_name
    raw = strict_b64decode(signature_b64)
    if raw is None or len(raw) != SIGNATURE_BYTES:
        found = "text that is not valid base64" if raw is None else f"{len(raw)} bytes"
        raise SignatureInvalid(
            f"signature must be base64 of a {SIGNATURE_BYTES}-byte {algorithm} signature, "
            f"got {found}; base64-encode the raw output of the {algorithm} sign operation"
            + (" (r || s, not DER)" if algorithm == "SM2" else "")
        )
    try:
        public.verify(raw, data)
    except (InvalidSignature, InvalidSM2Signature):
        raise SignatureInvalid(
            f"the {algorithm} signature over {subject} does not verify against the "
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
