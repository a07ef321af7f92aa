"""Governance settings: environment variables parsed once (``CONTEXT_ENGINE_*``)."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class GovernanceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONTEXT_ENGINE_", extra="ignore")

    # Privacy "hash" action: the master secret its per-tenant keys derive from. AWS: a
    # Secrets Manager secret; unset: a random key file created in the data dir.
    privacy_secret_arn: str | None = None
    # GDPR export: S3 bucket (AWS) or, unset, files under <data dir>/exports.
    export_bucket: str | None = None
    export_kms_key_id: str | None = None
    export_prefix: str = "exports/"
    export_url_ttl_s: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    # Export and erase jobs: AWS sends them to this SQS queue, consumed by the governance
    # function (retries, then a DLQ); unset: a thread in the serving process.
    governance_jobs_queue_url: str | None = None
    # A queued or running governance job untouched this long is resumed by the schedule.
    job_stale_s: int = Field(default=600, ge=30)
    # Rows deleted per transaction by erase and retention (bounded lock time and WAL bursts).
    delete_batch: int = Field(default=1000, ge=10, le=100_000)
    # Access records of private reads: "durable" waits for the WAL flush at commit (≈3 ms on the
    # embedded default); "async" uses synchronous_commit=off (≈0.3 ms) and may lose the last
    # fraction of a second of access records if the database server itself crashes.
    audit_access_commit: Literal["durable", "async"] = "durable"


@lru_cache(maxsize=1)
def get_governance_settings() -> GovernanceSettings:
    return GovernanceSettings()
