"""The transparency log in the database: append events, serve checkpoints and proofs, and
keep the checkpoints witnesses (the regulator) co-signed.

An event's leaf is its RFC 8785 canonical JSON. The tree hash is the instance's crypto suite's
(SHA-256, or SM3 for the ``sm`` suite), which the session carries in its ``info`` under
:data:`SUITE_INFO` (the instance's sessionmakers set it). Appends run inside the caller's transaction,
so an event is logged if and only if the state change it records is committed. Complete
subtree hashes are stored as they form (`LedgerNode`), so roots and proofs cost O(log n)
lookups rather than a rehash of the log.
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import rfc8785
from sqlalchemy import Select, and_, bindparam, func, insert, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from operators.keys import PrivateKey
from operators.suite import Suite
from sandbox.common import clock
from sandbox.errors import BadRequest, Conflict, Forbidden, LedgerInconsistent
from sandbox.ledger import merkle
from sandbox.ledger.errors import NoteError
from sandbox.ledger.note import Checkpoint, open_checkpoint, open_note, sign_note
from sandbox.store.models import LedgerEntry, LedgerNode, LedgerWitness

MAX_ENTRIES_PER_PAGE = 1000
WITNESSED_EVENT = "ledger.witnessed"
SUITE_INFO = "sandbox.crypto_suite"

_T = TypeVar("_T")
_Position = tuple[int, int]


class WitnessRefused(BadRequest):
    code = "ledger_witness_refused"


class WitnessKeyMismatch(Forbidden):
    code = "ledger_witness_key_mismatch"


class CheckpointMismatch(Conflict):
    code = "ledger_checkpoint_mismatch"


_SIZE_QUERY = select(func.max(LedgerEntry.index))


def size(session: Session) -> int:
    last = session.connection().scalar(_SIZE_QUERY)
    return 0 if last is None else last + 1


def suite(session: Session) -> Suite:
    """The crypto suite of the instance ``session`` belongs to (international unless set)."""
    value: Suite = session.info.get(SUITE_INFO, Suite.international)
    return value


def hasher(session: Session) -> merkle.TreeHasher:
    """The tree hash of the instance ``session`` belongs to (SHA-256 unless it says SM3)."""
    return merkle.hasher_for(suite(session))


def check_hash(session: Session, expected: Suite) -> None:
    """Refuse to run an instance whose log was hashed with another hash than ``expected``'s.

    The suite follows from the bureau key's type; a key of the other suite put in its place
    would otherwise extend a SHA-256 log with SM3 nodes, or the reverse, and break it.
    """
    leaf = session.scalar(select(LedgerEntry.leaf).where(LedgerEntry.index == 0))
    stored = session.scalar(
        select(LedgerNode.hash).where(LedgerNode.level == 0, LedgerNode.index == 0)
    )
    if leaf is None or stored is None or merkle.hasher_for(expected).leaf(leaf) == stored:
        return
    other = Suite.sm if expected is Suite.international else Suite.international
    raise Conflict(
        f"this instance's log is hashed with {other.hash_name} (crypto suite {other.value}), "
        f"but its bureau key is a {expected.signature_name} key of the {expected.value} suite; an "
        "instance keeps the suite it was created with. Put back the bureau key made by "
        "'sandbox init' (or restore it from backup)"
    )


# --- appending -------------------------------------------------------------------------------


@dataclass
class _Tail:
    """The log's size and right-border nodes as this transaction last left them.

    An append only ever needs the border (the complete subtrees that tile [0, size), see
    `_border`), so keeping it per transaction saves a size query and a node lookup per event.
    It is tied to the (innermost) transaction object: a commit, rollback or savepoint starts
    another transaction object, and the next append reloads the tail from the database.
    """

    transaction: object
    size: int
    border: dict[_Position, bytes]


_TAIL_KEY = "sandbox.ledger.tail"
_INSERT_ENTRY = insert(LedgerEntry)
_INSERT_NODE = insert(LedgerNode)


def _border(n: int) -> list[_Position]:
    """Positions of the complete subtrees that tile leaves [0, n), largest first."""
    positions, start = [], 0
    for level in reversed(range(n.bit_length())):
        if n >> level & 1:
            positions.append((level, start >> level))
            start += 1 << level
    return positions


def _tail(session: Session) -> _Tail:
    session.connection()  # begins the transaction if none has begun, so it can be compared
    # The innermost transaction: a savepoint rolled back must not leave a stale tail behind.
    transaction = session.get_nested_transaction() or session.get_transaction()
    tail = session.info.get(_TAIL_KEY)
    if tail is None or tail.transaction is not transaction:
        n = size(session)
        tail = _Tail(transaction, n, _load_nodes(session, _border(n)))
        session.info[_TAIL_KEY] = tail
    return tail


def append(
    session: Session,
    type_: str,
    actor: str | None,
    subject: str | None,
    data: dict[str, Any] | None = None,
) -> int:
    event = {
        "type": type_,
        "actor": actor,
        "subject": subject,
        "data": data or {},
        "at": clock.now().isoformat().replace("+00:00", "Z"),
    }
    leaf = rfc8785.dumps(event)
    tree = hasher(session)
    tail = _tail(session)
    index = tail.size
    nodes = merkle.completed_subtrees(
        index, tree.leaf(leaf), lambda level, i: tail.border[(level, i)], tree
    )
    # Core inserts on the session's connection: same transaction, without the unit of work's
    # per-object bookkeeping (the log's rows are never updated through the ORM).
    connection = session.connection()
    try:
        connection.execute(_INSERT_ENTRY, [{"index": index, "leaf": leaf}])
        connection.execute(
            _INSERT_NODE, [{"level": level, "index": i, "hash": h} for level, i, h in nodes]
        )
    except IntegrityError:
        raise _inconsistent(f"entry {index} or its tree hashes already exist") from None
    tail.size = index + 1
    known = {**tail.border, **{(level, i): h for level, i, h in nodes}}
    tail.border = {p: known[p] for p in _border(tail.size)}
    return index


def _inconsistent(detail: str) -> LedgerInconsistent:
    return LedgerInconsistent(
        f"the stored log is inconsistent ({detail}); changes are refused until the bureau "
        "restores the log from backup. Run 'sandbox ledger verify' to locate the damage"
    )


# --- reading: roots, entries, proofs ---------------------------------------------------------


def _load_nodes(session: Session, positions: Sequence[_Position]) -> dict[_Position, bytes]:
    """The stored hashes at ``positions``, in one query."""
    wanted = sorted(set(positions))
    if not wanted:
        return {}
    params = {}
    for j, (level, index) in enumerate(wanted):
        params[f"l{j}"], params[f"i{j}"] = level, index
    rows = session.connection().execute(_nodes_query(len(wanted)), params)
    found = {(level, index): h for level, index, h in rows}
    missing = [p for p in wanted if p not in found]
    if missing:
        raise LookupError(f"ledger node {missing[0]} is missing")
    return found


@functools.lru_cache(maxsize=512)
def _nodes_query(count: int) -> Select[int, int, bytes]:
    # An OR of (level, index) pairs rather than a row-value IN: SQLite answers the OR with one
    # primary-key search per pair but scans the whole table for the IN. Built once per count,
    # since composing the expression costs far more than running it.
    match = or_(
        *(
            and_(LedgerNode.level == bindparam(f"l{j}"), LedgerNode.index == bindparam(f"i{j}"))
            for j in range(count)
        )
    )
    return select(LedgerNode.level, LedgerNode.index, LedgerNode.hash).where(match)


def _with_nodes(session: Session, compute: Callable[[merkle.HashAt], _T]) -> _T:
    """Run a merkle computation with every node it needs fetched in one query.

    Which nodes a root or proof needs depends only on the indexes, never on hash values, so
    a dry run with placeholder hashes names them all; the real run then reads them from memory.
    """
    wanted: list[_Position] = []

    def record(start: int, end: int) -> bytes:
        wanted.append(merkle.node_position(start, end))
        return bytes(merkle.HASH_SIZE)

    compute(record)
    nodes = _load_nodes(session, wanted)
    return compute(lambda start, end: nodes[merkle.node_position(start, end)])


def root(session: Session, tree_size: int) -> bytes:
    tree = hasher(session)
    if not tree_size:
        return tree.empty_root
    return _with_nodes(session, lambda hash_at: merkle.range_hash(0, tree_size, hash_at, tree))


def checkpoint(session: Session, origin: str, key: PrivateKey) -> dict[str, Any]:
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
    rows = session.execute(
        select(LedgerEntry.index, LedgerEntry.leaf)
        .where(LedgerEntry.index >= start, LedgerEntry.index < end)
        .order_by(LedgerEntry.index)
    )
    return [
        {"index": index, "leaf": base64.b64encode(leaf).decode(), "event": json.loads(leaf)}
        for index, leaf in rows
    ]


def _b64(hashes: list[bytes]) -> list[str]:
    return [base64.b64encode(h).decode() for h in hashes]


def inclusion_proof(session: Session, index: int, tree_size: int) -> list[str]:
    if not 0 <= index < tree_size <= size(session):
        raise BadRequest(f"ask for 0 <= index < size <= {size(session)} (the log's size)")
    tree = hasher(session)
    return _b64(
        _with_nodes(
            session, lambda hash_at: merkle.inclusion_proof(index, tree_size, hash_at, tree)
        )
    )


def consistency_proof(session: Session, first: int, second: int) -> list[str]:
    if not 0 < first <= second <= size(session):
        raise BadRequest(f"ask for 0 < first <= second <= {size(session)} (the log's size)")
    tree = hasher(session)
    return _b64(
        _with_nodes(session, lambda hash_at: merkle.consistency_proof(first, second, hash_at, tree))
    )


# --- witnesses -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Witness:
    """Who co-signs: the key name on the signature line and the raw public key (Ed25519 or
    SM2, as the instance's suite)."""

    name: str
    public_key: bytes

    @property
    def public_key_b64(self) -> str:
        return base64.b64encode(self.public_key).decode("ascii")


def add_witness(
    session: Session,
    note: str,
    origin: str,
    bureau_public: bytes,
    witness: Witness,
    actor_id: str,
    registered_key: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """Keep a checkpoint co-signed by ``witness``; returns its record and whether it is new.

    The note must carry a valid bureau signature and a valid witness signature over the same
    checkpoint text, and that checkpoint must be this log's tree at its size. Co-signing the
    same checkpoint again with the same key returns the kept record and logs nothing.
    """
    if registered_key is not None and registered_key != witness.public_key_b64:
        raise WitnessKeyMismatch(
            "the witness key is not the public key registered for your principal; sign with "
            "the key the bureau registered for you, or ask the bureau to register this one"
        )
    if witness.name == origin:
        raise WitnessRefused(
            f"the witness key name must differ from the log's origin {origin!r}, which names "
            "the bureau's key; use a name of your own, such as 'regulator.example.gov.cn'"
        )
    checkpoint_ = _bureau_checkpoint(note, origin, bureau_public)
    _check_witness_signature(note, witness)
    _check_matches_log(session, checkpoint_)
    kept = session.scalar(
        select(LedgerWitness).where(
            LedgerWitness.size == checkpoint_.size,
            LedgerWitness.public_key == witness.public_key_b64,
        )
    )
    if kept is not None:
        return _witness_json(kept), False
    row = LedgerWitness(
        size=checkpoint_.size,
        root_hash=checkpoint_.root_hash,
        name=witness.name,
        public_key=witness.public_key_b64,
        note=note,
    )
    session.add(row)
    session.flush()
    append(
        session,
        WITNESSED_EVENT,
        actor_id,
        str(checkpoint_.size),
        {
            "size": checkpoint_.size,
            "root_hash": base64.b64encode(checkpoint_.root_hash).decode(),
            "witness": witness.name,
            "public_key": witness.public_key_b64,
        },
    )
    return _witness_json(row), True


def witnessed(session: Session, tree_size: int | None = None) -> list[dict[str, Any]]:
    query = select(LedgerWitness).order_by(LedgerWitness.size, LedgerWitness.id)
    if tree_size is not None:
        query = query.where(LedgerWitness.size == tree_size)
    return [_witness_json(row) for row in session.scalars(query)]


def _bureau_checkpoint(note: str, origin: str, bureau_public: bytes) -> Checkpoint:
    try:
        checkpoint_, _ = open_checkpoint(note, {origin: bureau_public}, origin)
    except NoteError as exc:
        raise WitnessRefused(
            f"the checkpoint does not carry a valid signature of this log's bureau key: {exc}"
        ) from None
    return checkpoint_


def _check_witness_signature(note: str, witness: Witness) -> None:
    try:
        open_note(note, {witness.name: witness.public_key})
    except NoteError as exc:
        raise WitnessRefused(
            f"the witness signature of {witness.name!r} does not verify: {exc}. Co-sign the "
            "bureau's note unchanged with note.add_signature and the private key of the "
            "public key you send"
        ) from None


def _check_matches_log(session: Session, checkpoint_: Checkpoint) -> None:
    n = size(session)
    if checkpoint_.size > n:
        raise CheckpointMismatch(
            f"the checkpoint is for {checkpoint_.size} entries but this log has {n}; "
            "co-sign a checkpoint fetched from GET /v1/ledger/checkpoint"
        )
    if root(session, checkpoint_.size) != checkpoint_.root_hash:
        raise CheckpointMismatch(
            f"the checkpoint's root hash is not this log's root at size {checkpoint_.size}: "
            "the log and the checkpoint disagree on history; do not co-sign it, and verify "
            "the log with 'sandbox ledger verify'"
        )


def _witness_json(row: LedgerWitness) -> dict[str, Any]:
    return {
        "size": row.size,
        "root_hash": base64.b64encode(row.root_hash).decode(),
        "name": row.name,
        "public_key": row.public_key,
        "checkpoint": row.note,
        "created_at": row.created_at.isoformat() + "Z",
    }
