"""Errors raised by the operators package.

Every error carries a snake_case ``code`` that the API puts in its JSON error envelope::

    OperatorError
    ├── InvalidPublicKey      a public key is not base64 of 32 raw Ed25519 bytes
    ├── InvalidPrivateKey     a PEM file does not hold an unencrypted Ed25519 private key
    ├── SignatureInvalid      a signature is malformed or does not verify
    └── SubmissionInvalid     a job submission cannot be put in canonical form
"""

from __future__ import annotations


class OperatorError(Exception):
    code: str = "operator_error"


class InvalidPublicKey(OperatorError):
    code = "invalid_public_key"


class InvalidPrivateKey(OperatorError):
    code = "invalid_private_key"


class SignatureInvalid(OperatorError):
    code = "signature_invalid"


class SubmissionInvalid(OperatorError):
    code = "submission_invalid"
