"""SM2 signature keys (GB/T 32918.2) with SM3 and the default user identity, over Tongsuo.

Signatures are made as the standard says: e = SM3(Z_A || M), where Z_A hashes the signer's
identity, the curve and the public key; Tongsuo uses the GB/T 35276 default identity
``1234567812345678`` unless told otherwise, so every signature here uses it.

Wire forms, fixed-length like Ed25519's so one value has one spelling: a public key is the
65-byte uncompressed point ``0x04 || X || Y`` (GB/T 32918.1 §4.2.9), a signature is the
64-byte ``r || s`` (each 32 bytes, big-endian). The DER form GM/T 0009 describes is what
Tongsuo produces and reads; it is converted here and never travels.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from tongsuopy.crypto import hashes as tongsuo_hashes
from tongsuopy.crypto import serialization as tongsuo_serialization
from tongsuopy.crypto.asymciphers import ec as tongsuo_ec
from tongsuopy.crypto.exceptions import InvalidSignature as TongsuoInvalidSignature
from tongsuopy.crypto.exceptions import UnsupportedAlgorithm as TongsuoUnsupported

DEFAULT_USER_ID = b"1234567812345678"
PUBLIC_KEY_BYTES = 65
SIGNATURE_BYTES = 64
_SCALAR_BYTES = 32


class SM2PublicKey:
    """An SM2 public key; ``verify`` raises :class:`InvalidSM2Signature` on any failure."""

    def __init__(self, key: Any) -> None:
        self._key = key

    @classmethod
    def from_raw(cls, raw: bytes) -> SM2PublicKey:
        """From the 65-byte uncompressed point; ValueError if it is not a point of the curve."""
        if len(raw) != PUBLIC_KEY_BYTES or raw[:1] != b"\x04":
            raise ValueError(
                f"an SM2 public key is {PUBLIC_KEY_BYTES} bytes, 0x04 followed by X and Y"
            )
        return cls(tongsuo_ec.EllipticCurvePublicKey.from_encoded_point(tongsuo_ec.SM2(), raw))

    def raw(self) -> bytes:
        return bytes(
            self._key.public_bytes(
                tongsuo_serialization.Encoding.X962,
                tongsuo_serialization.PublicFormat.UncompressedPoint,
            )
        )

    def verify(self, signature: bytes, data: bytes) -> None:
        if len(signature) != SIGNATURE_BYTES:
            raise InvalidSM2Signature(f"an SM2 signature is {SIGNATURE_BYTES} bytes (r || s)")
        r = int.from_bytes(signature[:_SCALAR_BYTES], "big")
        s = int.from_bytes(signature[_SCALAR_BYTES:], "big")
        if r == 0 or s == 0:
            raise InvalidSM2Signature("r and s of an SM2 signature are never zero")
        try:
            self._key.verify(encode_dss_signature(r, s), data, _algorithm())
        except TongsuoInvalidSignature:
            raise InvalidSM2Signature("SM2 signature does not verify") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SM2PublicKey) and self.raw() == other.raw()

    def __hash__(self) -> int:
        return hash(self.raw())


class SM2PrivateKey:
    """An SM2 private key: signs with SM3 and the default user identity."""

    def __init__(self, key: Any) -> None:
        self._key = key

    @classmethod
    def generate(cls) -> SM2PrivateKey:
        return cls(tongsuo_ec.generate_private_key(tongsuo_ec.SM2()))

    @classmethod
    def from_scalar(cls, d: int) -> SM2PrivateKey:
        return cls(tongsuo_ec.derive_private_key(d, tongsuo_ec.SM2()))

    @classmethod
    def from_pem(cls, data: bytes) -> SM2PrivateKey:
        """From unencrypted PKCS#8 PEM; ValueError if it is not an SM2 private key."""
        try:
            key = tongsuo_serialization.load_pem_private_key(data, password=None)
        except (TongsuoUnsupported, TypeError) as exc:
            raise ValueError(f"not an SM2 private key ({exc})") from exc
        if getattr(getattr(key, "curve", None), "name", None) != "SM2":
            raise ValueError("the PEM file holds an EC key of another curve than SM2")
        return cls(key)

    def to_pem(self) -> bytes:
        return bytes(
            self._key.private_bytes(
                tongsuo_serialization.Encoding.PEM,
                tongsuo_serialization.PrivateFormat.PKCS8,
                tongsuo_serialization.NoEncryption(),
            )
        )

    def public_key(self) -> SM2PublicKey:
        return SM2PublicKey(self._key.public_key())

    def sign(self, data: bytes) -> bytes:
        """The 64-byte ``r || s`` SM2 signature over ``data``."""
        r, s = decode_dss_signature(self._key.sign(data, _algorithm()))
        return r.to_bytes(_SCALAR_BYTES, "big") + s.to_bytes(_SCALAR_BYTES, "big")


class InvalidSM2Signature(Exception):
    pass


def _algorithm() -> Any:
    return tongsuo_ec.ECDSA(tongsuo_hashes.SM3())
