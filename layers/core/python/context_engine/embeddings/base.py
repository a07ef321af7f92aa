"""The embedding interface every backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors, so a dot product is the cosine."""

    @property
    def name(self) -> str:
        """Model id stored next to each vector (vectors of different models never mix)."""
        ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> FloatArray:
        """Shape ``(len(texts), dim)``; ``(0, dim)`` for no texts."""
        ...

    def embed_query(self, text: str) -> FloatArray:
        """Shape ``(dim,)``."""
        ...


def l2_normalize(vectors: npt.ArrayLike) -> FloatArray:
    """Rows scaled to unit length; all-zero rows stay zero instead of becoming NaN."""
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim == 1:
        norm = float(np.linalg.norm(arr))
        return arr / norm if norm > 1e-12 else arr
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    return (arr / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
