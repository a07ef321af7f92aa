import numpy as np
import pytest

from context_engine.embeddings import (
    Embedder,
    HashingEmbedder,
    available_embedders,
    build_embedder,
    l2_normalize,
)


def test_hashing_shape_norm_and_determinism():
    emb = HashingEmbedder(dim=64)
    vecs = emb.embed(["red apples and green pears", "Red apples!", ""])
    assert vecs.shape == (3, 64) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs[:2], axis=1), 1.0, atol=1e-6)
    assert np.allclose(vecs[2], 0.0)  # no words: zero vector, not NaN
    assert np.array_equal(emb.embed(["red apples and green pears"])[0], vecs[0])
    assert np.array_equal(HashingEmbedder(dim=64).embed_query("Red apples!"), vecs[1])


def test_hashing_shared_words_score_higher():
    emb = HashingEmbedder()
    q = emb.embed_query("adoption agency interview")
    docs = emb.embed(["I had my adoption agency interview today", "we went camping by the lake"])
    scores = docs @ q
    assert scores[0] > 0.3 > scores[1]


def test_hashing_empty_batch_and_bad_dim():
    assert HashingEmbedder(dim=8).embed([]).shape == (0, 8)
    with pytest.raises(ValueError):
        HashingEmbedder(dim=0)


def test_protocol_is_satisfied():
    assert isinstance(HashingEmbedder(), Embedder)


def test_factory_builds_each_kind_and_rejects_unknown():
    assert available_embedders() == ["bedrock", "hashing", "minilm"]
    emb = build_embedder("hashing", dim=32)
    assert isinstance(emb, HashingEmbedder) and emb.dim == 32
    assert build_embedder("bedrock", dimensions=256, client=object()).dim == 256
    assert build_embedder("MiniLM").dim == 384  # construction is lazy: no model load here
    with pytest.raises(ValueError, match="unknown embedder"):
        build_embedder("word2vec")


def test_l2_normalize_rows_and_zero():
    out = l2_normalize([[3.0, 4.0], [0.0, 0.0]])
    assert np.allclose(out, [[0.6, 0.8], [0.0, 0.0]])
    assert np.allclose(l2_normalize([0.0, 2.0]), [0.0, 1.0])
