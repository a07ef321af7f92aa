import pytest

from context_engine.text import tokens
from context_engine.text.tokens import (
    count_tokens,
    count_tokens_batch,
    get_encoding,
    truncate_batch,
    truncate_to_tokens,
)

SENTENCE = "The quick brown fox jumps over the lazy dog. "


def test_offline_cl100k_matches_known_ids():
    enc = get_encoding("cl100k_base")
    # Reference ids from cl100k_base for "hello world".
    assert enc.encode_ordinary("hello world") == [15339, 1917]
    assert get_encoding() is get_encoding("cl100k_base")


def test_count_tokens_basic_and_special_text():
    assert count_tokens("") == 0
    assert count_tokens("hello world") == 2
    # Special-token text in user input is counted as ordinary text instead of raising.
    assert count_tokens("<|endoftext|>") > 1


def test_count_long_text_bypasses_cache_but_agrees():
    long_text = SENTENCE * 200
    assert len(long_text) > tokens._CACHE_MAX_CHARS
    assert count_tokens(long_text) == len(get_encoding().encode_ordinary(long_text))


def test_count_tokens_batch_small_and_threaded():
    texts = [SENTENCE * (i % 5) + str(i) for i in range(300)]
    expected = [count_tokens(t) for t in texts]
    assert count_tokens_batch(texts) == expected
    assert count_tokens_batch(texts[:3]) == expected[:3]


@pytest.mark.parametrize("limit", [1, 2, 5, 9, 17, 40, 99])
def test_truncate_never_over_and_is_prefix(limit):
    text = SENTENCE * 10
    out = truncate_to_tokens(text, limit)
    assert count_tokens(out) <= limit
    assert text.startswith(out)
    assert out  # something fits in every limit >= 1


def test_truncate_prefers_word_boundary():
    text = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda"
    out = truncate_to_tokens(text, 6)
    assert text.startswith(out)
    # The cut lands between words, not inside one.
    assert text[len(out)] == " "


def test_truncate_returns_text_unchanged_when_it_fits():
    assert truncate_to_tokens("short text", 10) == "short text"
    assert truncate_to_tokens("anything", 0) == ""
    assert truncate_to_tokens("", 5) == ""


def test_truncate_with_suffix_counts_suffix():
    text = SENTENCE * 10
    out = truncate_to_tokens(text, 8, suffix=" …")
    assert out.endswith(" …")
    assert count_tokens(out) <= 8
    assert truncate_to_tokens("fits", 8, suffix=" …") == "fits"


def test_truncate_multibyte_never_splits_characters():
    text = "héllo wörld ünïcödé 🎉🎉🎉 日本語のテキスト " * 5
    for limit in range(1, 30):
        out = truncate_to_tokens(text, limit)
        assert "\ufffd" not in out
        assert count_tokens(out) <= limit
        assert text.startswith(out)


def test_truncate_batch():
    out = truncate_batch([SENTENCE * 5, "tiny"], 4)
    assert out[1] == "tiny"
    assert count_tokens(out[0]) <= 4


def test_unknown_encoding_raises():
    with pytest.raises(tokens.EncodingUnavailableError):
        get_encoding("no_such_encoding")
