"""Signed-note checkpoints: format, signing, co-signing and verification."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sandbox.ledger.errors import NoteError
from sandbox.ledger.merkle import MemoryTree, leaf_hash
from sandbox.ledger.note import (
    Checkpoint,
    add_signature,
    key_id,
    open_checkpoint,
    open_note,
    parse_vkey,
    sign_note,
    vkey,
)

# Published test vectors of golang.org/x/mod/sumdb/note (note_test.go), an independent
# implementation of the same format: Ed25519 is deterministic, so signing must reproduce them.
GO_SIGNER_SEED = base64.b64decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")[1:]
GO_PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_PETER_SIG = (
    "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqf"
    "qdngotpRZb6KE6RyyBwJnAM=\n"
)
GO_ENOCH_SIG = (
    "\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOT"
    "GwnWLox33WWd1RvMc+QQ=\n"
)

ORIGIN = "sandbox.example.gov.cn/数据局/ledger"
BUREAU = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"bureau").digest())
REGULATOR = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"regulator").digest())
STRANGER = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"stranger").digest())
REGULATOR_NAME = "regulator.example.gov.cn/监管"


def raw(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def checkpoint(size: int = 3) -> Checkpoint:
    tree = MemoryTree(leaf_hash(f"事件 {i}".encode()) for i in range(size))
    return Checkpoint(ORIGIN, size, tree.root())


TRUSTED = {ORIGIN: raw(BUREAU), REGULATOR_NAME: raw(REGULATOR)}


# --- interoperability with the Go reference implementation ----------------------------------


def test_signing_reproduces_the_go_reference_note() -> None:
    signer = Ed25519PrivateKey.from_private_bytes(GO_SIGNER_SEED)
    assert sign_note(GO_TEXT, "PeterNeumann", signer) == GO_TEXT + "\n" + GO_PETER_SIG


def test_verifier_keys_match_the_go_reference() -> None:
    signer = Ed25519PrivateKey.from_private_bytes(GO_SIGNER_SEED)
    assert vkey("PeterNeumann", raw(signer)) == GO_PETER_VKEY
    assert key_id("PeterNeumann", raw(signer)) == bytes.fromhex("c74f20a3")
    assert parse_vkey(GO_PETER_VKEY) == ("PeterNeumann", raw(signer))


def test_go_reference_note_with_two_signatures_opens() -> None:
    peter, enoch = parse_vkey(GO_PETER_VKEY), parse_vkey(GO_ENOCH_VKEY)
    note = GO_TEXT + "\n" + GO_PETER_SIG + GO_ENOCH_SIG
    assert open_note(note, dict([peter, enoch])) == (GO_TEXT, ["PeterNeumann", "EnochRoot"])
    assert open_note(note, dict([enoch])) == (GO_TEXT, ["EnochRoot"])
    with pytest.raises(NoteError, match="no signature by a trusted key"):
        open_note(note, {})


def test_parse_vkey_rejects_altered_keys() -> None:
    name, public = parse_vkey(GO_PETER_VKEY)
    bad_keys = [
        GO_PETER_VKEY.replace("c74f20a3", "c74f20a4"),  # key ID does not match
        GO_PETER_VKEY.replace("PeterNeumann", "PeterNeuman"),  # name does not match the ID
        GO_PETER_VKEY[:-4],  # truncated key
        GO_PETER_VKEY.replace("+ARpc", "+Ahpc"),  # algorithm byte 0x02
        "PeterNeumann+c74f20a3",
    ]
    for bad in bad_keys:
        with pytest.raises(NoteError):
            parse_vkey(bad)
    assert (name, len(public)) == ("PeterNeumann", 32)


def test_key_id_is_sha256_of_name_newline_type_and_key() -> None:
    public = raw(BUREAU)
    want = hashlib.sha256(ORIGIN.encode("utf-8") + b"\x0a\x01" + public).digest()[:4]
    assert key_id(ORIGIN, public) == want
    encoded = base64.b64encode(bytes([1]) + public).decode()
    assert vkey(ORIGIN, public) == f"{ORIGIN}+{want.hex()}+{encoded}"
    with pytest.raises(NoteError, match="32 raw bytes"):
        key_id(ORIGIN, public[:31])


# --- checkpoints ---------------------------------------------------------------------------


def test_checkpoint_body_is_origin_size_and_base64_root() -> None:
    cp = checkpoint(3)
    assert cp.body() == f"{ORIGIN}\n3\n{base64.b64encode(cp.root_hash).decode()}\n"
    assert Checkpoint.parse(cp.body()) == cp
    empty = Checkpoint("log.example", 0, hashlib.sha256(b"").digest())
    assert empty.body() == "log.example\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"


@pytest.mark.parametrize(
    "body",
    [
        "log.example\n3\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",  # no final newline
        "log.example\n03\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n",  # leading zero
        "log.example\n-3\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n",
        "log.example\n\uff13\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n",  # fullwidth 3
        "log.example\n3\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU\n",  # bad padding
        "log.example\n3\nAAAA\n",  # 3 bytes, not a hash
        "\n3\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n",  # empty origin
        "log.example\n3\n",
        "log.example\n3\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\nextension\n",
    ],
)
def test_malformed_checkpoints_are_rejected(body: str) -> None:
    with pytest.raises(NoteError) as caught:
        Checkpoint.parse(body)
    assert caught.value.code == "ledger_note_invalid"


def test_checkpoint_values_are_validated() -> None:
    with pytest.raises(NoteError, match="32 bytes"):
        Checkpoint(ORIGIN, 1, b"\x00" * 31)
    with pytest.raises(NoteError, match="non-negative"):
        Checkpoint(ORIGIN, -1, b"\x00" * 32)
    with pytest.raises(NoteError, match="single line"):
        Checkpoint("a\nb", 1, b"\x00" * 32)


# --- sign, co-sign, open -------------------------------------------------------------------


def test_sign_then_open_round_trip() -> None:
    cp = checkpoint(5)
    note = sign_note(cp.body(), ORIGIN, BUREAU)
    assert note.startswith(cp.body() + "\n\u2014 " + ORIGIN + " ")
    assert open_note(note, TRUSTED) == (cp.body(), [ORIGIN])
    assert open_checkpoint(note, TRUSTED, origin=ORIGIN) == (cp, [ORIGIN])


def test_signature_line_holds_key_id_and_ed25519_signature() -> None:
    body = checkpoint().body()
    note = sign_note(body, ORIGIN, BUREAU)
    blob = base64.b64decode(note.rsplit(" ", 1)[1])
    assert len(blob) == 4 + 64
    assert blob[:4] == key_id(ORIGIN, raw(BUREAU))
    BUREAU.public_key().verify(blob[4:], body.encode("utf-8"))


def test_tampered_body_is_rejected() -> None:
    body = checkpoint(5).body()
    note = sign_note(body, ORIGIN, BUREAU)
    tampered = note.replace("\n5\n", "\n6\n", 1)
    assert tampered != note
    with pytest.raises(NoteError, match="does not verify"):
        open_note(tampered, TRUSTED)


def test_tampered_signature_is_rejected() -> None:
    note = sign_note(checkpoint().body(), ORIGIN, BUREAU)
    head, encoded = note[:-1].rsplit(" ", 1)
    blob = bytearray(base64.b64decode(encoded))
    blob[10] ^= 0x40
    tampered = f"{head} {base64.b64encode(bytes(blob)).decode()}\n"
    with pytest.raises(NoteError, match="does not verify"):
        open_note(tampered, TRUSTED)


def test_unknown_key_is_rejected() -> None:
    note = sign_note(checkpoint().body(), "someone.example/log", STRANGER)
    with pytest.raises(NoteError, match="no signature by a trusted key"):
        open_note(note, TRUSTED)


def test_known_name_with_another_key_is_ignored_not_trusted() -> None:
    # Same name as the bureau's key, different key: a different key ID, so an unknown key.
    forged = sign_note(checkpoint().body(), ORIGIN, STRANGER)
    with pytest.raises(NoteError, match="no signature by a trusted key"):
        open_note(forged, TRUSTED)
    cosigned = add_signature(forged, REGULATOR_NAME, REGULATOR)
    assert open_note(cosigned, TRUSTED)[1] == [REGULATOR_NAME]


def test_co_signature_adds_a_second_verified_name() -> None:
    body = checkpoint(7).body()
    note = sign_note(body, ORIGIN, BUREAU)
    cosigned = add_signature(note, REGULATOR_NAME, REGULATOR)
    assert cosigned.startswith(note)
    assert open_note(cosigned, TRUSTED) == (body, [ORIGIN, REGULATOR_NAME])
    assert open_note(cosigned, {REGULATOR_NAME: raw(REGULATOR)}) == (body, [REGULATOR_NAME])
    # Co-signing again replaces the earlier line instead of piling up duplicates.
    assert add_signature(cosigned, REGULATOR_NAME, REGULATOR) == cosigned


def test_co_signature_keeps_foreign_signatures() -> None:
    peter, enoch = parse_vkey(GO_PETER_VKEY), parse_vkey(GO_ENOCH_VKEY)
    note = add_signature(GO_TEXT + "\n" + GO_PETER_SIG + GO_ENOCH_SIG, ORIGIN, BUREAU)
    assert open_note(note, {**dict([peter, enoch]), ORIGIN: raw(BUREAU)})[1] == [
        "PeterNeumann",
        "EnochRoot",
        ORIGIN,
    ]


def test_checkpoint_of_another_log_is_rejected() -> None:
    note = sign_note(checkpoint().body(), ORIGIN, BUREAU)
    with pytest.raises(NoteError, match="another log"):
        open_checkpoint(note, TRUSTED, origin="other.example/log")


@pytest.mark.parametrize(
    "note",
    [
        GO_TEXT,
        GO_TEXT + "\n",
        GO_TEXT + "\n" + GO_PETER_SIG[:-1],
        "\x01" + GO_TEXT + "\n" + GO_PETER_SIG,
        "\ud800" + GO_TEXT + "\n" + GO_PETER_SIG,
        GO_TEXT + "\n" + GO_PETER_SIG.replace("PeterNeumann", "Peter Neumann"),
        GO_TEXT + "\n" + GO_PETER_SIG + "Unexpected line.\n",
        GO_TEXT + "\n" + GO_PETER_SIG.replace("\u2014", "-"),
        GO_TEXT + "\n" + "\u2014 PeterNeumann AAAA\n",
        GO_TEXT + "\n" + GO_PETER_SIG * 101,
    ],
)
def test_malformed_notes_are_rejected(note: str) -> None:
    peter = parse_vkey(GO_PETER_VKEY)
    with pytest.raises(NoteError):
        open_note(note, dict([peter]))


def test_signing_refuses_bad_text_and_key_names() -> None:
    with pytest.raises(NoteError, match="end with a newline"):
        sign_note("abc", ORIGIN, BUREAU)
    with pytest.raises(NoteError, match="control characters"):
        sign_note("a\tb\n", ORIGIN, BUREAU)
    for name in ["", "a+b", "a b", "数据\u3000局"]:
        with pytest.raises(NoteError, match="key name"):
            sign_note("abc\n", name, BUREAU)
