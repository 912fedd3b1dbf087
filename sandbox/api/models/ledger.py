"""The ledger: keys, checkpoints, entries, proofs and witness co-signatures."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from sandbox.api.models.common import Open


class ServiceKeys(Open):
    bureau: str = Field(
        description="base64 raw public key of the bureau: 32-byte Ed25519, or the 65-byte "
        "uncompressed SM2 point on an instance of the sm suite"
    )
    ledger_vkey: str = Field(description="The log's verifier key in signed-note form")
    crypto_suite: str = Field(
        description="The instance's crypto suite, fixed at 'sandbox init': 'international' "
        "(Ed25519, SHA-256) or 'sm' (SM2, SM3)"
    )


class Checkpoint(Open):
    size: int
    root_hash: str = Field(description="base64")
    checkpoint: str = Field(description="The signed note text")


class Entry(Open):
    index: int
    leaf: str = Field(description="base64 of the exact bytes hashed as the Merkle leaf")
    event: dict[str, Any] = Field(description="The leaf decoded")


class Entries(Open):
    entries: list[Entry]


class InclusionProof(Open):
    index: int
    size: int
    proof: list[str] = Field(description="RFC 6962 audit path, base64 hashes")


class ConsistencyProof(Open):
    first: int
    second: int
    proof: list[str] = Field(description="RFC 6962 consistency proof, base64 hashes")


class Witnessed(Open):
    size: int
    root_hash: str
    name: str
    public_key: str
    checkpoint: str = Field(description="The note with the bureau's and the witness's lines")
    created_at: str


class WitnessedList(Open):
    witnessed: list[Witnessed]
