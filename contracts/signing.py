"""Signatures over a contract's canonical bytes, by the bureau and by the operator."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts.canonical import canonical_bytes
from contracts.document import ContractDocument
from contracts.errors import ContractSignatureError
from operators import keys
from operators.errors import SignatureInvalid


def sign_contract(private_key: Ed25519PrivateKey, doc: ContractDocument) -> str:
    """Base64 Ed25519 signature over ``canonical_bytes(doc)``."""
    return keys.sign(private_key, canonical_bytes(doc))


def verify_contract(public_b64: str, doc: ContractDocument, signature: str) -> None:
    """Raise ContractSignatureError unless ``signature`` signs this exact document.

    A malformed ``public_b64`` raises operators.errors.InvalidPublicKey: the registered key
    is at fault there, not the signature.
    """
    subject = (
        f"the canonical bytes of contract {doc.id} version {doc.version} "
        f"(GET /v1/contracts/{doc.id} returns them base64-encoded; decode before signing)"
    )
    try:
        keys.verify(public_b64, canonical_bytes(doc), signature, subject=subject)
    except SignatureInvalid as exc:
        raise ContractSignatureError(f"contract signature rejected: {exc}") from exc
