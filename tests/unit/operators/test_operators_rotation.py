import json

import pytest

from contracts.canonical import CONTRACT_DOMAIN
from operators.errors import InvalidPublicKey, SignatureInvalid
from operators.keys import generate_private_key, public_key_b64, sign, verify
from operators.rotation import KEY_ROTATION_DOMAIN, rotation_bytes
from operators.submission import SUBMISSION_DOMAIN

NEW = public_key_b64(generate_private_key())


def test_layout_is_domain_prefix_then_canonical_json() -> None:
    data = rotation_bytes("o-7", NEW, "k-1")
    assert KEY_ROTATION_DOMAIN == b"public-data-sandbox/key-rotation/v1\n"
    assert data.startswith(KEY_ROTATION_DOMAIN)
    body = data[len(KEY_ROTATION_DOMAIN) :]
    assert json.loads(body) == {"principal_id": "o-7", "public_key": NEW, "previous_key_id": "k-1"}
    assert body == json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    "changed",
    [
        ("o-8", NEW, "k-1"),
        ("o-7", NEW, "k-2"),
        ("o-7", public_key_b64(generate_private_key()), "k-1"),
    ],
)
def test_every_field_is_bound(changed: tuple[str, str, str]) -> None:
    key = generate_private_key()
    signature = sign(key, rotation_bytes("o-7", NEW, "k-1"))
    with pytest.raises(SignatureInvalid):
        verify(public_key_b64(key), rotation_bytes(*changed), signature)


def test_domains_differ_from_other_signed_kinds() -> None:
    assert len({KEY_ROTATION_DOMAIN, SUBMISSION_DOMAIN, CONTRACT_DOMAIN}) == 3


def test_malformed_new_key_is_refused_before_signing() -> None:
    with pytest.raises(InvalidPublicKey):
        rotation_bytes("o-7", "not-a-key", "k-1")
