"""Amazon Bedrock Titan Text Embeddings v2 (``amazon.titan-embed-text-v2:0``), the AWS default.

Titan v2 embeds one text per ``InvokeModel`` call, so a batch fans out over a small thread
pool. Throttling and transient service errors are retried here with capped exponential
backoff and full jitter; botocore's own retries are turned off on the client built here so
the attempt budget is counted in one place.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from context_engine.embeddings.base import FloatArray, l2_normalize

MODEL_ID = "amazon.titan-embed-text-v2:0"
ALLOWED_DIMS = (256, 512, 1024)
# Titan v2 rejects inputs over 50,000 characters (and 8,192 tokens, which it truncates itself).
MAX_INPUT_CHARS = 50_000
RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "TooManyRequestsException",
        "ServiceUnavailableException",
        "ModelNotReadyException",
        "InternalServerException",
        "ModelTimeoutException",
    }
)


class EmbeddingServiceError(RuntimeError):
    """Bedrock refused or kept failing an embedding request."""


class BedrockTitanEmbedder:
    """Titan v2 vectors of 256, 512 or 1024 dimensions, L2-normalised."""

    def __init__(
        self,
        *,
        dimensions: int = 1024,
        model_id: str = MODEL_ID,
        client: Any | None = None,
        region_name: str | None = None,
        max_attempts: int = 6,
        base_delay: float = 0.2,
        max_delay: float = 5.0,
        max_workers: int = 4,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if dimensions not in ALLOWED_DIMS:
            raise ValueError(f"Titan v2 dimensions must be one of {ALLOWED_DIMS}, got {dimensions}")
        if max_attempts < 1 or max_workers < 1:
            raise ValueError("max_attempts and max_workers must be >= 1")
        self._dimensions = dimensions
        self._model_id = model_id
        self._client = client
        self._region_name = region_name
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._max_workers = max_workers
        self._sleep = sleep

    @property
    def name(self) -> str:
        return f"{self._model_id}/{self._dimensions}"

    @property
    def dim(self) -> int:
        return self._dimensions

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client(
                "bedrock-runtime",
                region_name=self._region_name,
                config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
            )
        return self._client

    def _invoke(self, text: str) -> FloatArray:
        from botocore.exceptions import ClientError

        body = json.dumps(
            {"inputText": text[:MAX_INPUT_CHARS], "dimensions": self._dimensions, "normalize": True}
        )
        for attempt in range(1, self._max_attempts + 1):
            try:
                response = self.client.invoke_model(
                    modelId=self._model_id,
                    body=body,
                    contentType="application/json",
                    accept="application/json",
                )
                payload = json.loads(response["body"].read())
                vector = np.asarray(payload["embedding"], dtype=np.float32)
                if vector.shape != (self._dimensions,):
                    raise EmbeddingServiceError(f"expected {self._dimensions} dimensions, got {vector.shape}")
                # Titan already normalises when asked; normalise again so the contract holds
                # even for a model id that ignores the flag.
                return l2_normalize(vector)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code not in RETRYABLE_CODES or attempt == self._max_attempts:
                    raise EmbeddingServiceError(f"Bedrock {code or 'error'}: {exc}") from exc
                delay = min(self._max_delay, self._base_delay * 2 ** (attempt - 1))
                self._sleep(random.uniform(0, delay))
        raise AssertionError("unreachable")

    def _embed_one(self, text: str) -> FloatArray:
        # Titan rejects empty input; an empty text matches nothing, so it gets the zero vector.
        if not text.strip():
            return np.zeros(self._dimensions, dtype=np.float32)
        return self._invoke(text)

    def embed(self, texts: Sequence[str]) -> FloatArray:
        if len(texts) == 0:
            return np.zeros((0, self._dimensions), dtype=np.float32)
        if self._max_workers == 1 or len(texts) == 1:
            rows = [self._embed_one(t) for t in texts]
        else:
            with ThreadPoolExecutor(max_workers=min(self._max_workers, len(texts))) as pool:
                rows = list(pool.map(self._embed_one, texts))
        return np.stack(rows).astype(np.float32, copy=False)

    def embed_query(self, text: str) -> FloatArray:
        return self._embed_one(text)
