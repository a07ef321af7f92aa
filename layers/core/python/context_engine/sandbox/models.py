"""Typed boundary of the sandbox: what a run may ask for and what it reports.

The same models are used by the local host, the Fargate container and (later) the
HTTP API, so limits are validated once here and every caller gets the same errors
(pydantic error locations name the offending field, e.g. ``limits.timeout_s``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Hard maxima: a request can lower the defaults or raise them up to these, never beyond.
MAX_TIMEOUT_S = 60.0
MIN_MEMORY_MB = 64  # below this CPython cannot import much of its stdlib
MAX_MEMORY_MB = 2048
MAX_OUTPUT_KB = 1024
MAX_CODE_BYTES = 64 * 1024
MAX_STDIN_BYTES = 1024 * 1024


class SandboxStatus(StrEnum):
    """Terminal state of a run; mirrors the tool-call statuses of the domain."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"


class Isolation(StrEnum):
    """Which isolation layer wrapped the child, recorded in every result."""

    BWRAP = "bwrap"  # namespaces (no network, private /proc and /tmp, read-only allowlisted fs)
    SECCOMP = "seccomp"  # uid drop + seccomp socket ban + Landlock fs allowlist when the kernel has it
    CONTAINER = "container"  # the Fargate task is the isolation; seccomp still keeps the child off the network


class SandboxLimits(BaseModel):
    """Per-run resource limits; defaults fit a quick tool call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout_s: float = Field(default=5.0, gt=0, le=MAX_TIMEOUT_S, description="wall-clock limit")
    memory_mb: int = Field(default=256, ge=MIN_MEMORY_MB, le=MAX_MEMORY_MB, description="address space")
    output_kb: int = Field(default=64, ge=1, le=MAX_OUTPUT_KB, description="cap per stream (stdout, stderr)")

    @property
    def output_bytes(self) -> int:
        return self.output_kb * 1024


def _check_utf8_size(value: str | None, limit: int, what: str) -> str | None:
    # Sizes are limited in bytes, not characters: bytes are what cross the pipe and S3.
    if value is not None and len(value.encode("utf-8", "surrogatepass")) > limit:
        raise ValueError(f"{what} is larger than {limit} bytes")
    return value


class SandboxRequest(BaseModel):
    """Code to run with its input and limits; never carries credentials or host paths."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    language: Literal["python"] = "python"
    code: str = Field(min_length=1)
    stdin: str | None = None
    limits: SandboxLimits = Field(default_factory=SandboxLimits)

    @field_validator("code")
    @classmethod
    def _code_size(cls, value: str) -> str:
        checked = _check_utf8_size(value, MAX_CODE_BYTES, "code")
        assert checked is not None
        return checked

    @field_validator("stdin")
    @classmethod
    def _stdin_size(cls, value: str | None) -> str | None:
        return _check_utf8_size(value, MAX_STDIN_BYTES, "stdin")


class SandboxResult(BaseModel):
    """Outcome of one run.

    ``exit_code`` is None when the child did not exit by itself (killed by a signal or by the
    runner); ``reason`` then says why, e.g. "wall-clock timeout", "output limit",
    "memory limit" or "killed by signal 9".
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: SandboxStatus
    stdout: str
    stderr: str
    exit_code: int | None
    duration_ms: float = Field(ge=0)
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    reason: str | None = None
    isolation: Isolation
