"""API bearer tokens: generation, storage hash and constant-time matching."""

from __future__ import annotations

import hmac
import secrets

from operators.suite import DEFAULT_SUITE, Suite, digest

TOKEN_PREFIX = "sbx_"

# 32 random bytes = 256 bits of entropy, far beyond any brute-force search.
_TOKEN_BYTES = 32


def new_token() -> str:
    """A fresh bearer token; the prefix makes leaked tokens easy to spot by secret scanners."""
    return TOKEN_PREFIX + secrets.token_urlsafe(_TOKEN_BYTES)


def hash_token(token: str, suite: Suite = DEFAULT_SUITE) -> str:
    """Hex SHA-256 (SM3 for the ``sm`` suite) of the token, the only form that is stored.

    A fast unsalted hash is right here: tokens are 256-bit random values, so there is no
    dictionary to attack and a slow password hash (bcrypt, argon2) would only make every
    authenticated request slower without adding security.
    """
    return digest(suite, token.encode("utf-8")).hex()


def token_matches(token: str, stored_hash: str, suite: Suite = DEFAULT_SUITE) -> bool:
    """Whether ``token`` hashes to ``stored_hash``, compared in constant time."""
    # Compare bytes, not str: hmac.compare_digest refuses non-ASCII str, and a
    # malformed stored value must yield False rather than an exception.
    return hmac.compare_digest(
        hash_token(token, suite).encode("utf-8"), stored_hash.encode("utf-8")
    )
