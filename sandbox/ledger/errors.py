"""Errors raised by the ledger package.

Every error carries a snake_case ``code`` that the API puts in its JSON error envelope::

    LedgerError
    ├── ProofError       an inclusion or consistency proof does not verify
    ├── ProofRangeError  a proof or tree hash was asked for outside the tree
    └── NoteError        a signed note or checkpoint is malformed or not signed by a known key
"""

from __future__ import annotations


class LedgerError(Exception):
    code: str = "ledger_error"


class ProofError(LedgerError):
    code = "ledger_proof_invalid"


class ProofRangeError(LedgerError):
    code = "ledger_proof_range"


class NoteError(LedgerError):
    code = "ledger_note_invalid"
