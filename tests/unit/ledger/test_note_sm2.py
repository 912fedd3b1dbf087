"""Signed-note checkpoints signed with SM2 (the sm suite's signature type 0xff "sm2-sm3")."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from operators.keys import generate_key, public_raw
from operators.sm2 import SM2PrivateKey, SM2PublicKey
from operators.suite import Suite
from sandbox.ledger.errors import NoteError
from sandbox.ledger.merkle import SM3, MemoryTree
from sandbox.ledger.note import (
    SM2_TYPE,
    Checkpoint,
    add_signature,
    key_id,
    key_suite,
    open_checkpoint,
    open_note,
    parse_vkey,
    sign_note,
    vkey,
)

ORIGIN = "sandbox.example.gov.cn/ledger"
# GB/T 32918.5 Annex A's key: a fixed key makes the key ID and verifier key fixed too.
STANDARD_KEY = SM2PrivateKey.from_scalar(
    int("3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8", 16)
)


def sm3(data: bytes) -> bytes:
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize()


def body() -> str:
    tree = MemoryTree(hasher=SM3)
    for i in range(5):
        tree.append_data(f"event {i}".encode())
    return Checkpoint(ORIGIN, tree.size, tree.root()).body()


def test_the_key_id_is_sm3_over_name_type_and_key() -> None:
    raw = public_raw(STANDARD_KEY)
    expected = sm3(ORIGIN.encode() + b"\n" + b"\xffsm2-sm3" + raw)[:4]
    assert SM2_TYPE == b"\xffsm2-sm3"
    assert key_id(ORIGIN, raw) == expected
    assert key_suite(raw) is Suite.sm


def test_the_verifier_key_carries_the_type_and_parses_back() -> None:
    raw = public_raw(STANDARD_KEY)
    text = vkey(ORIGIN, raw)
    name, hex_id, encoded = text.split("+", 2)
    assert (name, bytes.fromhex(hex_id)) == (ORIGIN, key_id(ORIGIN, raw))
    assert base64.b64decode(encoded) == b"\xffsm2-sm3" + raw
    assert parse_vkey(text) == (ORIGIN, raw)


def test_an_sm2_checkpoint_is_signed_opened_and_witnessed() -> None:
    bureau, witness = generate_key(Suite.sm), generate_key(Suite.sm)
    note = sign_note(body(), ORIGIN, bureau)
    blob = base64.b64decode(note.rsplit(" ", 1)[1])
    assert len(blob) == 4 + 64  # key ID || r || s
    SM2PublicKey.from_raw(public_raw(bureau)).verify(blob[4:], body().encode())
    cosigned = add_signature(note, "regulator.example.gov.cn", witness)
    checkpoint, names = open_checkpoint(
        cosigned,
        {ORIGIN: public_raw(bureau), "regulator.example.gov.cn": public_raw(witness)},
        ORIGIN,
    )
    assert checkpoint.size == 5
    assert names == [ORIGIN, "regulator.example.gov.cn"]


def test_an_altered_sm2_note_is_refused() -> None:
    bureau = generate_key(Suite.sm)
    note = sign_note(body(), ORIGIN, bureau).replace("\n5\n", "\n6\n")
    with pytest.raises(NoteError, match="does not verify"):
        open_note(note, {ORIGIN: public_raw(bureau)})


def test_an_ed25519_key_of_the_same_name_does_not_open_an_sm2_note() -> None:
    note = sign_note(body(), ORIGIN, generate_key(Suite.sm))
    ed = Ed25519PrivateKey.generate()
    with pytest.raises(NoteError, match="no signature by a trusted key"):
        open_note(note, {ORIGIN: public_raw(ed)})


def test_a_verifier_key_whose_type_and_length_disagree_is_refused() -> None:
    raw = public_raw(STANDARD_KEY)
    forged = base64.b64encode(b"\x01" + raw).decode()
    with pytest.raises(NoteError, match="0xff 'sm2-sm3'"):
        parse_vkey(f"{ORIGIN}+{key_id(ORIGIN, raw).hex()}+{forged}")
