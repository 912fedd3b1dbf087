"""Cryptographic suites: which signature and hash algorithms an instance uses.

``international`` is Ed25519 with SHA-256, ``sm`` is China's commercial cryptography
(商用密码) for deployments assessed under GB/T 39786-2021: SM2 signatures (GB/T 32918.2,
with the default user identity of GB/T 35276) and SM3 digests (GB/T 32905). An instance
chooses one when it is created and keeps it for its whole life: its log's hashes, its
stored token hashes and every registered key depend on it.
"""

from __future__ import annotations

import enum
import hashlib

from cryptography.hazmat.primitives import hashes


class Suite(enum.StrEnum):
    international = "international"
    sm = "sm"

    @property
    def signature_name(self) -> str:
        return "Ed25519" if self is Suite.international else "SM2"

    @property
    def hash_name(self) -> str:
        return "SHA-256" if self is Suite.international else "SM3"


DEFAULT_SUITE = Suite.international


def parse_suite(value: str) -> Suite:
    try:
        return Suite(value)
    except ValueError:
        choices = ", ".join(s.value for s in Suite)
        raise ValueError(f"unknown crypto suite {value!r}; choose one of: {choices}") from None


def digest(suite: Suite, data: bytes) -> bytes:
    """The suite's 32-byte hash of ``data``: SHA-256 or SM3."""
    if suite is Suite.international:
        return hashlib.sha256(data).digest()
    return sm3(data)


def sm3(data: bytes) -> bytes:
    # pyca/cryptography's SM3 is OpenSSL's; SM2 needs Tongsuo, SM3 does not.
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize()
