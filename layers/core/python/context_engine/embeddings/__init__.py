"""Text embeddings behind one interface: local MiniLM (ONNX), Bedrock Titan v2, hashing (tests)."""

from context_engine.embeddings.base import Embedder, FloatArray, l2_normalize
from context_engine.embeddings.factory import available_embedders, build_embedder
from context_engine.embeddings.hashing import HashingEmbedder

__all__ = [
    "Embedder",
    "FloatArray",
    "HashingEmbedder",
    "available_embedders",
    "build_embedder",
    "l2_normalize",
]
