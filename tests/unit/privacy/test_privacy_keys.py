"""API key format, generation and hashing."""

from __future__ import annotations

import hashlib
import string

from hypothesis import given
from hypothesis import strategies as st

from context_engine.privacy.keys import (
    API_KEY_BODY_LENGTH,
    API_KEY_PATTERN,
    API_KEY_PREFIX,
    generate_api_key,
    hash_api_key,
    is_api_key,
    verify_api_key,
)

URLSAFE = string.ascii_letters + string.digits + "-_"


def test_generated_keys_have_the_documented_format() -> None:
    keys = {generate_api_key() for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert key.startswith(API_KEY_PREFIX)
        assert len(key) == len(API_KEY_PREFIX) + API_KEY_BODY_LENGTH
        assert set(key[len(API_KEY_PREFIX) :]) <= set(URLSAFE)
        assert is_api_key(key)


def test_hash_is_sha256_hex_of_the_key() -> None:
    key = generate_api_key()
    assert hash_api_key(key) == hashlib.sha256(key.encode()).hexdigest()
    assert verify_api_key(key, hash_api_key(key))
    assert verify_api_key(key, hash_api_key(key).upper())
    assert not verify_api_key(generate_api_key(), hash_api_key(key))


def test_pattern_boundaries() -> None:
    key = generate_api_key()
    assert API_KEY_PATTERN.search(f"Authorization: Bearer {key}").group() == key  # type: ignore[union-attr]
    assert API_KEY_PATTERN.search(f'{{"k":"{key}"}}').group() == key  # type: ignore[union-attr]
    assert API_KEY_PATTERN.search(f"x{key}") is None  # glued to a longer token
    assert API_KEY_PATTERN.search(f"{key}A") is None  # 41 body characters
    assert API_KEY_PATTERN.search(key[:-1]) is None
    assert not is_api_key(f" {key}")


@given(body=st.text(alphabet=URLSAFE, min_size=API_KEY_BODY_LENGTH, max_size=API_KEY_BODY_LENGTH))
def test_any_body_in_the_alphabet_matches(body: str) -> None:
    assert is_api_key(API_KEY_PREFIX + body)
