"""Near-duplicate removal: the caller's analyzed terms and the size prefilter change nothing."""

from __future__ import annotations

import random

from context_engine.retrieval import analyze, dedupe

WORDS = ["alpha", "beta", "gamma", "delta", "hiking", "family", "camping", "painting", "pottery", "melanie", "caroline"]


def _texts(rng: random.Random, n: int) -> list[str]:
    out = []
    for _ in range(n):
        if out and rng.random() < 0.4:  # a near-copy of an earlier text
            base = rng.choice(out).split()
            if base and rng.random() < 0.5:
                base[rng.randrange(len(base))] = rng.choice(WORDS)
            out.append(" ".join(base + ([rng.choice(WORDS)] if rng.random() < 0.3 else [])))
        else:
            out.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 12))))
    return out


def test_terms_of_gives_the_same_result_as_analyzing_the_text() -> None:
    rng = random.Random(3)
    for _ in range(200):
        texts = _texts(rng, 25)
        plain = dedupe(texts, lambda t: t, limit=20)
        given = dedupe(texts, lambda t: "unused", limit=20, terms_of=analyze)
        assert given == plain


def test_near_duplicate_dropped_and_items_past_the_limit_kept() -> None:
    texts = ["Melanie went hiking with her family", "melanie went hiking with her family!", "pottery class"]
    assert dedupe(texts, lambda t: t) == [texts[0], texts[2]]
    assert dedupe(texts, lambda t: t, limit=1) == texts
