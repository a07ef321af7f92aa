"""A deterministic, model-free embedder for tests and for running without any model.

Feature hashing of lowercase word unigrams and bigrams with a signed bucket: texts that
share words get a positive cosine. Uses blake2b rather than ``hash()`` so vectors are the
same in every process (PYTHONHASHSEED randomises ``hash``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from context_engine.embeddings.base import FloatArray, l2_normalize

_WORD = re.compile(r"[a-z0-9]+")


class HashingEmbedder:
    """Signed feature hashing of word unigrams (weight 1) and bigrams (weight 0.5)."""

    def __init__(self, dim: int = 384, *, bigrams: bool = True) -> None:
        if dim <= 0:
            raise ValueError("dim must be positive")
        self._dim = dim
        self._bigrams = bigrams

    @property
    def name(self) -> str:
        return f"hashing-{self._dim}"

    @property
    def dim(self) -> int:
        return self._dim

    def _bucket(self, feature: str) -> tuple[int, float]:
        digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
        value = int.from_bytes(digest, "little")
        return value % self._dim, (1.0 if (value >> 63) & 1 else -1.0)

    def _vector(self, text: str) -> FloatArray:
        vec = np.zeros(self._dim, dtype=np.float32)
        words = _WORD.findall(text.lower())
        features: list[tuple[str, float]] = [(w, 1.0) for w in words]
        if self._bigrams:
            features += [(f"{a} {b}", 0.5) for a, b in zip(words, words[1:], strict=False)]
        for feature, weight in features:
            idx, sign = self._bucket(feature)
            vec[idx] += sign * weight
        return vec

    def embed(self, texts: Sequence[str]) -> FloatArray:
        if len(texts) == 0:
            return np.zeros((0, self._dim), dtype=np.float32)
        return l2_normalize(np.stack([self._vector(t) for t in texts]))

    def embed_query(self, text: str) -> FloatArray:
        return self.embed([text])[0]
