"""Pipeline settings: environment variables parsed once (``CONTEXT_ENGINE_*``)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class PipelineSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONTEXT_ENGINE_", extra="ignore")

    # Outbox relay: rows younger than this are left to the writer's own publish.
    relay_min_age_s: int = Field(default=30, ge=0)
    relay_batch: int = Field(default=500, ge=1, le=1000)
    # Compression: what an automatic compression leaves verbatim (share of the threshold),
    # and the default summary size (share of the threshold, bounded).
    compress_keep_recent_share: float = Field(default=0.5, ge=0.0, le=1.0)
    compress_target_share: float = Field(default=0.25, gt=0.0, le=1.0)
    compress_target_max_tokens: int = Field(default=4000, ge=64)
    # A compression job not finished after this long no longer blocks a new one.
    compress_job_stale_s: int = Field(default=900, ge=60)
    bedrock_max_attempts: int = Field(default=4, ge=1, le=10)


@lru_cache(maxsize=1)
def get_pipeline_settings() -> PipelineSettings:
    return PipelineSettings()
