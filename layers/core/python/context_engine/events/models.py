"""Typed domain events: one pydantic model per event of DESIGN.md.

Each model is the ``detail`` of the EventBridge event (``EventEnvelope.eventbridge_detail``:
the envelope's ``event_id`` and ``tenant_id`` plus the producer's fields). Consumers parse
with ``parse_detail``; unknown fields are ignored so producers can add fields without
breaking consumers. The JSON Schemas in ``events/schemas/`` are generated from these
models (``python -m context_engine.events.schemas --write``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from context_engine.events.envelope import EventEnvelope
from context_engine.wiring import DOMAIN_EVENTS

TURN_WRITTEN = "TurnWritten"
TOOL_CALL_UPDATED = "ToolCallUpdated"
CONTEXT_REBUILD_REQUESTED = "ContextRebuildRequested"
CONTEXT_COMPRESSED = "ContextCompressed"
CONTEXT_DELETED = "ContextDeleted"
MEMORY_WRITTEN = "MemoryWritten"
USER_ERASED = "UserErased"
SANDBOX_RUN_FINISHED = "SandboxRunFinished"

Strategy = Literal["summarize", "truncate", "importance"]


class EventDetail(BaseModel):
    """Fields every event carries: consumers deduplicate on ``event_id`` and scope every
    database access to ``tenant_id``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: UUID
    tenant_id: str = Field(min_length=1)


class TurnWritten(EventDetail):
    """A turn was stored (WriteQA). Triggers indexing, context preparation and the
    compression threshold check."""

    session_id: str
    turn_id: UUID
    seq: int = Field(ge=1)
    agent_id: str
    user_id: str
    token_count: int = Field(ge=0)
    window_version: int = Field(ge=1)


class ToolCallUpdated(EventDetail):
    """A tool call was registered or its status/result changed."""

    session_id: str
    call_id: str
    name: str
    status: Literal["pending", "running", "succeeded", "failed", "timed_out"]
    agent_id: str
    user_id: str
    window_version: int = Field(ge=1)


class ContextRebuildRequested(EventDetail):
    """A compression job was queued: by RebuildContext, by the threshold check, or because
    a deleted turn was covered by the summary. The compress consumer starts the workflow."""

    job_id: UUID
    session_id: str
    agent_id: str
    user_id: str
    strategy: Strategy
    # api: summarise every turn so far; threshold: fold the older unsummarised turns into the
    # summary, keeping the newest verbatim; deletion: summarise the covered turns again.
    trigger: Literal["api", "threshold", "deletion"]
    target_tokens: int | None = Field(default=None, ge=1)
    keep_head: int | None = Field(default=None, ge=0)
    keep_tail: int | None = Field(default=None, ge=0)


class ContextCompressed(EventDetail):
    """A window got a new summary (its version was bumped and its cache entries dropped)."""

    job_id: UUID
    session_id: str
    agent_id: str
    user_id: str
    strategy: Strategy
    summarizer: str | None = None
    fallback: bool = False
    covers_seq: int = Field(ge=0)
    turns_covered: int = Field(ge=0)
    input_tokens: int = Field(ge=0)
    summary_tokens: int = Field(ge=0)
    window_version: int = Field(ge=1)


class ContextDeleted(EventDetail):
    """DeleteContext: a session, one turn, or one memory was deleted."""

    scope: Literal["session", "turn", "memory"]
    agent_id: str
    user_id: str | None = None
    session_id: str | None = None
    turn_id: UUID | None = None
    seq: int | None = None
    memory_id: UUID | None = None


class MemoryWritten(EventDetail):
    """A long-term memory was stored."""

    memory_id: UUID
    agent_id: str
    user_id: str | None = None
    visibility: Literal["private", "agent"]


class UserErased(EventDetail):
    """A user's data was erased (GDPR). Carries counts, never content."""

    user_id: str
    agent_id: str | None = None
    job_id: UUID | None = None
    counts: dict[str, int] = Field(default_factory=dict)


class SandboxRunFinished(EventDetail):
    """A sandbox run reached a terminal state; its result became the tool call's result."""

    run_id: UUID
    status: Literal["succeeded", "failed", "timed_out"]
    session_id: str | None = None
    call_id: str | None = None
    exit_code: int | None = None
    duration_ms: int | None = Field(default=None, ge=0)


EVENT_MODELS: dict[str, type[EventDetail]] = {
    m.__name__: m
    for m in (TurnWritten, ToolCallUpdated, ContextRebuildRequested, ContextCompressed, ContextDeleted,
              MemoryWritten, UserErased, SandboxRunFinished)
}
assert tuple(EVENT_MODELS) == DOMAIN_EVENTS, "wiring.DOMAIN_EVENTS and the event models must list the same events"


class UnknownEvent(ValueError):
    """A detail type nobody declared: a poison message, never silently dropped."""


def parse_detail(detail_type: str, detail: dict[str, Any]) -> EventDetail:
    model = EVENT_MODELS.get(detail_type)
    if model is None:
        raise UnknownEvent(f"unknown detail type {detail_type!r}")
    return model.model_validate(detail)


def new_event(detail: type[EventDetail], tenant_id: str, **fields: Any) -> EventEnvelope:
    """An envelope whose detail is validated against the event's model before it is written
    to the outbox (a producer bug fails the request, not a consumer later)."""
    envelope = EventEnvelope(detail_type=detail.__name__, tenant_id=tenant_id)
    detail.model_validate({"event_id": envelope.event_id, "tenant_id": tenant_id, **fields})
    envelope.detail = {k: (str(v) if isinstance(v, UUID) else v) for k, v in fields.items()}
    return envelope


class EventBridgeEvent(BaseModel):
    """What EventBridge delivers to a target (here: the body of each SQS message)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    version: str = "0"
    id: str
    detail_type: str = Field(alias="detail-type")
    source: str
    account: str = "000000000000"
    time: datetime
    region: str = "us-east-1"
    resources: list[str] = Field(default_factory=list)
    detail: dict[str, Any]

    def envelope(self) -> EventEnvelope:
        detail = dict(self.detail)
        event_id = detail.pop("event_id")
        tenant_id = detail.pop("tenant_id")
        return EventEnvelope(event_id=event_id, detail_type=self.detail_type, tenant_id=tenant_id, time=self.time,
                             detail=detail)

    @classmethod
    def of(cls, envelope: EventEnvelope, source: str, *, account: str = "000000000000",
           region: str = "us-east-1") -> EventBridgeEvent:
        return cls.model_validate({"id": str(envelope.event_id), "detail-type": envelope.detail_type,
                                   "source": source, "account": account, "time": envelope.time, "region": region,
                                   "detail": envelope.eventbridge_detail()})

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)
