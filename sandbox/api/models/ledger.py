"""The ledger: keys, checkpoints, entries, proofs and witness co-signatures."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from sandbox.api.models.common import Open


class ServiceKeys(Open):
    bureau: str = Field(description="base64 raw Ed25519 public key of the bureau")
    ledger_vkey: str = Field(description="The log's verifier key in signed-note form")


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
