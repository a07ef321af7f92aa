"""The search backend interface: what retrieval asks of a store, and what it gets back.

A backend fetches *candidates* cheaply and the shared re-ranker (``search.ranking`` over the
pure functions in ``context_engine.retrieval``) orders them, so every backend ranks turns
the same way. Two implementations:

- ``PostgresSearchBackend`` (embedded default, Aurora): full text over the ``lex`` tsvector,
  pgvector HNSW, date-range rows and neighbours, fused by reciprocal rank in one SQL round trip.
- ``OpenSearchBackend`` (AWS option): BM25 + k-NN query bodies over an index the indexer
  mirrors PostgreSQL rows into (``IndexMirror``).

Scope is always (tenant, agent, user): a turn belongs to one user; a memory is visible to a
user when it is theirs (private) or the agent's (shared).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol
from uuid import UUID

import numpy as np
import numpy.typing as npt

from context_engine.models.domain import Memory
from context_engine.retrieval import QueryFeatures, RankConfig, Scored, analyze_query

Vector = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Scope:
    tenant_id: str
    agent_id: str
    user_id: str | None  # None: only agent-visible memories, no turns


@dataclass(frozen=True)
class SearchQuery:
    """A query as every backend needs it: text, analyzed features, embedding (or None when the
    embedder is unavailable; backends then use only the lexical side).

    The embedding may still be computing (a ``Future``): ``vector`` waits for it, so a backend
    that reads it late overlaps the model with the statements that do not need it."""

    text: str
    features: QueryFeatures
    pending_vector: Vector | Future[Vector | None] | None

    @classmethod
    def build(cls, text: str, vector: Vector | Future[Vector | None] | None) -> SearchQuery:
        return cls(text=text, features=analyze_query(text), pending_vector=vector)

    @property
    def vector(self) -> Vector | None:
        v = self.pending_vector
        return v.result() if isinstance(v, Future) else v


@dataclass(frozen=True)
class CandidatePlan:
    """How many rows each candidate source returns — the plan measured in docs/retrieval.md
    (LoCoMo dev set) and docs/query.md (latency at 10k turns per user)."""

    fts: int = 50
    vector: int = 50
    date_rows: int = 50
    date_scan: int = 300  # in-range rows scored per named date range (the earliest first)
    # Only terms in at most this share of the user's turns select lexical candidates (all
    # terms still score): a very common term (a speaker's name) would match every row.
    match_df_cap: float = 0.10
    # ... rarest first, while their document frequencies add up to at most this many rows.
    match_max_rows: int = 600
    # Neighbours (same session, seq ± 1) of the first-round candidates, in the same round trip:
    # of every one (None), or of the best ``neighbours_of_top`` by reciprocal-rank fusion of the
    # lexical and dense orders (k = ``rrf_k``).
    neighbours: bool = True
    neighbours_of_top: int | None = 30
    rrf_k: float = 60.0
    # After ranking, fetch the neighbours of the top ``second_pass_top`` that are still missing
    # and rank again (a second round trip and rank pass; off: with every candidate's neighbours
    # prefetched it changed nothing on the dev set).
    second_pass_neighbours: bool = False
    second_pass_top: int = 30
    # Turns written but not yet indexed (no lex, no vector) are candidates too, so a turn is
    # findable the moment it is written; the re-ranker scores them from their text.
    unindexed: int = 20
    # Dense candidates: the best ``vector × bq_oversample`` by Hamming distance of the
    # binary-quantized vectors, re-ordered by exact cosine.
    bq_oversample: int = 4
    # Users with more indexed turns than this go through the HNSW index instead of the
    # per-user scan (whose cost grows with the user's turns, HNSW's with the tenant's).
    exact_scan_max: int = 200_000


@dataclass(frozen=True)
class TurnSearch:
    """Ranked turns (best first) and how they were found."""

    hits: list[Scored]
    candidates: int
    round_trips: int
    from_user_index: bool = False  # PostgreSQL: candidates found in the user's in-process index


@dataclass(frozen=True)
class ScoredMemory:
    memory: Memory
    score: float
    lexical_rank: int | None = None
    vector_rank: int | None = None


@dataclass(frozen=True)
class TurnDoc:
    """What the indexer hands an index mirror for one turn."""

    turn_id: UUID
    session_id: str
    agent_id: str
    user_id: str
    seq: int
    question: str
    answer: str
    occurred_at: dt.datetime
    lex_terms: Sequence[str]
    lex_parts: Sequence[str]
    embedding: Vector
    question_embedding: Vector | None = None
    answer_embedding: Vector | None = None


@dataclass(frozen=True)
class MemoryDoc:
    memory: Memory
    embedding: Vector
    extra: dict[str, object] = field(default_factory=dict)


class SearchBackend(Protocol):
    name: str

    def search_turns(
        self, scope: Scope, query: SearchQuery, *, k: int, config: RankConfig | None = None,
        plan: CandidatePlan | None = None,
    ) -> TurnSearch:
        """The user's turns best first, at most ``k``; each hit carries its provenance
        (turn id, session, seq, date) in ``Scored.candidate``."""
        ...

    def search_memories(self, scope: Scope, query: SearchQuery, *, k: int) -> list[ScoredMemory]:
        """Memories visible to the scope's user (private ones and the agent's shared ones)."""
        ...


class IndexMirror(Protocol):
    """An external index fed from PostgreSQL rows by the indexer (OpenSearch). PostgreSQL's own
    search reads the rows' index columns directly and needs no mirror."""

    def upsert_turns(self, tenant_id: str, docs: Sequence[TurnDoc]) -> None: ...
    def upsert_memories(self, tenant_id: str, docs: Sequence[MemoryDoc]) -> None: ...
    def delete_turns(self, tenant_id: str, turn_ids: Sequence[UUID]) -> None: ...
    def delete_memories(self, tenant_id: str, memory_ids: Sequence[UUID]) -> None: ...
    def delete_session(self, tenant_id: str, session_id: str) -> None: ...
    def delete_user(self, tenant_id: str, user_id: str) -> None: ...
