"""HTTP API v1 request and response bodies. Validation errors name the field (422);
sizes that an operator configures (turn text, batch, budget) are checked by the
core and answered with 413."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from context_engine.models.domain import (
    AgentProfile,
    ContextWindow,
    Identifier,
    Memory,
    SectionName,
    Session,
    Snippet,
    ToolCall,
    ToolStatus,
    Turn,
)
from context_engine.sandbox.models import (
    MAX_CODE_BYTES,
    MAX_MEMORY_MB,
    MAX_OUTPUT_KB,
    MAX_STDIN_BYTES,
    MAX_TIMEOUT_S,
    MIN_MEMORY_MB,
)


class StrictBody(BaseModel):
    """Unknown fields are an error: a typo in a field name must not be silently ignored."""

    model_config = ConfigDict(extra="forbid")


# --- turns -------------------------------------------------------------------------
class WriteTurnRequest(StrictBody):
    agent_id: str = Identifier
    user_id: str = Identifier
    question: str = Field(min_length=1)
    answer: str = Field(default="")
    occurred_at: AwareDatetime | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class WriteTurnResponse(BaseModel):
    turn_id: UUID
    seq: int
    token_count: int


class TurnsPage(BaseModel):
    items: list[Turn]
    next_after_seq: int | None = Field(description="Pass as after_seq for the next page; null at the end.")


class SessionInfo(BaseModel):
    session: Session
    window: ContextWindow


# --- context -----------------------------------------------------------------------
class QueryContextRequest(StrictBody):
    agent_id: str = Identifier
    user_id: str | None = Field(default=None, min_length=1, max_length=128)
    session_id: str | None = Field(default=None, min_length=1, max_length=128)
    query: str | None = Field(
        default=None, min_length=1, max_length=8000,
        description="Required unless model_call_id is given; then it defaults to the session's latest question "
                    "(the context prepared ahead after each write, see docs/query.md).")
    token_budget: int | None = Field(
        default=None, gt=0, description="Required unless model_call_id is given; then the model call's budget.")
    model_call_id: str | None = Field(default=None, max_length=128)
    include: list[SectionName] | None = None
    k: int | None = Field(
        default=None, ge=1, le=200,
        description="How many retrieved turns and memories to consider; default: as many as the budget can hold.")

    @model_validator(mode="after")
    def _query_and_budget_unless_model_call(self) -> QueryContextRequest:
        if self.model_call_id is None:
            missing = [f for f in ("query", "token_budget") if getattr(self, f) is None]
            if missing:
                raise ValueError(f"{' and '.join(missing)} required unless model_call_id is given")
        return self


class Section(BaseModel):
    name: SectionName
    token_count: int
    token_share: int
    snippet_count: int


class QueryContextResponse(BaseModel):
    context: str
    sections: list[Section]
    snippets: list[Snippet]
    token_count: int
    token_budget: int
    cache: Literal["hit", "miss"]
    window_version: int
    query: str | None = Field(default=None, description="The query the context was assembled for.")
    model_call_id: str | None = None


# --- tool calls --------------------------------------------------------------------
class ToolCallSpec(StrictBody):
    call_id: str = Identifier
    name: str = Field(min_length=1, max_length=200)
    arguments: dict[str, Any] = Field(default_factory=dict)
    turn_id: UUID | None = None
    parent_call_id: str | None = Field(default=None, max_length=128)
    status: Literal["pending", "running"] = "pending"


class RegisterToolChainRequest(StrictBody):
    agent_id: str = Identifier
    user_id: str = Identifier
    calls: list[ToolCallSpec] = Field(min_length=1)


class ToolCallsResponse(BaseModel):
    items: list[ToolCall]


class UpdateToolResultRequest(StrictBody):
    status: ToolStatus
    result: Any = None
    error: Any = None


# --- memories ----------------------------------------------------------------------
class CreateMemoryRequest(StrictBody):
    agent_id: str = Identifier
    user_id: str | None = Field(default=None, min_length=1, max_length=128)
    visibility: Literal["private", "agent"] = "private"
    content: str = Field(min_length=1)
    importance: float = Field(default=0.5, ge=0.0, le=1.0)
    source_turn_ids: list[UUID] = Field(default_factory=list, max_length=100)
    metadata: dict[str, Any] = Field(default_factory=dict)


class SearchMemoriesRequest(StrictBody):
    agent_id: str = Identifier
    user_id: str | None = Field(default=None, min_length=1, max_length=128)
    query: str = Field(min_length=1, max_length=8000)
    k: int = Field(default=10, ge=1, le=100)


class MemoryHit(BaseModel):
    memory: Memory
    score: float


class SearchMemoriesResponse(BaseModel):
    items: list[MemoryHit]


# --- agents, jobs, misc ------------------------------------------------------------
class PutAgentRequest(AgentProfile):
    model_config = ConfigDict(extra="forbid")


class AgentResponse(BaseModel):
    agent_id: str
    profile: AgentProfile
    version: int
    updated_at: datetime


class RebuildRequest(StrictBody):
    strategy: Literal["summarize", "truncate", "importance"] = "summarize"
    target_tokens: int | None = Field(default=None, ge=32, le=100_000)
    keep_head: int | None = Field(default=None, ge=0, le=1000)
    keep_tail: int | None = Field(default=None, ge=0, le=1000)


class JobAccepted(BaseModel):
    job_id: UUID


# --- sandbox -----------------------------------------------------------------------
SandboxRunStatus = Literal["queued", "running", "succeeded", "failed", "timed_out"]


class SandboxLimitsRequest(StrictBody):
    """Per-run limits. Each is capped by the sandbox's hard maximum (checked here) and by the
    tenant's maximum (checked by the core); above either the answer is 422 naming the field.
    Omitted: the sandbox default, or the tenant's maximum when that is lower."""

    timeout_s: float | None = Field(default=None, gt=0, le=MAX_TIMEOUT_S, description="wall-clock limit, seconds")
    memory_mb: int | None = Field(default=None, ge=MIN_MEMORY_MB, le=MAX_MEMORY_MB, description="address space")
    output_kb: int | None = Field(default=None, ge=1, le=MAX_OUTPUT_KB, description="cap per stream")


class SandboxRunRequest(StrictBody):
    language: Literal["python"] = "python"
    code: str = Field(min_length=1, description=f"At most {MAX_CODE_BYTES} bytes of UTF-8 (413 above).")
    stdin: str | None = Field(default=None, description=f"At most {MAX_STDIN_BYTES} bytes of UTF-8 (413 above).")
    session_id: str | None = Field(default=None, min_length=1, max_length=128)
    call_id: str | None = Field(
        default=None, min_length=1, max_length=128,
        description="A tool call of session_id; the run's result becomes its result.",
    )
    limits: SandboxLimitsRequest = Field(default_factory=SandboxLimitsRequest)

    @field_validator("call_id")
    @classmethod
    def _call_needs_session(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not info.data.get("session_id"):
            raise ValueError("call_id needs the session_id of its session")
        return value


class SandboxRunAccepted(BaseModel):
    run_id: UUID
    status: SandboxRunStatus


class SandboxRunLimits(BaseModel):
    timeout_s: float
    memory_mb: int
    output_kb: int


class SandboxRunResponse(BaseModel):
    run_id: UUID
    status: SandboxRunStatus
    language: str
    session_id: str | None = None
    call_id: str | None = None
    limits: SandboxRunLimits
    stdout: str | None = Field(default=None, description="null until the run ends")
    stderr: str | None = None
    exit_code: int | None = Field(default=None, description="null when the code did not exit by itself")
    duration_ms: float | None = None
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    reason: str | None = Field(default=None, description="why a run failed or timed out")
    isolation: str | None = Field(default=None, description="bwrap, seccomp or container")
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None


class DeletedResponse(BaseModel):
    deleted: bool
    counts: dict[str, int] = Field(default_factory=dict)


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    version: str
    checks: dict[str, str]


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorBody(BaseModel):
    error: ErrorDetail
