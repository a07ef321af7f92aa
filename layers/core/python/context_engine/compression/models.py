"""Inputs and outputs of window compression. Strategies are pure functions of these
(no database, no clock), so they are unit-tested and benchmarked in isolation."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

StrategyName = Literal["summarize", "truncate", "importance"]

DEFAULT_KEEP_HEAD = 2
DEFAULT_KEEP_TAIL = 6


class SourceTurn(BaseModel):
    seq: int
    question: str
    answer: str = ""
    token_count: int = 0
    occurred_at: datetime | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class CompressionRequest(BaseModel):
    strategy: StrategyName
    turns: list[SourceTurn]
    # Incremental compression folds newer turns into the summary the window already has.
    prior_summary: str | None = None
    prior_seqs: list[int] = Field(default_factory=list)
    target_tokens: int = Field(ge=16)
    keep_head: int = Field(default=DEFAULT_KEEP_HEAD, ge=0)
    keep_tail: int = Field(default=DEFAULT_KEEP_TAIL, ge=0)


class CompressionResult(BaseModel):
    strategy: StrategyName
    summary: str
    summary_tokens: int
    # Every seq the summary stands for (prior summary's seqs included): a deleted turn in
    # this list means the summary must be rebuilt.
    covers_seq: int
    seqs: list[int]
    # Seqs whose text made it into the summary (verbatim or extracted).
    kept_seqs: list[int] = Field(default_factory=list)
    input_tokens: int
    summarizer: str | None = None
    fallback: bool = False
    fallback_reason: str | None = None
    stats: dict[str, Any] = Field(default_factory=dict)
