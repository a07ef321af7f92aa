"""Audit entries before they join the chain, and the shapes of audit queries and verification."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from context_engine.audit.chain import AuditOutcome, AuditRecord, ChainBreak

# Actor and role of records the system writes on its own (domain events, schedules, jobs).
SYSTEM_ACTOR = "system"
SYSTEM_ROLE = "system"


class AuditEntry(BaseModel):
    """Something to audit, as handed to the intake: everything of an ``AuditRecord`` except
    its place in the chain (tenant, seq), which the appender assigns.

    ``id`` makes intake idempotent: a domain event's entry uses the event id, so a
    redelivered event is taken in once. ``details`` holds ids, counts and reasons — never
    content (``AuditRecord`` rejects content and secret field names and long strings);
    ``details.user_id`` names the person the record is about (GDPR export finds it there).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    id: str = Field(default_factory=lambda: str(uuid.uuid4()), min_length=1, max_length=128)
    occurred_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    actor: str
    role: str
    action: str
    resource_type: str
    resource_id: str | None = None
    outcome: AuditOutcome = AuditOutcome.SUCCESS
    request_id: str | None = None
    trace_id: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)

    def to_record(self, tenant_id: str, seq: int) -> AuditRecord:
        """The chain record at ``seq``; validation (field sizes, details without content)
        happens here, so intake calls it once to reject a bad entry before it is stored."""
        return AuditRecord(tenant_id=tenant_id, seq=seq, **self.model_dump())


class AuditFilter(BaseModel):
    """GET /v1/audit filters; all optional, combined with AND."""

    model_config = ConfigDict(frozen=True)

    actor: str | None = None
    action: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    user_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class AuditRecordOut(BaseModel):
    """One stored record as the API returns it (everything that is hashed, plus the links)."""

    seq: int
    id: str
    occurred_at: datetime
    actor: str
    role: str
    action: str
    resource_type: str
    resource_id: str | None
    outcome: AuditOutcome
    request_id: str | None
    trace_id: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str
    recorded_at: datetime


class AuditPage(BaseModel):
    items: list[AuditRecordOut]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null at the end.")
    pending: int = Field(default=0, description="Records taken in but not yet appended to the chain.")


class ChainHead(BaseModel):
    seq: int
    hash: str


class BrokenLink(BaseModel):
    seq: int | None
    id: str | None
    reason: ChainBreak
    detail: str | None


class VerifyReport(BaseModel):
    """GET /v1/audit/verify: the whole chain recomputed; ``first_broken`` names the first
    record whose link or hash does not hold (or the anchored head, when records at the end
    are missing)."""

    ok: bool
    checked: int
    first_broken: BrokenLink | None = None
    head: ChainHead | None = Field(description="The anchored head: the newest record the chain must reach.")
    last_hash: str
