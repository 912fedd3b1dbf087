"""Verifying a running service's transparency log from outside, with only its URL, an API
token (regulator or bureau) and the bureau's public key.

    with LedgerSource("https://sandbox.example.gov.cn", token) as source:
        report = verify_log(source, load_bureau_key("bureau.pub"), saved=saved_note)
    report.ok, report.first_bad_index, report.problems

What is checked:

1. the latest checkpoint carries a valid signature by the bureau key the caller supplies —
   the key the service serves at ``/v1/keys`` is used only when the caller asks for it;
2. every entry ``0 … size-1`` is there, in order, its ``leaf`` is base64 of canonical
   (RFC 8785) JSON and its ``event`` is exactly that JSON decoded;
3. the RFC 6962 root rebuilt from the leaves (``merkle.MemoryTree``) is the signed root;
4. given a checkpoint saved earlier: its signature, that the log has not shrunk below it, that
   the rebuilt root at its size is its root, and that the log's consistency proof from its size
   to the current size verifies.

The crypto suite is read from the bureau key: an Ed25519 key signs a log hashed with
SHA-256, an SM2 key (``sm`` suite) one hashed with SM3 (see :mod:`sandbox.ledger.note`).

Finding the first bad entry. When the rebuilt root at a signed size ``n`` differs from the
signed root ``R`` (current or saved checkpoint), the verifier bisects over prefix sizes ``m``:
prefix ``m`` is *proven* when the log's consistency proof from ``m`` to ``n`` verifies from the
root rebuilt over the first ``m`` downloaded leaves to ``R``. A verified proof means, short of a
SHA-256 collision, that those ``m`` leaves are exactly the first ``m`` leaves ``R`` commits to;
so proven prefixes are closed downwards (every prefix of a proven prefix is proven) and the
search is sound. It returns the largest proven ``m`` below ``n`` whose successor is not proven,
and reports index ``m``: entries ``0 … m-1`` are proven, entry ``m`` is the first the log cannot
prove. A lying log can only make proofs fail, never pass, so the index is always a lower bound
of the first altered entry; it is the exact one whenever the service's stored subtree hashes
still describe ``R`` — e.g. after a leaf row was edited in the database, which is what the
consistency check from the saved checkpoint confirms. When that check fails too (the service
rewrote its subtree hashes as well), the report says that the index is a lower bound. The
bisection costs O(log n) proofs of O(log n) hashes each.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import httpx
import rfc8785
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from tongsuopy.crypto import serialization as tongsuo_serialization

from operators.client import SandboxAPIError, api_error
from operators.keys import PrivateKey, public_raw, strict_b64decode
from operators.sm2 import SM2PublicKey
from operators.suite import Suite
from sandbox.ledger import merkle
from sandbox.ledger.errors import LedgerError, NoteError, ProofError
from sandbox.ledger.note import (
    SM2_PUBLIC_KEY_BYTES,
    Checkpoint,
    add_signature,
    key_suite,
    open_checkpoint,
    parse_vkey,
)

DEFAULT_TIMEOUT = 60.0
# Past this many, per-entry problems are summed up in one line: a rewritten log would
# otherwise produce a report as long as the log.
MAX_ENTRY_PROBLEMS = 50


class LogUnavailable(LedgerError):
    """The service could not be asked: unreachable, or it answered something unreadable."""

    code = "ledger_unavailable"


# --- the bureau's key --------------------------------------------------------------------------


@dataclass(frozen=True)
class BureauKey:
    """The key checkpoints must be signed with; ``name`` is the log origin when known."""

    public_key: bytes
    name: str | None = None
    source: Literal["given", "served"] = "given"

    @property
    def suite(self) -> Suite:
        return key_suite(self.public_key)

    @property
    def hasher(self) -> merkle.TreeHasher:
        """The hash of the log this key signs: SHA-256 for Ed25519, SM3 for SM2."""
        return merkle.hasher_for(self.suite)


def parse_bureau_key(text: str) -> BureauKey:
    """A bureau key written as base64 of its raw bytes (32 for Ed25519, the 65-byte point for
    SM2), a verifier key string (``<origin>+<key id>+<base64>``, as ``/v1/keys`` shows in
    ``ledger_vkey``) or a PEM public key."""
    text = text.strip()
    raw = strict_b64decode(text, canonical=True)
    if raw is not None and len(raw) == 32:
        return BureauKey(raw)
    if raw is not None and len(raw) == SM2_PUBLIC_KEY_BYTES:
        return BureauKey(_sm2_raw(raw))
    if text.startswith("-----BEGIN PUBLIC KEY-----"):
        return BureauKey(_pem_public_raw(text))
    if text.count("+") >= 2:
        name, public_raw = parse_vkey(text)
        return BureauKey(public_raw, name)
    raise NoteError(
        "the bureau key must be base64 of the raw bytes of its public key (32 for Ed25519, "
        "65 for SM2), a verifier key '<origin>+<key id>+<base64>' or a PEM public key; get "
        "it from the "
        "bureau through a channel you trust (not only from the service you are checking)"
    )


def inline_or_file(value: str) -> str:
    """A key (or any short text) given inline, or the text of the file it names: how every
    command takes a public key."""
    path = Path(value)
    try:
        named = path.is_file()
    except OSError:  # a long inline value is no file name (ENAMETOOLONG)
        named = False
    return path.read_text(encoding="utf-8").strip() if named else value.strip()


def load_bureau_key(value: str) -> BureauKey:
    """:func:`parse_bureau_key` of ``value``, or of the file it names."""
    return parse_bureau_key(inline_or_file(value))


def _sm2_raw(raw: bytes) -> bytes:
    try:
        return SM2PublicKey.from_raw(raw).raw()
    except ValueError:
        raise NoteError(
            "the bureau key is 65 bytes but not a point of the SM2 curve; copy it whole"
        ) from None


def _pem_public_raw(text: str) -> bytes:
    try:
        key = serialization.load_pem_public_key(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        key = None
    except UnsupportedAlgorithm:
        # pyca/cryptography has no SM2 curve: Tongsuo reads SM2 keys.
        return _sm2_pem_public_raw(text)
    if not isinstance(key, Ed25519PublicKey):
        raise NoteError(
            "the PEM bureau key is not an Ed25519 or SM2 public key; ask the bureau for its "
            "ledger key"
        )
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _sm2_pem_public_raw(text: str) -> bytes:
    key = tongsuo_serialization.load_pem_public_key(text.encode("ascii"))
    raw = key.public_bytes(
        tongsuo_serialization.Encoding.X962, tongsuo_serialization.PublicFormat.UncompressedPoint
    )
    return _sm2_raw(bytes(raw))


# --- talking to the service ----------------------------------------------------------------------


class LedgerSource:
    """The ledger routes of one service, over HTTP.

    Pass ``client`` to reuse an ``httpx.Client`` (or FastAPI's ``TestClient``, which is one);
    it is then left open by :meth:`close`.
    """

    def __init__(
        self,
        url: str,
        token: str | None,
        client: httpx.Client | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._owns_client = client is None
        self._client = client or httpx.Client(timeout=timeout)

    def __enter__(self) -> LedgerSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def served_key(self) -> BureauKey:
        """The bureau key as the service itself publishes it: trust it only knowingly."""
        body = self._get("/keys")
        try:
            name, raw = parse_vkey(body["ledger_vkey"])
        except (KeyError, TypeError):
            raise LogUnavailable(
                f"{self.url}/v1/keys has no 'ledger_vkey'; pass the bureau "
                "key explicitly with --bureau-key"
            ) from None
        return BureauKey(raw, name, "served")

    def checkpoint(self) -> dict[str, Any]:
        return cast(dict[str, Any], self._get("/ledger/checkpoint"))

    def entries(self, start: int, end: int) -> list[dict[str, Any]]:
        return cast(
            list[dict[str, Any]], self._get("/ledger/entries", start=start, end=end)["entries"]
        )

    def consistency(self, first: int, second: int) -> list[bytes]:
        return _hashes(self._get("/ledger/proofs/consistency", first=first, second=second))

    def inclusion(self, index: int, size: int) -> list[bytes]:
        return _hashes(self._get("/ledger/proofs/inclusion", index=index, size=size))

    def witness(self, note: str, name: str, public_key: bytes) -> dict[str, Any]:
        body = {
            "checkpoint": note,
            "witness": {"name": name, "public_key": base64.b64encode(public_key).decode()},
        }
        return cast(dict[str, Any], self._send("POST", "/ledger/witness", json=body))

    def witnessed(self, size: int | None = None) -> list[dict[str, Any]]:
        params = {} if size is None else {"size": size}
        return cast(list[dict[str, Any]], self._get("/ledger/witnessed", **params)["witnessed"])

    def _get(self, path: str, **params: int) -> Any:
        return self._send("GET", path, params=params)

    def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        # Any: the JSON as the service sent it, not checked here.
        try:
            response = self._client.request(
                method, f"{self.url}/v1{path}", headers=self._headers, **kwargs
            )
        except httpx.HTTPError as exc:
            raise LogUnavailable(
                f"could not reach {self.url} ({type(exc).__name__}: {exc}); "
                "check the URL and that the service is running"
            ) from None
        if not response.is_success:
            raise api_error(response)
        try:
            return response.json()
        except ValueError:
            raise LogUnavailable(
                f"{method} {path} at {self.url} did not answer JSON; check "
                "that the URL is the sandbox service's"
            ) from None


def _hashes(body: Mapping[str, Any]) -> list[bytes]:
    try:
        return [base64.b64decode(h, validate=True) for h in body["proof"]]
    except (KeyError, TypeError, binascii.Error, ValueError):
        raise ProofError("the service sent a proof that is not a list of base64 hashes") from None


# --- the report ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing that did not verify; ``index`` is the first entry it concerns, if any."""

    code: str
    message: str
    index: int | None = None


@dataclass(frozen=True)
class VerifyReport:
    url: str
    key_source: Literal["given", "served"]
    origin: str
    size: int | None  # the signed checkpoint's, once its signature verified
    root_hash: bytes | None
    signers: tuple[str, ...]
    entries_checked: int
    saved_size: int | None
    consistent_with_saved: bool | None  # None: no saved checkpoint, or nothing to prove
    checkpoint: str | None  # the verified signed note, to keep for next time
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad_index(self) -> int | None:
        indexes = [p.index for p in self.problems if p.index is not None]
        return min(indexes) if indexes else None


# --- verifying -----------------------------------------------------------------------------------


def verify_log(source: LedgerSource, key: BureauKey, saved: str | None = None) -> VerifyReport:
    """Verify the whole log behind ``source`` (see the module docstring for what and how)."""
    served = source.checkpoint()
    note = served.get("checkpoint") if isinstance(served, dict) else None
    if not isinstance(note, str):
        raise LogUnavailable(f"{source.url}/v1/ledger/checkpoint sent no signed note")
    origin = key.name or note.partition("\n")[0]
    problems: list[Problem] = []
    try:
        current, signers = open_checkpoint(note, {origin: key.public_key}, origin)
    except NoteError as exc:
        problems.append(Problem("checkpoint_signature", f"the latest checkpoint is refused: {exc}"))
        return VerifyReport(
            source.url, key.source, origin, None, None, (), 0, None, None, None, tuple(problems)
        )
    problems += _served_fields(served, current)
    previous = _open_saved(saved, key, origin, problems) if saved is not None else None
    tree = _download(source, current.size, problems, key.hasher)
    problems += _against(source, tree, current, "root_mismatch", "the latest signed checkpoint")
    consistent: bool | None = None
    if previous is not None:
        consistent, found = _against_saved(source, tree, previous, current)
        problems += found
    return VerifyReport(
        source.url,
        key.source,
        origin,
        current.size,
        current.root_hash,
        tuple(signers),
        tree.size,
        previous.size if previous else None,
        consistent,
        note,
        tuple(problems),
    )


def _served_fields(served: Mapping[str, Any], current: Checkpoint) -> list[Problem]:
    root = base64.b64encode(current.root_hash).decode()
    if served.get("size") == current.size and served.get("root_hash") == root:
        return []
    return [
        Problem(
            "checkpoint_fields",
            "the size or root_hash the service sent beside the signed note differ "
            "from the note; only the signed note is trusted",
        )
    ]


def _open_saved(
    saved: str, key: BureauKey, origin: str, problems: list[Problem]
) -> Checkpoint | None:
    try:
        previous, _ = open_checkpoint(saved, {origin: key.public_key}, origin)
    except NoteError as exc:
        problems.append(
            Problem("saved_checkpoint_signature", f"the saved checkpoint is refused: {exc}")
        )
        return None
    return previous


def _download(
    source: LedgerSource, size: int, problems: list[Problem], hasher: merkle.TreeHasher
) -> merkle.MemoryTree:
    """Fetch entries [0, size) page by page into a tree of their leaf hashes.

    Stops at the first entry that cannot be hashed in its place (missing, out of order,
    undecodable leaf); content problems (event ≠ leaf, non-canonical JSON) are noted and the
    leaf is still hashed, so the roots can tell whether the leaf itself was altered.
    """
    tree = merkle.MemoryTree(hasher=hasher)
    noted = 0
    while tree.size < size:
        page = source.entries(tree.size, size)
        if not page:
            problems.append(
                Problem(
                    "entries_missing",
                    f"the checkpoint has {size} entries but the log served only {tree.size}",
                    tree.size,
                )
            )
            return tree
        for entry in page:
            index = tree.size
            if index >= size:
                break
            leaf, trouble = _leaf_of(entry, index)
            if leaf is None:
                assert trouble is not None
                problems.append(trouble)
                return tree
            if trouble is not None:
                noted += 1
                if noted <= MAX_ENTRY_PROBLEMS:
                    problems.append(trouble)
            tree.append_data(leaf)
    if noted > MAX_ENTRY_PROBLEMS:
        problems.append(
            Problem(
                "entries_more_problems",
                f"{noted - MAX_ENTRY_PROBLEMS} more entries have problems like the ones above",
            )
        )
    return tree


def _leaf_of(entry: Any, index: int) -> tuple[bytes | None, Problem | None]:
    """The leaf bytes of ``entry`` at position ``index``, and what is wrong with it if anything."""
    if not isinstance(entry, dict) or entry.get("index") != index:
        found = entry.get("index") if isinstance(entry, dict) else None
        return None, Problem(
            "entry_index",
            f"expected entry {index} but the log served entry "
            f"{found!r}: entries are missing or out of order",
            index,
        )
    leaf = (
        strict_b64decode(entry["leaf"], canonical=True)
        if isinstance(entry.get("leaf"), str)
        else None
    )
    if leaf is None:
        return None, Problem("entry_leaf", f"entry {index} has no base64 leaf", index)
    try:
        decoded = json.loads(leaf)
    except ValueError:
        return leaf, Problem("entry_event", f"the leaf of entry {index} is not UTF-8 JSON", index)
    if _json_text(decoded) != _json_text(entry.get("event")):
        return leaf, Problem(
            "entry_event",
            f"the event shown for entry {index} is not its "
            "leaf decoded: the service shows something other than what it "
            "logged",
            index,
        )
    try:
        canonical = rfc8785.dumps(decoded) == leaf
    except (ValueError, TypeError):
        canonical = False
    if not canonical:
        return leaf, Problem(
            "entry_not_canonical",
            f"the leaf of entry {index} is not "
            "canonical (RFC 8785) JSON, so the log did not write it",
            index,
        )
    return leaf, None


def _json_text(value: Any) -> str:
    # Strict equality: json.dumps tells true from 1 and 1 from 1.0, which == does not.
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _against(
    source: LedgerSource, tree: merkle.MemoryTree, head: Checkpoint, code: str, what: str
) -> list[Problem]:
    """The first downloaded entry not proven against the signed tree head ``head``."""
    index = first_unproven(source, tree, head.size, head.root_hash)
    if index is None:
        return []
    proven = (
        ""
        if index == 0
        else "entry 0 is proven, "
        if index == 1
        else f"entries 0 to {index - 1} are proven, "
    )
    return [
        Problem(
            code,
            f"the entries do not hash to the root of {what} (size {head.size}): "
            f"{proven}entry {index} is the first the log cannot prove",
            index,
        )
    ]


def _against_saved(
    source: LedgerSource, tree: merkle.MemoryTree, previous: Checkpoint, current: Checkpoint
) -> tuple[bool | None, list[Problem]]:
    if previous.size > current.size:
        return False, [
            Problem(
                "log_truncated",
                f"the saved checkpoint has {previous.size} entries but the log now "
                f"has {current.size}: entries {current.size} to {previous.size - 1} were removed",
                current.size,
            )
        ]
    if previous.size == 0:
        return None, []
    consistent = _consistent(source, previous, current, tree.hasher)
    problems = (
        []
        if consistent
        else [
            Problem(
                "inconsistent",
                f"the log's consistency proof from the saved size {previous.size} to "
                f"{current.size} does not verify: the log rewrote history after you saved the "
                "checkpoint, or one of the two signed checkpoints is a fork",
            )
        ]
    )
    found = _against(source, tree, previous, "saved_root_mismatch", "your saved checkpoint")
    if found and not consistent:
        found = [
            Problem(
                p.code,
                p.message + "; the log's own proofs no longer lead to the "
                "saved root, so the first altered entry is at this index or later",
                p.index,
            )
            for p in found
        ]
    return consistent, problems + found


def _consistent(
    source: LedgerSource, previous: Checkpoint, current: Checkpoint, hasher: merkle.TreeHasher
) -> bool:
    try:
        proof = (
            [] if previous.size == current.size else source.consistency(previous.size, current.size)
        )
        merkle.verify_consistency(
            previous.size, current.size, previous.root_hash, current.root_hash, proof, hasher
        )
    except (ProofError, SandboxAPIError) as exc:
        if isinstance(exc, SandboxAPIError) and exc.status != 400:
            raise
        return False
    return True


def first_unproven(
    source: LedgerSource, tree: merkle.MemoryTree, size: int, root: bytes
) -> int | None:
    """Index of the first leaf of ``tree`` the log cannot prove against the signed tree head
    (``size``, ``root``), or None when all leaves below ``min(tree.size, size)`` are proven.

    Bisects over prefix sizes with consistency proofs; see the module docstring.
    """
    limit = min(tree.size, size)
    if limit == 0 or _proven(source, tree, limit, size, root):
        return None
    proven, unproven = 0, limit
    while unproven - proven > 1:
        middle = (proven + unproven) // 2
        if _proven(source, tree, middle, size, root):
            proven = middle
        else:
            unproven = middle
    return proven


def _proven(
    source: LedgerSource, tree: merkle.MemoryTree, prefix: int, size: int, root: bytes
) -> bool:
    if prefix == size:
        return tree.root(size) == root
    try:
        proof = source.consistency(prefix, size)
        merkle.verify_consistency(prefix, size, tree.root(prefix), root, proof, tree.hasher)
    except SandboxAPIError as exc:
        # A refused proof is an unproven prefix; other failures mean the log cannot be asked.
        if exc.status != 400:
            raise
        return False
    except ProofError:
        return False
    return True


# --- witnessing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cosigned:
    """A checkpoint the witness checked and co-signed, and what the service kept of it."""

    size: int
    root_hash: bytes
    previous_size: int | None
    checkpoint: str
    record: Mapping[str, Any]


def cosign(
    source: LedgerSource,
    key: BureauKey,
    witness_key: PrivateKey,
    name: str,
    previous: str | None = None,
) -> Cosigned:
    """Act as a witness: check the latest checkpoint's bureau signature and, given the last
    checkpoint this witness holds, that the log only grew since; then co-sign and post it.

    A witness checks consistency, not every entry: run :func:`verify_log` for that.
    Raises :class:`NoteError` or :class:`ProofError` and posts nothing when a check fails.
    """
    note = source.checkpoint()["checkpoint"]
    origin = key.name or note.partition("\n")[0]
    current, _ = open_checkpoint(note, {origin: key.public_key}, origin)
    held = None
    if previous is not None:
        held, _ = open_checkpoint(previous, {origin: key.public_key}, origin)
        if held.size > current.size:
            raise ProofError(
                f"the log has {current.size} entries, fewer than the "
                f"{held.size} of the checkpoint you hold: it lost entries; do not "
                "co-sign, and run 'sandbox ledger verify'"
            )
        if held.size > 0:
            proof = [] if held.size == current.size else source.consistency(held.size, current.size)
            merkle.verify_consistency(
                held.size, current.size, held.root_hash, current.root_hash, proof, key.hasher
            )
    cosigned = add_signature(note, name, witness_key)
    record = source.witness(cosigned, name, public_raw(witness_key))
    return Cosigned(current.size, current.root_hash, held.size if held else None, cosigned, record)
