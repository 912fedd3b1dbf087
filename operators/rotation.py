"""The statement a principal signs with its current key to register its next key.

A self-service rotation must prove possession of the key in force, so the statement names
that key's id: once any later rotation has happened, a replayed statement no longer matches
the key in force and is refused. The domain prefix keeps a rotation signature from being
valid as a contract or job-submission signature.
"""

from __future__ import annotations

import rfc8785

from operators.keys import parse_public_key

KEY_ROTATION_DOMAIN = b"public-data-sandbox/key-rotation/v1\n"


def rotation_bytes(principal_id: str, new_public_key: str, previous_key_id: str) -> bytes:
    """The bytes to sign with the key ``previous_key_id`` to make ``new_public_key`` current.

    ``new_public_key`` is base64 of the 32 raw Ed25519 bytes; it is checked here so a
    malformed key is refused before anything is signed over it.
    """
    parse_public_key(new_public_key)
    body = {
        "principal_id": principal_id,
        "public_key": new_public_key,
        "previous_key_id": previous_key_id,
    }
    return KEY_ROTATION_DOMAIN + rfc8785.dumps(body)
