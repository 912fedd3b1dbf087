"""Checking an exported contract offline: its canonical bytes and both signatures.

An export is the JSON of `GET /v1/contracts/{id}`. Nothing in it is trusted: the canonical
bytes are recomputed from the document, and the signatures are checked against public keys the
verifier already holds, never against keys named inside the export.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from contracts.canonical import canonical_bytes
from contracts.document import ContractDocument
from contracts.errors import ContractError
from contracts.signing import verify_contract
from operators.errors import OperatorError


@dataclass(frozen=True)
class ContractCheck:
    contract_id: str
    version: int
    checked: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    skipped: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_export(
    export: Mapping[str, Any], bureau_key: str, operator_key: str | None = None
) -> ContractCheck:
    try:
        doc = ContractDocument.from_json(export["document"])
    except (KeyError, TypeError, ContractError) as e:
        return ContractCheck(
            "?", 0, problems=(f"the export holds no valid contract document: {e}",)
        )
    checked: list[str] = []
    problems: list[str] = []
    skipped: list[str] = []
    try:
        shipped = base64.b64decode(export.get("canonical") or "", validate=True)
    except (binascii.Error, ValueError):
        shipped = b""
    if shipped == canonical_bytes(doc):
        checked.append("canonical bytes equal the document's RFC 8785 form")
    else:
        problems.append(
            "the export's canonical bytes differ from the document's canonical "
            "form: the document or the bytes were altered"
        )
    signatures = export.get("signatures") or {}
    for party, key in (("bureau", bureau_key), ("operator", operator_key)):
        signature = signatures.get(party)
        if key is None:
            skipped.append(f"{party} signature (no {party} public key given)")
        elif not signature:
            problems.append(f"the contract has no {party} signature")
        else:
            try:
                verify_contract(key, doc, signature)
                checked.append(f"{party} signature verifies")
            except (ContractError, OperatorError) as e:
                problems.append(f"{party} signature: {getattr(e, 'message', None) or e}")
    return ContractCheck(doc.id, doc.version, tuple(checked), tuple(problems), tuple(skipped))
