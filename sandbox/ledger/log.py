"""The transparency log in the database: append events, serve checkpoints and proofs.

An event's leaf is its RFC 8785 canonical JSON. Appends run inside the caller's transaction,
so an event is logged if and only if the state change it records is committed. Complete
subtree hashes are stored as they form (`LedgerNode`), so roots and proofs cost O(log n)
lookups rather than a rehash of the log.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sandbox.errors import BadRequest
from sandbox.ledger import merkle
from sandbox.ledger.note import Checkpoint, sign_note
from sandbox.store.models import LedgerEntry, LedgerNode

MAX_ENTRIES_PER_PAGE = 1000


def size(session: Session) -> int:
    last = session.scalar(select(func.max(LedgerEntry.index)))
    return 0 if last is None else last + 1


def _node_at(session: Session):  # type: ignore[no-untyped-def]
    def node_at(level: int, index: int) -> bytes:
        node = session.get(LedgerNode, (level, index))
        if node is None:
            raise LookupError(f"ledger node ({level}, {index}) is missing")
        return node.hash
    return node_at


def _hash_at(session: Session):  # type: ignore[no-untyped-def]
    node_at = _node_at(session)
    return lambda start, end: node_at(*merkle.node_position(start, end))


def append(session: Session, type_: str, actor: str | None, subject: str | None,
           data: dict[str, Any] | None = None) -> int:
    event = {
        "type": type_, "actor": actor, "subject": subject, "data": data or {},
        "at": dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z"),
    }
    leaf = rfc8785.dumps(event)
    index = size(session)
    session.add(LedgerEntry(index=index, leaf=leaf))
    session.flush()
    for level, i, h in merkle.completed_subtrees(index, merkle.leaf_hash(leaf), _node_at(session)):
        session.add(LedgerNode(level=level, index=i, hash=h))
        session.flush()
    return index


def root(session: Session, tree_size: int) -> bytes:
    return merkle.range_hash(0, tree_size, _hash_at(session)) if tree_size else merkle.EMPTY_ROOT


def checkpoint(session: Session, origin: str, key: Ed25519PrivateKey) -> dict[str, Any]:
    n = size(session)
    head = root(session, n)
    note = sign_note(Checkpoint(origin, n, head).body(), origin, key)
    return {"size": n, "root_hash": base64.b64encode(head).decode(), "checkpoint": note}


def entries(session: Session, start: int, end: int | None) -> list[dict[str, Any]]:
    n = size(session)
    end = n if end is None else min(end, n)
    if start < 0 or end < start:
        raise BadRequest("ask for entries with 0 <= start <= end")
    end = min(end, start + MAX_ENTRIES_PER_PAGE)
    rows = session.scalars(select(LedgerEntry).where(LedgerEntry.index >= start,
                                                     LedgerEntry.index < end)
                           .order_by(LedgerEntry.index))
    return [{"index": r.index, "leaf": base64.b64encode(r.leaf).decode(),
             "event": json.loads(r.leaf)} for r in rows]


def _b64(hashes: list[bytes]) -> list[str]:
    return [base64.b64encode(h).decode() for h in hashes]


def inclusion_proof(session: Session, index: int, tree_size: int) -> list[str]:
    if not 0 <= index < tree_size <= size(session):
        raise BadRequest(f"ask for 0 <= index < size <= {size(session)} (the log's size)")
    return _b64(merkle.inclusion_proof(index, tree_size, _hash_at(session)))


def consistency_proof(session: Session, first: int, second: int) -> list[str]:
    if not 0 < first <= second <= size(session):
        raise BadRequest(f"ask for 0 < first <= second <= {size(session)} (the log's size)")
    return _b64(merkle.consistency_proof(first, second, _hash_at(session)))
