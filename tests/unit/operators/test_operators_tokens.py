import re

from operators.tokens import TOKEN_PREFIX, hash_token, new_token, token_matches


def test_new_token_has_prefix_and_enough_entropy() -> None:
    token = new_token()
    assert token.startswith("sbx_")
    assert TOKEN_PREFIX == "sbx_"
    # token_urlsafe(32) yields 43 URL-safe characters.
    assert re.fullmatch(r"sbx_[A-Za-z0-9_-]{43}", token)


def test_new_tokens_differ() -> None:
    assert len({new_token() for _ in range(50)}) == 50


def test_hash_is_hex_sha256_and_stable() -> None:
    assert hash_token("sbx_abc") == hash_token("sbx_abc")
    assert re.fullmatch(r"[0-9a-f]{64}", hash_token("sbx_abc"))
    # Known vector: sha256(b"abc").
    assert hash_token("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_hash_differs_for_different_tokens() -> None:
    assert hash_token("sbx_a") != hash_token("sbx_b")


def test_token_matches_its_own_hash_only() -> None:
    token = new_token()
    stored = hash_token(token)
    assert token_matches(token, stored)
    assert not token_matches(new_token(), stored)
    assert not token_matches(token[:-1], stored)
    assert not token_matches(token, stored.upper())


def test_token_matches_tolerates_malformed_stored_hash() -> None:
    assert not token_matches("sbx_x", "")
    assert not token_matches("sbx_x", "不是哈希")
