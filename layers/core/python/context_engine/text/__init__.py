"""Text utilities: BPE token counting and truncation."""

from context_engine.text.tokens import (
    DEFAULT_ENCODING,
    EncodingUnavailableError,
    count_tokens,
    count_tokens_batch,
    get_encoding,
    truncate_batch,
    truncate_to_tokens,
)

__all__ = [
    "DEFAULT_ENCODING",
    "EncodingUnavailableError",
    "count_tokens",
    "count_tokens_batch",
    "get_encoding",
    "truncate_batch",
    "truncate_to_tokens",
]
