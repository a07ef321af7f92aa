"""Limits and requests are validated at the boundary, with errors that name the field."""

import pytest
from pydantic import ValidationError

from context_engine.sandbox.models import (
    MAX_CODE_BYTES,
    MAX_MEMORY_MB,
    MAX_OUTPUT_KB,
    MAX_STDIN_BYTES,
    MAX_TIMEOUT_S,
    Isolation,
    SandboxLimits,
    SandboxRequest,
    SandboxResult,
    SandboxStatus,
)


def _error_locations(exc: ValidationError) -> set[tuple[object, ...]]:
    return {tuple(error["loc"]) for error in exc.errors()}


def test_defaults_fit_a_quick_tool_call() -> None:
    request = SandboxRequest(code="print(1)")
    assert request.language == "python"
    assert request.stdin is None
    assert request.limits == SandboxLimits(timeout_s=5.0, memory_mb=256, output_kb=64)
    assert request.limits.output_bytes == 64 * 1024


@pytest.mark.parametrize(
    ("limits", "field"),
    [
        ({"timeout_s": 0}, "timeout_s"),
        ({"timeout_s": MAX_TIMEOUT_S + 1}, "timeout_s"),
        ({"memory_mb": 8}, "memory_mb"),
        ({"memory_mb": MAX_MEMORY_MB + 1}, "memory_mb"),
        ({"output_kb": 0}, "output_kb"),
        ({"output_kb": MAX_OUTPUT_KB + 1}, "output_kb"),
        ({"cpus": 4}, "cpus"),
    ],
)
def test_limits_outside_the_hard_maxima_name_the_field(limits: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        SandboxRequest.model_validate({"code": "pass", "limits": limits})
    assert ("limits", field) in _error_locations(caught.value)


def test_limits_at_the_maxima_are_accepted() -> None:
    limits = SandboxLimits(timeout_s=MAX_TIMEOUT_S, memory_mb=MAX_MEMORY_MB, output_kb=MAX_OUTPUT_KB)
    assert limits.output_bytes == MAX_OUTPUT_KB * 1024


def test_code_size_is_counted_in_utf8_bytes() -> None:
    euro = "\u20ac"  # three bytes in UTF-8
    SandboxRequest(code="#" + euro * ((MAX_CODE_BYTES - 1) // 3))
    with pytest.raises(ValidationError) as caught:
        SandboxRequest(code=euro * (MAX_CODE_BYTES // 3 + 1))
    assert ("code",) in _error_locations(caught.value)
    assert "larger than" in str(caught.value)


def test_stdin_is_size_limited() -> None:
    SandboxRequest(code="pass", stdin="x" * MAX_STDIN_BYTES)
    with pytest.raises(ValidationError) as caught:
        SandboxRequest(code="pass", stdin="x" * (MAX_STDIN_BYTES + 1))
    assert ("stdin",) in _error_locations(caught.value)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"code": ""}, "code"),
        ({"code": "1", "language": "javascript"}, "language"),
        ({"code": "1", "env": {"AWS_SECRET_ACCESS_KEY": "x"}}, "env"),
    ],
)
def test_request_rejects_empty_code_other_languages_and_unknown_fields(payload: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        SandboxRequest.model_validate(payload)
    assert (field,) in _error_locations(caught.value)


def test_result_round_trips_through_json() -> None:
    result = SandboxResult(
        status=SandboxStatus.TIMED_OUT,
        stdout="partial",
        stderr="",
        exit_code=None,
        duration_ms=1001.5,
        reason="wall-clock timeout after 1 s",
        isolation=Isolation.BWRAP,
    )
    data = result.model_dump(mode="json")
    assert data["status"] == "timed_out" and data["isolation"] == "bwrap"
    assert SandboxResult.model_validate_json(result.model_dump_json()) == result
