"""Core domain: tenant → agents → users → sessions → turns, plus tool calls, memories,
context windows, jobs. These are the shapes the core passes around; storage rows
map onto them in ``repos``."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

Identifier = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$")


class Role(StrEnum):
    admin = "admin"
    writer = "writer"
    reader = "reader"
    auditor = "auditor"


class Classification(StrEnum):
    public = "public"
    internal = "internal"
    confidential = "confidential"
    restricted = "restricted"


class Tenant(BaseModel):
    id: str
    name: str
    classification: Classification = Classification.internal
    privacy_policy: dict[str, Any] = Field(default_factory=dict)
    retention: dict[str, Any] = Field(default_factory=dict)
    limits: dict[str, Any] = Field(default_factory=dict)


class Principal(BaseModel):
    """Who is calling: resolved from the API key by the authorizer."""

    model_config = ConfigDict(frozen=True)

    tenant_id: str
    key_id: str
    role: Role
    agent_id: str | None = None  # a key may be scoped to one agent

    def can_access_agent(self, agent_id: str) -> bool:
        return self.agent_id is None or self.agent_id == agent_id


SectionName = Literal["history", "summary", "memory", "tool"]
SECTIONS: tuple[SectionName, ...] = ("summary", "memory", "history", "tool")
DEFAULT_SHARES: dict[SectionName, float] = {"summary": 0.15, "memory": 0.25, "history": 0.45, "tool": 0.15}


class ModelCall(BaseModel):
    """A named model call of an agent: how to assemble its context."""

    id: str = Identifier
    template: str = Field(
        default="{summary}\n\n{memory}\n\n{history}\n\n{tool}",
        max_length=8000,
        description="Prompt template with named sections {summary} {memory} {history} {tool}.",
    )
    token_budget: int = Field(default=2000, ge=64, le=128_000)
    section_shares: dict[SectionName, float] = Field(default_factory=lambda: dict(DEFAULT_SHARES))

    @model_validator(mode="after")
    def _shares_sum_to_at_most_one(self) -> ModelCall:
        if any(v < 0 for v in self.section_shares.values()):
            raise ValueError("section_shares must be non-negative")
        if sum(self.section_shares.values()) > 1.0001:
            raise ValueError("section_shares must sum to at most 1")
        return self


class AgentProfile(BaseModel):
    name: str | None = Field(default=None, max_length=200)
    classification: Classification = Classification.internal
    model_calls: list[ModelCall] = Field(default_factory=list, max_length=20)
    compress_threshold_tokens: int = Field(default=8000, ge=256, le=1_000_000)
    compress_strategy: Literal["summarize", "truncate", "importance"] = "summarize"
    prepare_contexts: bool = True

    def model_call(self, model_call_id: str) -> ModelCall | None:
        return next((m for m in self.model_calls if m.id == model_call_id), None)


class Session(BaseModel):
    id: str
    agent_id: str
    user_id: str
    last_seq: int
    turn_count: int
    token_count: int
    created_at: datetime
    updated_at: datetime


class Turn(BaseModel):
    id: UUID
    session_id: str
    agent_id: str
    user_id: str
    seq: int
    question: str
    answer: str
    occurred_at: datetime
    token_count: int
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime


ToolStatus = Literal["pending", "running", "succeeded", "failed", "timed_out"]
TERMINAL_TOOL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "timed_out"})
TOOL_TRANSITIONS: dict[str, frozenset[str]] = {
    "pending": frozenset({"running", "succeeded", "failed", "timed_out"}),
    "running": frozenset({"succeeded", "failed", "timed_out"}),
    "succeeded": frozenset(),
    "failed": frozenset(),
    "timed_out": frozenset(),
}


class ToolCall(BaseModel):
    call_id: str
    session_id: str
    agent_id: str
    user_id: str
    turn_id: UUID | None = None
    parent_call_id: str | None = None
    chain_seq: int
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    status: ToolStatus
    result: Any = None
    error: Any = None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None


class Memory(BaseModel):
    id: UUID
    agent_id: str
    user_id: str | None
    visibility: Literal["private", "agent"]
    content: str
    importance: float
    source_turn_ids: list[UUID] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    token_count: int
    created_at: datetime
    updated_at: datetime


class ContextWindow(BaseModel):
    session_id: str
    summary: str | None = None
    summary_covers_seq: int = 0
    summary_seqs: list[int] = Field(default_factory=list)
    summary_tokens: int = 0
    strategy: str | None = None
    stats: dict[str, Any] = Field(default_factory=dict)
    version: int = 1


JobStatus = Literal["queued", "running", "succeeded", "failed"]


class Job(BaseModel):
    id: UUID
    kind: str
    status: JobStatus
    resource: dict[str, Any] = Field(default_factory=dict)
    result: Any = None
    error: Any = None
    created_at: datetime
    updated_at: datetime


class Provenance(BaseModel):
    session_id: str | None = None
    turn_id: UUID | None = None
    memory_id: UUID | None = None
    call_id: str | None = None
    seq: int | None = None
    occurred_at: datetime | None = None


class Snippet(BaseModel):
    type: SectionName
    content: str
    score: float
    token_count: int
    provenance: Provenance
