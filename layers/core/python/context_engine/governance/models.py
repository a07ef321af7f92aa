"""Governance request/response bodies and job payloads."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from context_engine.models.domain import Classification
from context_engine.privacy.policy import PrivacyPolicy

MAX_RETENTION_DAYS = 36_500


class RetentionPolicy(BaseModel):
    """Per-tenant time to live, in days since the row was stored (last updated, for tool
    calls and memories). Unset: kept until deleted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    turns_days: int | None = Field(default=None, ge=1, le=MAX_RETENTION_DAYS)
    tool_results_days: int | None = Field(default=None, ge=1, le=MAX_RETENTION_DAYS)
    memories_days: int | None = Field(default=None, ge=1, le=MAX_RETENTION_DAYS)

    @property
    def is_empty(self) -> bool:
        return self.turns_days is None and self.tool_results_days is None and self.memories_days is None


class TenantSettings(BaseModel):
    tenant_id: str
    name: str
    classification: Classification
    privacy_policy: PrivacyPolicy
    retention: RetentionPolicy


class PutTenantRequest(BaseModel):
    """Fields left out keep their current value."""

    model_config = ConfigDict(extra="forbid")

    classification: Classification | None = None
    privacy_policy: PrivacyPolicy | None = None
    retention: RetentionPolicy | None = None


class GovernanceJobAccepted(BaseModel):
    job_id: UUID
    status: Literal["queued", "running", "succeeded", "failed"]


JobKind = Literal["export", "erase"]


class JobInvocation(BaseModel):
    """The message on the governance jobs queue that tells the governance function to run a job."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["governance_job"] = "governance_job"
    tenant_id: str
    job_id: UUID


class ExportLocation(BaseModel):
    kind: Literal["s3", "file"]
    bucket: str | None = None
    key: str | None = None
    path: str | None = None


class ExportResult(BaseModel):
    """What GET /v1/jobs/{id} shows for a finished export."""

    format: str
    bytes: int
    sha256: str
    counts: dict[str, int]
    location: ExportLocation
    url: str | None = Field(default=None, description="Presigned download URL (S3); a file:// URL locally.")
    url_expires_at: datetime | None = None
    generated_at: datetime


class EraseProgress(BaseModel):
    """Kept in the erase job's result as it runs: the plan (taken before anything is deleted)
    and each finished step with its counts. A resumed erase skips finished steps."""

    agents: list[str] = Field(default_factory=list)
    shared_memory_agents: list[str] = Field(default_factory=list)
    steps: dict[str, dict[str, int]] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for per_step in self.steps.values():
            for k, v in per_step.items():
                total[k] = total.get(k, 0) + v
        return total
