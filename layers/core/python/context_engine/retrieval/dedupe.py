"""Near-duplicate removal for ranked items (turns, memories) before packing.

Two items are near-duplicates when the Jaccard overlap of their analyzed term sets reaches
the threshold (repeated greetings, a memory that restates a turn). The higher-ranked item
is kept. Only the top of the list matters for packing, so ``limit`` bounds the work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from context_engine.retrieval.lexical import analyze

T = TypeVar("T")


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def dedupe(
    items: Sequence[T],
    text_of: Callable[[T], str],
    *,
    threshold: float = 0.85,
    limit: int = 200,
    terms_of: Callable[[T], Iterable[str]] | None = None,
) -> list[T]:
    """``items`` (best first) without near-duplicates of a better item; items past ``limit``
    are kept as they are. ``terms_of`` (optional) gives an item's analyzed terms when the
    caller already has them (``analyze(text_of(item))`` otherwise)."""
    kept: list[T] = []
    kept_sets: list[tuple[frozenset[str], int]] = []
    for item in items[:limit]:
        terms = frozenset(terms_of(item) if terms_of is not None else analyze(text_of(item)))
        n = len(terms)
        # |a ∩ b| / |a ∪ b| <= min(|a|, |b|) / max(|a|, |b|): sets of very different sizes
        # cannot reach the threshold, so only similar sizes are intersected (the slack keeps
        # float rounding from skipping a pair that jaccard() would accept).
        duplicate = False
        for other, m in kept_sets:
            small, big = (n, m) if n <= m else (m, n)
            if small + 1e-9 >= threshold * big:
                # jaccard(terms, other) without building the union: |a ∪ b| = |a| + |b| - |a ∩ b|
                common = len(terms & other)
                if (common / (n + m - common) if n + m else 1.0) >= threshold:
                    duplicate = True
                    break
        if not duplicate:
            kept.append(item)
            kept_sets.append((terms, n))
    return kept + list(items[limit:])
