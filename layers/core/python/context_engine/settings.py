"""Settings: environment variables parsed once into one typed model.

Names follow DESIGN.md: ``DATABASE_URL``, ``REDIS_URL`` and ``CONTEXT_ENGINE_*``.
Every size limit lives here so that operators can tune them and handlers never
hard-code numbers.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONTEXT_ENGINE_", extra="ignore", populate_by_name=True)

    # --- storage -----------------------------------------------------------------
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "CONTEXT_ENGINE_DATABASE_URL"),
        description="Application connection (role without BYPASSRLS). Unset: embedded PostgreSQL.",
    )
    database_admin_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_ADMIN_URL", "CONTEXT_ENGINE_DATABASE_ADMIN_URL"),
        description="Owner connection used only for migrations and operator commands.",
    )
    database_secret_arn: str | None = Field(
        default=None, description="AWS: Secrets Manager secret with the app role's credentials."
    )
    data_dir: Path = Field(
        default=Path(".context-engine"),
        validation_alias=AliasChoices("CONTEXT_ENGINE_DATA_DIR", "data_dir"),
    )
    auto_migrate: bool = True
    pool_min_size: int = 1
    pool_max_size: int = 8
    embedding_dim: int = 384

    # --- search ------------------------------------------------------------------
    search_backend: Literal["postgres", "opensearch"] = "postgres"
    opensearch_url: str | None = Field(default=None, description="AWS: the OpenSearch domain endpoint.")
    opensearch_index_prefix: str = "context-engine"
    # Users' turn vectors kept in process memory for dense retrieval (search/user_index.py);
    # 0 turns it off (the dense side then runs in SQL).
    user_index_mb: int = Field(default=256, ge=0)
    user_index_idle_s: int = Field(default=900, ge=1)
    # "background": a user's first query is served by SQL while their copy loads on a thread;
    # "sync": that query loads it (deterministic; the tests use it).
    user_index_load: Literal["background", "sync"] = "background"

    # --- cache -------------------------------------------------------------------
    redis_url: str | None = Field(default=None, validation_alias=AliasChoices("REDIS_URL", "CONTEXT_ENGINE_REDIS_URL"))
    cache_ttl_s: int = 900
    lru_cache_entries: int = 2048

    # --- models ------------------------------------------------------------------
    token_encoding: str = "cl100k_base"
    embedder: Literal["minilm", "bedrock", "hashing"] = "minilm"
    summarizer: Literal["extractive", "bedrock"] = "extractive"
    bedrock_summary_model_id: str = "anthropic.claude-3-haiku-20240307-v1:0"

    # --- events ------------------------------------------------------------------
    event_bus_name: str | None = Field(default=None, description="AWS: EventBridge bus. Unset: in-process bus.")
    event_source: str = "context-engine"

    # --- limits (every size has one) ---------------------------------------------
    max_body_bytes: int = 256 * 1024
    max_turn_chars: int = 32_000
    max_metadata_bytes: int = 8 * 1024
    max_batch_items: int = 100
    max_token_budget: int = 128_000
    max_page_size: int = 200
    default_page_size: int = 50
    max_memory_chars: int = 8_000
    max_tool_payload_bytes: int = 64 * 1024

    # --- local -------------------------------------------------------------------
    dev_key: str | None = Field(default=None, validation_alias=AliasChoices("CONTEXT_ENGINE_DEV_KEY", "dev_key"))
    environment: Literal["local", "aws", "test"] = "local"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Parsed once per process (Lambda cold start)."""
    return Settings()
