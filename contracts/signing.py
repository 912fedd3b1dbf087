"""Signatures over a contract's canonical bytes, by the bureau and by the operator."""

from __future__ import annotations

from contracts.canonical import canonical_bytes
from contracts.document import ContractDocument
from contracts.errors import ContractSignatureError
from operators import keys
from operators.errors import SignatureInvalid
from operators.suite import Suite


def sign_contract(private_key: keys.PrivateKey, doc: ContractDocument) -> str:
    """Base64 signature over ``canonical_bytes(doc)``: Ed25519, or SM2 for a document of
    the ``sm`` suite."""
    return keys.sign(private_key, canonical_bytes(doc))


def verify_contract(public_b64: str, doc: ContractDocument, signature: str) -> None:
    """Raise ContractSignatureError unless ``signature`` signs this exact document.

    A malformed ``public_b64``, or a key of another crypto suite than the document's, raises
    operators.errors.InvalidPublicKey: the key is at fault there, not the signature.
    """
    keys.parse_public_key(public_b64, Suite(doc.crypto_suite))
    subject = (
        f"the canonical bytes of contract {doc.id} version {doc.version} "
        f"(GET /v1/contracts/{doc.id} returns them base64-encoded; decode before signing)"
    )
    try:
        keys.verify(public_b64, canonical_bytes(doc), signature, subject=subject)
    except SignatureInvalid as exc:
        raise ContractSignatureError(f"contract signature rejected: {exc}") from exc
