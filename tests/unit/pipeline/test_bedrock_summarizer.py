"""The Bedrock summarizer against botocore's Stubber: the Converse request it sends, backoff
on throttling, and the extractive fallback recorded when Bedrock cannot answer."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from context_engine.compression.models import CompressionRequest, SourceTurn
from context_engine.compression.strategies import compress
from context_engine.compression.summarizers import SYSTEM_PROMPT, BedrockSummarizer

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
TURNS = [SourceTurn(seq=i, question=f"Where is the team offsite {i}?", answer=f"In Porto on day {i}.", token_count=14)
         for i in range(1, 6)]


@pytest.fixture
def client() -> Any:
    return boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")


def ok(text: str) -> dict[str, Any]:
    return {"output": {"message": {"role": "assistant", "content": [{"text": text}]}}, "stopReason": "end_turn",
            "usage": {"inputTokens": 120, "outputTokens": 12, "totalTokens": 132}, "metrics": {"latencyMs": 300}}


def expected_request(target: int) -> dict[str, Any]:
    return {"modelId": MODEL, "system": [{"text": SYSTEM_PROMPT}],
            "messages": [{"role": "user", "content": [{"text": ANY}]}],
            "inferenceConfig": {"maxTokens": max(64, int(target * 1.2)), "temperature": 0.0}}


def summarizer(client: Any, sleeps: list[float], attempts: int = 4) -> BedrockSummarizer:
    return BedrockSummarizer(MODEL, client=client, max_attempts=attempts, base_delay_s=0.5, max_delay_s=8,
                             sleep=sleeps.append)


def test_converse_answer_becomes_the_summary(client) -> None:
    sleeps: list[float] = []
    with Stubber(client) as stub:
        stub.add_response("converse", ok("The offsite is in Porto."), expected_request(100))
        summary = summarizer(client, sleeps).summarize(TURNS, "Earlier: planning started.", 100)
        stub.assert_no_pending_responses()
    assert summary.text == "The offsite is in Porto." and summary.summarizer == "bedrock"
    assert not summary.fallback and summary.kept_seqs == [1, 2, 3, 4, 5]
    assert summary.stats["bedrock_attempts"] == 1 and sleeps == []


def test_prompt_carries_the_prior_summary_and_tagged_turns(client) -> None:
    sent: list[dict[str, Any]] = []
    client.meta.events.register("provide-client-params.bedrock-runtime.Converse",
                                lambda params, **_: sent.append(params))
    with Stubber(client) as stub:
        stub.add_response("converse", ok("x"), expected_request(100))
        summarizer(client, []).summarize(TURNS, "Earlier: planning started.", 100)
    prompt = sent[0]["messages"][0]["content"][0]["text"]
    assert prompt.startswith("Summary so far:\nEarlier: planning started.")
    assert "[3] Q: Where is the team offsite 3?\nA: In Porto on day 3." in prompt
    assert "at most 100 tokens" in prompt


def test_throttling_is_retried_with_growing_jittered_backoff(client) -> None:
    sleeps: list[float] = []
    with Stubber(client) as stub:
        for _ in range(2):
            stub.add_client_error("converse", service_error_code="ThrottlingException", http_status_code=429,
                                  expected_params=expected_request(100))
        stub.add_response("converse", ok("Porto."), expected_request(100))
        summary = summarizer(client, sleeps).summarize(TURNS, None, 100)
        stub.assert_no_pending_responses()
    assert summary.text == "Porto." and not summary.fallback
    assert summary.stats["bedrock_attempts"] == 3
    assert len(sleeps) == 2 and 0 <= sleeps[0] <= 0.5 and 0 <= sleeps[1] <= 1.0


def test_persistent_throttling_falls_back_to_extractive_and_says_so(client) -> None:
    sleeps: list[float] = []
    with Stubber(client) as stub:
        for _ in range(3):
            stub.add_client_error("converse", service_error_code="ThrottlingException", http_status_code=429)
        result = compress(CompressionRequest(strategy="summarize", turns=TURNS, target_tokens=80),
                          summarizer(client, sleeps, attempts=3))
        stub.assert_no_pending_responses()
    assert result.fallback and result.summarizer == "extractive"
    assert result.fallback_reason == "ThrottlingException after 3 attempts"
    assert result.stats["bedrock_attempts"] == 3 and len(sleeps) == 2
    assert "Porto" in result.summary and result.summary_tokens <= 80


def test_a_non_retryable_error_falls_back_at_once(client) -> None:
    sleeps: list[float] = []
    with Stubber(client) as stub:
        stub.add_client_error("converse", service_error_code="AccessDeniedException", http_status_code=403,
                              service_message="not authorized to invoke the model")
        summary = summarizer(client, sleeps).summarize(TURNS, None, 80)
    assert summary.fallback and sleeps == []
    assert summary.fallback_reason == "AccessDeniedException: not authorized to invoke the model"


def test_an_empty_answer_falls_back(client) -> None:
    with Stubber(client) as stub:
        stub.add_response("converse", {**ok(""), "stopReason": "content_filtered"}, expected_request(80))
        summary = summarizer(client, []).summarize(TURNS, None, 80)
    assert summary.fallback and "content_filtered" in (summary.fallback_reason or "")


def test_an_overlong_answer_is_cut_to_the_target(client) -> None:
    with Stubber(client) as stub:
        stub.add_response("converse", ok("Porto " * 500), expected_request(50))
        summary = summarizer(client, []).summarize(TURNS, None, 50)
    from context_engine.text.tokens import count_tokens

    assert count_tokens(summary.text) <= 50 and not summary.fallback
