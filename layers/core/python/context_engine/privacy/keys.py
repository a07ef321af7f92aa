"""API key format, generation and hashing.

A key is ``ce_`` followed by 40 URL-safe base64 characters (30 random bytes, 240 bits).
The fixed prefix makes keys recognisable to secret scanners and to the log redaction
filter (``API_KEY_PATTERN``); only ``hash_api_key(key)`` is ever stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Final

API_KEY_PREFIX: Final = "ce_"
API_KEY_BODY_LENGTH: Final = 40
_API_KEY_RANDOM_BYTES: Final = 30  # 30 bytes -> exactly 40 base64url characters, no padding

# Anchored by look-arounds instead of \b because '-' and '_' are part of the body alphabet.
API_KEY_PATTERN: Final[re.Pattern[str]] = re.compile(
    rf"(?<![A-Za-z0-9_-]){API_KEY_PREFIX}[A-Za-z0-9_-]{{{API_KEY_BODY_LENGTH}}}(?![A-Za-z0-9_-])"
)


def generate_api_key() -> str:
    """A new random API key; show it once, store only ``hash_api_key`` of it."""
    return API_KEY_PREFIX + secrets.token_urlsafe(_API_KEY_RANDOM_BYTES)


def is_api_key(value: str) -> bool:
    """True when ``value`` is exactly one key in our format (no surrounding text)."""
    return API_KEY_PATTERN.fullmatch(value) is not None


def hash_api_key(key: str) -> str:
    """SHA-256 hex of the key's UTF-8 bytes: what the key table stores and looks up.

    A plain (unsalted) hash is enough because keys carry 240 random bits, and it keeps
    the lookup an equality match on an indexed column.
    """
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def verify_api_key(key: str, stored_hash: str) -> bool:
    """Constant-time comparison of a presented key against a stored hash."""
    return hmac.compare_digest(hash_api_key(key), stored_hash.lower())
