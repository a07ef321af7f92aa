"""The index columns of turns and memories in PostgreSQL (the system of record).

The indexer reads rows that have no index yet and writes their embedding, analyzed terms and
``indexed_at`` in one statement per batch. Every write is guarded by ``indexed_at is null``
(or a different embedding model), so a redelivered or concurrent indexing has no second
effect: the statistics triggers of 0003_search.sql count each turn once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from context_engine.db.database import Conn
from context_engine.models.domain import Memory
from context_engine.repos.memories import COLS as MEMORY_COLS
from context_engine.retrieval import analyze, index_date_text
from context_engine.search.base import Vector
from context_engine.search.postgres import vector_literal
from context_engine.search.text import utc_date


@dataclass(frozen=True)
class PendingTurn:
    id: UUID
    session_id: str
    agent_id: str
    user_id: str
    seq: int
    question: str
    answer: str
    occurred_at: dt.datetime

    @property
    def embed_text(self) -> str:
        """What the turn's vector encodes: both utterances (the date is left to the lexical
        side and the date filter; it only blurs a sentence embedding)."""
        return f"{self.question}\n{self.answer}" if self.answer else self.question


@dataclass(frozen=True)
class TurnLex:
    """A turn's analyzed terms: question and answer separately (the re-ranker scores each
    utterance) and all of them with the date for the ``lex`` tsvector."""

    parts: tuple[str, str]
    terms: tuple[str, ...]

    @classmethod
    def of(cls, question: str, answer: str, occurred_at: dt.datetime) -> TurnLex:
        q, a = analyze(question), analyze(answer)
        date_terms = analyze(index_date_text(utc_date(occurred_at)))
        return cls(parts=(" ".join(q), " ".join(a)), terms=tuple(date_terms + q + a))


_TURN_COLS = "id, session_id, agent_id, user_id, seq, question, answer, occurred_at"


def _pending(conn: Conn, table: str, cols: str, tenant_id: str, *, limit: int, model: str,
             ids: Sequence[UUID] | None) -> list[dict[str, Any]]:
    """Rows to index, oldest first: the named ones unless already indexed by ``model``, or
    (no ids) any row without an index (the partial ``*_unindexed`` indexes serve this)."""
    if ids is not None:
        return conn.execute(
            f"select {cols} from {table} where tenant_id = %s and id = any(%s)"
            " and (indexed_at is null or embedding_model is distinct from %s) order by created_at limit %s",
            [tenant_id, list(ids), model, limit]).fetchall()
    return conn.execute(
        f"select {cols} from {table} where tenant_id = %s and indexed_at is null order by created_at limit %s",
        [tenant_id, limit]).fetchall()


def pending_turns(conn: Conn, tenant_id: str, *, limit: int, model: str,
                  turn_ids: Sequence[UUID] | None = None) -> list[PendingTurn]:
    rows = _pending(conn, "turns", _TURN_COLS, tenant_id, limit=limit, model=model, ids=turn_ids)
    return [PendingTurn(**r) for r in rows]


@dataclass(frozen=True)
class TurnVectors:
    """The turn's vector and one per utterance (None for a turn without an answer)."""

    turn: Vector
    question: Vector
    answer: Vector | None


def store_turn_index(conn: Conn, tenant_id: str, turns: Sequence[PendingTurn], lex: Sequence[TurnLex],
                     vectors: Sequence[TurnVectors], model: str) -> int:
    """Write the index columns of a batch in one statement; returns the rows written."""
    if not turns:
        return 0
    cur = conn.execute(
        # lex: the analyzed terms plus the user's scope lexeme (0006_search_user_scans.sql)
        "update turns t set lex = to_tsvector('simple', x.terms)"
        " || array_to_tsvector(array[ce_search_scope(t.tenant_id, t.agent_id, t.user_id)]),"
        " lex_len = x.len, lex_parts = array[x.q, x.a],"
        " embedding = x.vec::vector, q_embedding = x.qvec::vector, a_embedding = x.avec::vector,"
        " embedding_model = %s, indexed_at = now()"
        " from unnest(%s::uuid[], %s::text[], %s::int[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[])"
        " as x(id, terms, len, q, a, vec, qvec, avec)"
        " where t.tenant_id = %s and t.id = x.id"
        " and (t.indexed_at is null or t.embedding_model is distinct from %s)",
        [model, [t.id for t in turns], [" ".join(x.terms) for x in lex], [len(x.terms) for x in lex],
         [x.parts[0] for x in lex], [x.parts[1] for x in lex], [vector_literal(v.turn) for v in vectors],
         [vector_literal(v.question) for v in vectors],
         [vector_literal(v.answer) if v.answer is not None else None for v in vectors], tenant_id, model],
    )
    return cur.rowcount


def pending_memories(conn: Conn, tenant_id: str, *, limit: int, model: str,
                     memory_ids: Sequence[UUID] | None = None) -> list[Memory]:
    rows = _pending(conn, "memories", MEMORY_COLS, tenant_id, limit=limit, model=model, ids=memory_ids)
    return [Memory(**r) for r in rows]


def store_memory_index(conn: Conn, tenant_id: str, memories: Sequence[Memory], vectors: Sequence[Vector],
                       model: str) -> int:
    if not memories:
        return 0
    cur = conn.execute(
        "update memories m set embedding = x.vec::vector, embedding_model = %s, indexed_at = now()"
        " from unnest(%s::uuid[], %s::text[]) as x(id, vec)"
        " where m.tenant_id = %s and m.id = x.id"
        " and (m.indexed_at is null or m.embedding_model is distinct from %s)",
        [model, [m.id for m in memories], [vector_literal(v) for v in vectors], tenant_id, model],
    )
    return cur.rowcount

