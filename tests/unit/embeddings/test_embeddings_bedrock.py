import io
import json

import boto3
import numpy as np
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from context_engine.embeddings.bedrock import BedrockTitanEmbedder, EmbeddingServiceError


def _client():
    return boto3.client(
        "bedrock-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )


def _ok(vector):
    data = json.dumps({"embedding": vector, "inputTextTokenCount": 3}).encode()
    return {"body": StreamingBody(io.BytesIO(data), len(data)), "contentType": "application/json"}


def _expected(text, dims):
    return {
        "modelId": "amazon.titan-embed-text-v2:0",
        "body": json.dumps({"inputText": text, "dimensions": dims, "normalize": True}),
        "contentType": "application/json",
        "accept": "application/json",
    }


def test_embed_sends_titan_request_and_normalises():
    client = _client()
    emb = BedrockTitanEmbedder(dimensions=256, client=client, max_workers=1)
    vec = [0.0] * 256
    vec[0], vec[1] = 3.0, 4.0
    with Stubber(client) as stub:
        stub.add_response("invoke_model", _ok(vec), _expected("hello", 256))
        stub.add_response("invoke_model", _ok(vec), _expected("world", 256))
        out = emb.embed(["hello", "world"])
        stub.assert_no_pending_responses()
    assert out.shape == (2, 256) and out.dtype == np.float32
    assert out[0, 0] == pytest.approx(0.6) and out[0, 1] == pytest.approx(0.8)
    assert emb.name == "amazon.titan-embed-text-v2:0/256"


def test_throttling_is_retried_with_backoff():
    client = _client()
    sleeps: list[float] = []
    emb = BedrockTitanEmbedder(dimensions=512, client=client, sleep=sleeps.append, base_delay=0.1)
    with Stubber(client) as stub:
        stub.add_client_error("invoke_model", service_error_code="ThrottlingException", http_status_code=429)
        stub.add_client_error(
            "invoke_model", service_error_code="ServiceUnavailableException", http_status_code=503
        )
        stub.add_response(
            "invoke_model",
            _ok([1.0] + [0.0] * 511),
            {"modelId": ANY, "body": ANY, "contentType": ANY, "accept": ANY},
        )
        vec = emb.embed_query("q")
    assert vec.shape == (512,) and vec[0] == pytest.approx(1.0)
    assert len(sleeps) == 2 and all(0 <= s <= 0.2 for s in sleeps)


def test_gives_up_after_max_attempts():
    client = _client()
    emb = BedrockTitanEmbedder(dimensions=256, client=client, max_attempts=2, sleep=lambda s: None)
    with Stubber(client) as stub:
        for _ in range(2):
            stub.add_client_error(
                "invoke_model", service_error_code="ThrottlingException", http_status_code=429
            )
        with pytest.raises(EmbeddingServiceError, match="ThrottlingException"):
            emb.embed_query("q")


def test_validation_error_is_not_retried():
    client = _client()
    sleeps: list[float] = []
    emb = BedrockTitanEmbedder(dimensions=256, client=client, sleep=sleeps.append)
    with Stubber(client) as stub:
        stub.add_client_error("invoke_model", service_error_code="ValidationException", http_status_code=400)
        with pytest.raises(EmbeddingServiceError, match="ValidationException"):
            emb.embed_query("q")
    assert sleeps == []


def test_wrong_dimension_in_response_is_an_error():
    client = _client()
    emb = BedrockTitanEmbedder(dimensions=256, client=client)
    with Stubber(client) as stub:
        stub.add_response("invoke_model", _ok([1.0] * 1024), _expected("q", 256))
        with pytest.raises(EmbeddingServiceError, match="expected 256"):
            emb.embed_query("q")


def test_empty_text_skips_the_call_and_long_text_is_capped():
    client = _client()
    emb = BedrockTitanEmbedder(dimensions=256, client=client)
    long_text = "a" * 60_000
    with Stubber(client) as stub:
        stub.add_response("invoke_model", _ok([1.0] * 256), _expected("a" * 50_000, 256))
        out = emb.embed(["   ", long_text])
        stub.assert_no_pending_responses()
    assert np.allclose(out[0], 0.0)
    assert np.linalg.norm(out[1]) == pytest.approx(1.0)


def test_batch_fans_out_in_threads_and_keeps_order():
    class FakeClient:
        def invoke_model(self, modelId, body, contentType, accept):
            text = json.loads(body)["inputText"]
            vec = [0.0] * 256
            vec[int(text)] = 1.0
            return _ok(vec)

    emb = BedrockTitanEmbedder(dimensions=256, client=FakeClient(), max_workers=4)
    out = emb.embed([str(i) for i in range(20)])
    assert [int(np.argmax(row)) for row in out] == list(range(20))


def test_invalid_dimensions_rejected():
    with pytest.raises(ValueError):
        BedrockTitanEmbedder(dimensions=384)
