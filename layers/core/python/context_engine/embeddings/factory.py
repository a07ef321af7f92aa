"""Build an embedder from its short name (settings carry the name and keyword options)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from context_engine.embeddings.base import Embedder


def _minilm(**kw: Any) -> Embedder:
    from context_engine.embeddings.minilm import MiniLMOnnxEmbedder

    return MiniLMOnnxEmbedder(**kw)


def _bedrock(**kw: Any) -> Embedder:
    from context_engine.embeddings.bedrock import BedrockTitanEmbedder

    return BedrockTitanEmbedder(**kw)


def _hashing(**kw: Any) -> Embedder:
    from context_engine.embeddings.hashing import HashingEmbedder

    return HashingEmbedder(**kw)


# Imports are deferred so that choosing "bedrock" never loads onnxruntime and vice versa.
_BUILDERS: dict[str, Callable[..., Embedder]] = {
    "minilm": _minilm,
    "bedrock": _bedrock,
    "hashing": _hashing,
}


def available_embedders() -> list[str]:
    return sorted(_BUILDERS)


def build_embedder(name: str, **kw: Any) -> Embedder:
    """``"minilm"`` | ``"bedrock"`` | ``"hashing"``; ``kw`` go to the implementation's constructor."""
    try:
        builder = _BUILDERS[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown embedder {name!r}; choose one of {available_embedders()}") from None
    return builder(**kw)
