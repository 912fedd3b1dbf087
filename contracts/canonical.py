"""The exact bytes the bureau and the operator sign for a contract document.

RFC 8785 (JCS) fixes key order, whitespace and number spelling, so any party can rebuild
the bytes from the JSON document; the domain prefix keeps a contract signature from being
valid as any other kind of signature (e.g. a job submission).
"""

from __future__ import annotations

import rfc8785

from contracts.document import ContractDocument

CONTRACT_DOMAIN = b"public-data-sandbox/contract/v1\n"


def canonical_bytes(doc: ContractDocument) -> bytes:
    return CONTRACT_DOMAIN + rfc8785.dumps(doc.to_json())
