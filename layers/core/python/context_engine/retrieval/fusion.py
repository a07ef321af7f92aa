"""Score normalisation and rank fusion over candidate lists."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def zscore(values: Sequence[float] | npt.ArrayLike) -> FloatArray:
    """Standard scores; all-equal inputs give zeros (no signal) instead of NaN."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return arr
    std = float(arr.std())
    if std < 1e-12:
        return np.zeros_like(arr)
    return (arr - float(arr.mean())) / std


def minmax(values: Sequence[float] | npt.ArrayLike) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return arr
    lo, hi = float(arr.min()), float(arr.max())
    if hi - lo < 1e-12:
        return np.zeros_like(arr)
    return (arr - lo) / (hi - lo)


def rrf(
    rankings: Sequence[Sequence[Hashable]], *, k: float = 60.0, weights: Sequence[float] | None = None
) -> dict[Hashable, float]:
    """Reciprocal-rank fusion: sum of ``w / (k + rank)`` (rank from 1) over the rankings."""
    if weights is not None and len(weights) != len(rankings):
        raise ValueError("one weight per ranking")
    out: dict[Hashable, float] = {}
    for j, ranking in enumerate(rankings):
        w = 1.0 if weights is None else weights[j]
        for rank, key in enumerate(ranking, start=1):
            out[key] = out.get(key, 0.0) + w / (k + rank)
    return out


def weighted_sum(signals: Mapping[str, FloatArray], weights: Mapping[str, float]) -> FloatArray:
    """Σ weight·signal over the named signals that have a weight (all arrays the same length)."""
    total: FloatArray | None = None
    for name, w in weights.items():
        if w and name in signals:
            total = w * signals[name] if total is None else total + w * signals[name]
    if total is None:
        n = len(next(iter(signals.values()))) if signals else 0
        return np.zeros(n)
    return total
