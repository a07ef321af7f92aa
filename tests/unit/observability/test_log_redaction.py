"""Log redaction: no turn content, API key or secret survives into log output."""

from __future__ import annotations

import io
import json
import logging
import string
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from aws_lambda_powertools import Logger
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from context_engine.observability.redaction import (
    REDACTED,
    REDACTED_API_KEY,
    RedactionFilter,
    install_redaction_filter,
    redacting_json_default,
    redacting_json_serializer,
    scrub,
    scrub_text,
)
from context_engine.privacy.keys import generate_api_key

QUESTION = "What did my doctor say about the biopsy?"
ANSWER = "The results came back benign."
PASSWORD = "hunter2-very-secret"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"


@pytest.fixture
def api_key() -> str:
    return generate_api_key()


# --- scrub_text ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Authorization: Bearer abcdefgh12345678", "abcdefgh12345678"),
        ("header bearer  abc.def-ghi_jkl", "abc.def-ghi_jkl"),
        ("Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
        (f"jwt={JWT}", "dozjgNryP4J3jVmNHl0w5N"),
        ("postgresql://app:s3cr3t-pw@db.internal:5432/ce", "s3cr3t-pw"),
        ("redis://default:tok3n@cache:6379", "tok3n"),
        ("aws AKIAIOSFODNN7EXAMPLE used", "AKIAIOSFODNN7EXAMPLE"),
        (f"login failed password={PASSWORD}", PASSWORD),
        (f'{{"db_password": "{PASSWORD}"}}', PASSWORD),
        ("client_secret: abc123def", "abc123def"),
        ("X-Api-Key=zzz-yyy-xxx", "zzz-yyy-xxx"),
        ("refresh_token='r-0123'", "r-0123"),
    ],
)
def test_scrub_text_masks_credentials(text: str, secret: str) -> None:
    out = scrub_text(text)
    assert secret not in out
    assert REDACTED in out


def test_scrub_text_masks_our_api_keys(api_key: str) -> None:
    out = scrub_text(f"created key {api_key} for tenant t1")
    assert api_key not in out and out == f"created key {REDACTED_API_KEY} for tenant t1"


@pytest.mark.parametrize(
    "text",
    [
        "the basic idea is simple",
        "max_tokens: 512, token_count=3, tokens used 1200",
        "the bearer of good news",
        "GET /v1/sessions/s1/turns?after_seq=4 200",
        "password reset requested",
    ],
)
def test_scrub_text_leaves_ordinary_text_alone(text: str) -> None:
    assert scrub_text(text) == text


@given(
    prefix=st.text(alphabet=string.ascii_letters + " .,:;\n", max_size=40),
    suffix=st.text(alphabet=string.ascii_letters + " .,:;\n", max_size=40),
)
def test_scrub_text_masks_any_generated_key(prefix: str, suffix: str) -> None:
    key = generate_api_key()
    out = scrub_text(f"{prefix} {key} {suffix}")
    assert key not in out and key[3:] not in out


@given(st.text(max_size=200))
def test_scrub_text_is_idempotent(text: str) -> None:
    once = scrub_text(text)
    assert scrub_text(once) == once


# --- scrub (structures) -------------------------------------------------------------------


def test_scrub_nested_structures(api_key: str) -> None:
    event: dict[str, Any] = {
        "headers": {"Authorization": f"Bearer {api_key}", "X-API-KEY": api_key, "content-type": "json"},
        "body": json.dumps({"question": QUESTION}),
        "requestContext": {"requestId": "r-1"},
        "turns": [{"Question": QUESTION, "ANSWER": ANSWER, "seq": 3, "metadata": {"Summary": "s"}}],
        "sandbox": ({"code": "print(1)", "stdin": "x", "limits": {"cpu": 1}},),
        "config": {"db_password": PASSWORD, "hashKey": "k", "token_budget": 800, "max_tokens": 64},
        "message": f"token={PASSWORD}",
    }
    out = scrub(event)
    dumped = json.dumps(out)
    for secret in (api_key, QUESTION, ANSWER, PASSWORD, "print(1)"):
        assert secret not in dumped
    assert out["headers"]["content-type"] == "json"
    assert out["requestContext"] == {"requestId": "r-1"}
    assert out["turns"][0]["seq"] == 3 and out["turns"][0]["Question"] == REDACTED
    assert out["sandbox"][0]["limits"] == {"cpu": 1}
    assert out["config"]["token_budget"] == 800 and out["config"]["max_tokens"] == 64
    assert event["turns"][0]["Question"] == QUESTION  # the input is not mutated


class _Turn(BaseModel):
    question: str
    seq: int


def test_scrub_models_and_bytes(api_key: str) -> None:
    assert scrub(_Turn(question=QUESTION, seq=1)) == {"question": REDACTED, "seq": 1}
    assert api_key not in scrub(f"k={api_key}".encode())
    assert redacting_json_default(_Turn(question=QUESTION, seq=2)) == {"question": REDACTED, "seq": 2}


def test_scrub_survives_deep_nesting() -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(100):
        node["n"] = {}
        node = node["n"]
    json.dumps(scrub(deep))  # bounded depth, no RecursionError


_SENSITIVE_NAMES = [
    *("question", "answer", "content", "code", "stdin", "text", "summary", "authorization"),
    *("api_key", "password", "secret", "token", "x-api-key", "apiKey", "DB_PASSWORD", "Cookie"),
]
_json_leaf = st.one_of(st.integers(), st.booleans(), st.none(), st.text(string.ascii_letters, max_size=8))


@st.composite
def structure_with_secret(draw: st.DrawFn) -> tuple[Any, str]:
    """A random JSON-like structure with a secret under a sensitive key somewhere inside."""
    secret = "S3CRET-" + uuid.uuid4().hex
    name = draw(st.sampled_from(_SENSITIVE_NAMES))
    node: Any = {name: secret}
    for _ in range(draw(st.integers(min_value=0, max_value=5))):
        siblings = draw(st.dictionaries(st.sampled_from(["a", "b", "meta", "items"]), _json_leaf, max_size=3))
        node = draw(st.sampled_from([{**siblings, "child": node}, [node, *siblings.values()]]))
    return node, secret


@given(structure_with_secret())
def test_secret_under_sensitive_key_never_survives(sample: tuple[Any, str]) -> None:
    obj, secret = sample
    assert secret not in json.dumps(scrub(obj))
    assert secret not in redacting_json_serializer({"message": obj})


# --- stdlib logging -----------------------------------------------------------------------


@pytest.fixture
def redacted_caplog(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    flt = RedactionFilter()
    caplog.handler.addFilter(flt)
    caplog.set_level(logging.DEBUG)
    yield caplog
    caplog.handler.removeFilter(flt)


def test_caplog_sees_no_secret(redacted_caplog: pytest.LogCaptureFixture, api_key: str) -> None:
    log = logging.getLogger("context_engine.test.redaction")
    log.info("write turn", extra={"question": QUESTION, "answer": ANSWER, "tenant": "t1"})
    log.info("auth header %s from %s", f"Bearer {api_key}", "10.0.0.1")
    log.info("payload %(api_key)s %(n)d", {"api_key": api_key, "n": 5})
    log.info({"event": "query", "content": QUESTION, "headers": {"authorization": api_key}})
    log.warning("connect failed: %s", RuntimeError(f"postgresql://u:{PASSWORD}@db/x"))
    try:
        raise ValueError(f"bad key {api_key}")
    except ValueError:
        log.exception("handler crashed")

    # Rendered output plus every record attribute a handler may print (exc_info stays the live
    # exception object for handlers that need it; formatters print the scrubbed exc_text).
    records = redacted_caplog.records
    rendered = [repr({k: v for k, v in r.__dict__.items() if k != "exc_info"}) for r in records]
    everything = redacted_caplog.text + " ".join(rendered)
    for secret in (api_key, QUESTION, ANSWER, PASSWORD):
        assert secret not in everything
    assert "payload [REDACTED] 5" in redacted_caplog.text
    assert "Traceback" in redacted_caplog.text and REDACTED_API_KEY in redacted_caplog.text
    assert redacted_caplog.records[0].tenant == "t1"  # type: ignore[attr-defined]


def test_stream_handler_with_extra_fields_in_the_format(api_key: str) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s q=%(question)s"))
    log = logging.getLogger(f"context_engine.test.stream.{uuid.uuid4().hex}")
    log.propagate = False
    log.addHandler(handler)
    install_redaction_filter(log)
    log.error("failed with key %s", api_key, extra={"question": QUESTION})
    out = stream.getvalue()
    assert api_key not in out and QUESTION not in out
    assert out.strip() == f"ERROR failed with key {REDACTED_API_KEY} q={REDACTED}"


# --- powertools Logger --------------------------------------------------------------------


def test_powertools_logger_output_has_no_secret(api_key: str) -> None:
    stream = io.StringIO()
    logger = Logger(
        service=f"redaction-test-{uuid.uuid4().hex[:8]}",
        level="DEBUG",  # tests/conftest.py quiets powertools loggers to WARNING by default
        stream=stream,
        json_serializer=redacting_json_serializer,
        json_default=redacting_json_default,
    )
    logger.append_keys(api_key=api_key, tenant_id="t1")
    nested = [{"Authorization": f"Bearer {api_key}"}]
    logger.info({"operation": "write", "question": QUESTION, "nested": nested})
    logger.info("stored turn", extra={"answer": ANSWER, "seq": 7})
    logger.info(f"creds postgresql://ce:{PASSWORD}@db:5432/ce")
    logger.info("model", extra={"turn": _Turn(question=QUESTION, seq=1)})
    try:
        raise RuntimeError(f"upstream rejected Bearer {api_key}")
    except RuntimeError:
        logger.exception("call failed")

    out = stream.getvalue()
    for secret in (api_key, QUESTION, ANSWER, PASSWORD):
        assert secret not in out
    entries = [json.loads(line) for line in out.splitlines()]
    assert len(entries) == 5
    assert all(e["api_key"] == REDACTED and e["tenant_id"] == "t1" for e in entries)
    assert entries[0]["message"]["operation"] == "write"
    assert entries[0]["message"]["question"] == REDACTED
    assert entries[1]["answer"] == REDACTED and entries[1]["seq"] == 7
    assert entries[3]["turn"] == {"question": REDACTED, "seq": 1}
    assert "RuntimeError" in entries[4]["exception"] and "Bearer [REDACTED]" in entries[4]["exception"]


def test_powertools_logger_without_the_hook_would_leak(api_key: str) -> None:
    # Guards the test above: the secrets really do reach the output when nothing redacts.
    stream = io.StringIO()
    logger = Logger(service=f"redaction-control-{uuid.uuid4().hex[:8]}", stream=stream, level="DEBUG")
    logger.info({"question": QUESTION}, extra={"key": api_key})
    assert QUESTION in stream.getvalue() and api_key in stream.getvalue()
