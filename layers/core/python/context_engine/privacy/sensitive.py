"""Names of fields whose values must never reach logs or audit details.

Shared by the log redaction filter and the audit record validation so that both agree
on what "content" and "secret" mean. Names are compared after normalisation
(lower case, only letters and digits), so ``api_key``, ``Api-Key`` and ``apiKey`` are
the same name.
"""

from __future__ import annotations

import re
from typing import Final

# Turn text and anything derived from it (request bodies, rendered context, tool I/O).
CONTENT_KEYS: Final[frozenset[str]] = frozenset(
    {
        "question",
        "answer",
        "content",
        "code",
        "stdin",
        "stdout",
        "stderr",
        "text",
        "summary",
        "prompt",
        "query",
        "context",
        "body",
        "messages",
        "arguments",
        "snippets",
    }
)

# Credentials. Matched exactly or as a suffix (``db_password``, ``github_token``).
SECRET_KEYS: Final[frozenset[str]] = frozenset(
    {
        "authorization",
        "proxyauthorization",
        "cookie",
        "setcookie",
        "apikey",
        "password",
        "passwd",
        "secret",
        "token",
        "credential",
        "credentials",
        "privatekey",
        "hashkey",
        "signature",
        "dsn",
    }
)

_NON_ALNUM = re.compile(r"[^a-z0-9]")


def normalise_key(name: str) -> str:
    """``X-Api-Key`` -> ``xapikey``: the form the sets above are written in."""
    return _NON_ALNUM.sub("", name.lower())


def is_content_key(name: str) -> bool:
    return normalise_key(name) in CONTENT_KEYS


def is_secret_key(name: str) -> bool:
    norm = normalise_key(name)
    # Suffix match catches prefixed variants; "tokens"/"token_count" do not end in a secret word.
    return any(norm.endswith(secret) for secret in SECRET_KEYS)


def is_sensitive_key(name: str) -> bool:
    """True for a field whose value is content or a credential."""
    return is_content_key(name) or is_secret_key(name)
