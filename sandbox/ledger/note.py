"""Signed checkpoints: C2SP signed notes (c2sp.org/signed-note) with Ed25519 signatures whose
text is a C2SP transparency-log checkpoint (c2sp.org/tlog-checkpoint), or SM2 signatures on an
instance of the ``sm`` crypto suite.

A note is its text, a blank line, then one line per signature::

    <origin>
    <tree size>
    <base64 root hash>

    — <key name> <base64(4-byte key ID || 64-byte Ed25519 signature)>

Witnesses (the regulator) co-sign by appending their own signature line.

SM2 keys. signed-note assigns 0x01 to Ed25519 and leaves 0xff for signature types it does
not assign, "followed by a longer identifier". An SM2 key's signature type is therefore the
bytes ``0xff || "sm2-sm3"`` (:data:`SM2_TYPE`): SM2 (GB/T 32918.2) over the note text with
SM3 and the default user identity ``1234567812345678`` (GB/T 35276), the signature being the
64 bytes ``r || s``. Its public key is the 65-byte uncompressed point, so its verifier key
is ``<name>+<key ID>+base64(0xff || "sm2-sm3" || 0x04 || X || Y)``, and its key ID is
``SM3(name || 0x0A || 0xff || "sm2-sm3" || public key)[:4]``: SM3 where signed-note
recommends SHA-256, so that an instance of the sm suite computes no SHA-256 at all. Which
algorithm a checkpoint is signed with thus shows in its verifier key, and the checkpoint's
root hash is SHA-256 for an Ed25519 log and SM3 for an SM2 one.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from operators.keys import PrivateKey, PublicKey, public_raw, strict_b64decode
from operators.sm2 import InvalidSM2Signature, SM2PublicKey
from operators.suite import Suite, sm3
from sandbox.ledger.errors import NoteError
from sandbox.ledger.merkle import HASH_SIZE

ED25519_TYPE = b"\x01"
SM2_TYPE = b"\xffsm2-sm3"
PUBLIC_KEY_BYTES = 32
SM2_PUBLIC_KEY_BYTES = 65
KEY_ID_BYTES = 4
SIGNATURE_PREFIX = "\u2014 "
# signed-note requires accepting at least 16; the bound keeps a hostile note cheap to reject.
MAX_SIGNATURES = 100

_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_HEX_KEY_ID = re.compile(r"[0-9a-f]{8}")


@dataclass(frozen=True)
class Checkpoint:
    """A log's tree head: who issued it, how many leaves, and the RFC 6962 root hash."""

    origin: str
    size: int
    root_hash: bytes

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin or _has_control(self.origin):
            raise NoteError(
                "checkpoint origin must be a non-empty single line without control "
                "characters, such as 'sandbox.example.gov.cn/ledger'"
            )
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0:
            raise NoteError(f"checkpoint size must be a non-negative integer, got {self.size!r}")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != HASH_SIZE:
            raise NoteError(
                f"checkpoint root hash must be {HASH_SIZE} bytes (SHA-256 or SM3), "
                f"got {len(self.root_hash)}"
            )

    def body(self) -> str:
        root = base64.b64encode(self.root_hash).decode("ascii")
        return f"{self.origin}\n{self.size}\n{root}\n"

    @classmethod
    def parse(cls, body: str) -> Checkpoint:
        if not body.endswith("\n"):
            raise NoteError("checkpoint text must end with a newline")
        lines = body[:-1].split("\n")
        if len(lines) < 3:
            raise NoteError(
                f"checkpoint text has {len(lines)} lines; it needs exactly three: "
                "origin, tree size, base64 root hash"
            )
        if len(lines) > 3:
            raise NoteError(
                "checkpoint has extension lines after the root hash; this log neither "
                "writes nor trusts them, so remove them"
            )
        origin, size_text, root_text = lines
        if not _DECIMAL.fullmatch(size_text):
            raise NoteError(
                "checkpoint tree size must be ASCII decimal digits without leading zeros"
            )
        root = strict_b64decode(root_text, canonical=True)
        if root is None:
            raise NoteError("checkpoint root hash is not canonical standard base64")
        return cls(origin, int(size_text), root)


def key_suite(public_raw: bytes) -> Suite:
    """The crypto suite of a raw public key (Ed25519: 32 bytes, SM2: 65)."""
    return Suite.sm if len(public_raw) == SM2_PUBLIC_KEY_BYTES else Suite.international


def key_id(name: str, public_raw: bytes) -> bytes:
    """The 4-byte key ID: SHA-256(name || 0x0A || 0x01 || public key)[:4] for Ed25519,
    SM3(name || 0x0A || 0xff "sm2-sm3" || public key)[:4] for SM2."""
    _check_public_key(name, public_raw)
    preimage = name.encode("utf-8") + b"\n" + _typed(public_raw)
    if key_suite(public_raw) is Suite.sm:
        return sm3(preimage)[:KEY_ID_BYTES]
    return hashlib.sha256(preimage).digest()[:KEY_ID_BYTES]


def vkey(name: str, public_raw: bytes) -> str:
    """The verifier key string ``<name>+<hex key ID>+<base64(type || public key)>``."""
    _check_key_name(name)
    encoded = base64.b64encode(_typed(public_raw)).decode("ascii")
    return f"{name}+{key_id(name, public_raw).hex()}+{encoded}"


def _typed(public_raw: bytes) -> bytes:
    kind = SM2_TYPE if key_suite(public_raw) is Suite.sm else ED25519_TYPE
    return kind + public_raw


def parse_vkey(text: str) -> tuple[str, bytes]:
    """Split a verifier key string into its key name and raw public key (32-byte Ed25519 or
    65-byte SM2)."""
    # Names cannot contain '+', base64 can: split from the left, at most twice.
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise NoteError(
            "verifier key must look like '<name>+<8 hex digits>+<base64 key>'; "
            "copy it whole from the log's published keys"
        )
    name, hex_id, encoded = parts
    _check_key_name(name)
    raw = strict_b64decode(encoded, canonical=True)
    public_raw = _untyped(raw)
    if public_raw is None:
        raise NoteError(
            f"verifier key for {name} must carry base64 of 0x01 followed by a "
            f"{PUBLIC_KEY_BYTES}-byte Ed25519 public key, or of 0xff 'sm2-sm3' followed by "
            f"a {SM2_PUBLIC_KEY_BYTES}-byte SM2 public key"
        )
    if not _HEX_KEY_ID.fullmatch(hex_id) or bytes.fromhex(hex_id) != key_id(name, public_raw):
        raise NoteError(
            f"verifier key for {name} has key ID {hex_id!r}, which does not match its name "
            "and public key; the key string was altered or mistyped"
        )
    return name, public_raw


def _untyped(raw: bytes | None) -> bytes | None:
    """The public key of a typed key blob, None unless the type and the length agree."""
    if raw is None:
        return None
    if raw[:1] == ED25519_TYPE and len(raw) == 1 + PUBLIC_KEY_BYTES:
        return raw[1:]
    if raw.startswith(SM2_TYPE) and len(raw) == len(SM2_TYPE) + SM2_PUBLIC_KEY_BYTES:
        return raw[len(SM2_TYPE) :]
    return None


def sign_note(body: str, key_name: str, private_key: PrivateKey) -> str:
    """A signed note: ``body``, a blank line and one signature line by ``key_name``."""
    _check_text(body)
    if not body.endswith("\n"):
        raise NoteError("note text must end with a newline; add one before signing")
    return body + "\n" + _signature_line(body, key_name, private_key)


def add_signature(note: str, key_name: str, private_key: PrivateKey) -> str:
    """Co-sign ``note``: append a signature line, replacing an earlier one by the same key.

    The signatures already present are kept as they are, not verified; verify with
    :func:`open_note` before co-signing what another party signed.
    """
    body, signatures = _split_note(note)
    own_id = key_id(key_name, public_raw(private_key))
    kept = [s.line for s in signatures if (s.name, s.key_id) != (key_name, own_id)]
    return body + "\n" + "".join(kept) + _signature_line(body, key_name, private_key)


def open_note(note: str, verifiers: Mapping[str, bytes]) -> tuple[str, list[str]]:
    """Verify ``note`` against trusted keys (key name → raw public key).

    Returns the note text and the names of the trusted keys whose signatures verified.
    Signatures by other keys are ignored, as signed-note requires; a trusted key's signature
    that fails to verify rejects the whole note.
    """
    trusted = {(name, key_id(name, raw)): _public_key(name, raw) for name, raw in verifiers.items()}
    body, signatures = _split_note(note)
    message = body.encode("utf-8")
    verified: list[str] = []
    for sig in signatures:
        public_key = trusted.get((sig.name, sig.key_id))
        if public_key is None or sig.name in verified:
            continue
        try:
            public_key.verify(sig.signature, message)
        except (InvalidSignature, InvalidSM2Signature):
            raise NoteError(
                f"signature by trusted key {sig.name} does not verify: the note text was "
                "changed after signing or the signature was damaged; fetch the note again "
                "from the log"
            ) from None
        verified.append(sig.name)
    if not verified:
        found = ", ".join(sorted({s.name for s in signatures})) or "none"
        known = ", ".join(sorted(verifiers)) or "none"
        raise NoteError(
            f"note has no signature by a trusted key (signed by: {found}; trusted: {known}); "
            "add the signer's public key to the trusted keys if you trust it"
        )
    return body, verified


def open_checkpoint(
    note: str, verifiers: Mapping[str, bytes], origin: str | None = None
) -> tuple[Checkpoint, list[str]]:
    """:func:`open_note`, then parse the text as a checkpoint, of ``origin`` when given."""
    body, names = open_note(note, verifiers)
    checkpoint = Checkpoint.parse(body)
    if origin is not None and checkpoint.origin != origin:
        raise NoteError(
            f"checkpoint is for log {checkpoint.origin!r}, expected {origin!r}; "
            "it belongs to another log"
        )
    return checkpoint, names


@dataclass(frozen=True)
class _Signature:
    name: str
    key_id: bytes
    signature: bytes
    line: str


def _signature_line(body: str, key_name: str, private_key: PrivateKey) -> str:
    _check_key_name(key_name)
    blob = key_id(key_name, public_raw(private_key)) + private_key.sign(body.encode("utf-8"))
    return f"{SIGNATURE_PREFIX}{key_name} {base64.b64encode(blob).decode('ascii')}\n"


def _split_note(note: str) -> tuple[str, list[_Signature]]:
    _check_text(note)
    # The text ends at the last blank line; the text itself may contain blank lines.
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError(
            "note has no blank line between its text and its signature lines; "
            "a signed note is text, an empty line, then '— <key name> <signature>' lines"
        )
    body, block = note[: split + 1], note[split + 2 :]
    if not block.endswith("\n"):
        raise NoteError("note must end with a newline after its last signature line")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(
            f"note has {len(lines)} signature lines; at most {MAX_SIGNATURES} are accepted"
        )
    return body, [_parse_signature_line(line) for line in lines]


def _parse_signature_line(line: str) -> _Signature:
    if not line.startswith(SIGNATURE_PREFIX):
        raise NoteError(
            "every line after the note's last blank line must be a signature line starting "
            "with an em dash (U+2014) and a space"
        )
    name, _, encoded = line[len(SIGNATURE_PREFIX) :].partition(" ")
    _check_key_name(name)
    blob = strict_b64decode(encoded, canonical=True)
    if blob is None or len(blob) <= KEY_ID_BYTES:
        raise NoteError(
            f"signature by {name} must be standard base64 of a 4-byte key ID followed by "
            "the signature"
        )
    return _Signature(name, blob[:KEY_ID_BYTES], blob[KEY_ID_BYTES:], line + "\n")


def _check_text(text: str) -> None:
    if _has_control(text.replace("\n", "")):
        raise NoteError("note contains control characters other than newline; remove them")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise NoteError("note is not valid UTF-8 text") from None


def _check_key_name(name: str) -> None:
    if not name or "+" in name or any(ch.isspace() for ch in name) or _has_control(name):
        raise NoteError(
            f"key name {name!r} is not allowed: it must be non-empty, without spaces or '+'; "
            "use a schema-less URL such as 'sandbox.example.gov.cn/ledger'"
        )


def _check_public_key(name: str, public_raw: bytes) -> None:
    if len(public_raw) not in (PUBLIC_KEY_BYTES, SM2_PUBLIC_KEY_BYTES):
        raise NoteError(
            f"public key for {name} must be the {PUBLIC_KEY_BYTES} raw bytes of an Ed25519 "
            f"key or the {SM2_PUBLIC_KEY_BYTES}-byte point of an SM2 key, got "
            f"{len(public_raw)} bytes"
        )


def _public_key(name: str, raw: bytes) -> PublicKey:
    _check_public_key(name, raw)
    if key_suite(raw) is Suite.international:
        return Ed25519PublicKey.from_public_bytes(raw)
    try:
        return SM2PublicKey.from_raw(raw)
    except ValueError:
        raise NoteError(
            f"public key for {name} is {SM2_PUBLIC_KEY_BYTES} bytes but not a point of the "
            "SM2 curve; copy it whole from the log's published keys"
        ) from None


def _has_control(text: str) -> bool:
    return any(ch < " " for ch in text)
