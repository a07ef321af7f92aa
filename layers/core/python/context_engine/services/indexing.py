"""Indexing after the write is acknowledged: embeddings and analyzed terms for search.

The write path stores a turn or memory and returns; the index consumer (event pipeline,
``TurnWritten`` / ``MemoryWritten``) then calls ``index_turn`` / ``index_memory``, and
``index_pending`` sweeps whatever is still unindexed (a lost event, a backlog after an
outage, a bulk import). All three are idempotent: rows are selected and written only while
they have no index from the current embedding model, so a redelivered event or two
concurrent consumers have no second effect (and per-user statistics count a turn once).

Order of effects: embed → feed the external index mirror if there is one (OpenSearch) →
mark the PostgreSQL rows indexed. A failure before the last step leaves the rows unindexed
and a retry repeats the (idempotent) upserts; nothing is marked indexed that is not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from aws_lambda_powertools.metrics import MetricUnit

from context_engine.embeddings.base import Embedder
from context_engine.models.domain import Memory
from context_engine.observability.powertools import metrics
from context_engine.runtime import Runtime
from context_engine.search import index_mirror
from context_engine.search.base import MemoryDoc, TurnDoc, Vector
from context_engine.search.store import (
    PendingTurn,
    TurnLex,
    TurnVectors,
    pending_memories,
    pending_turns,
    store_memory_index,
    store_turn_index,
)

DEFAULT_BATCH = 256


@dataclass(frozen=True)
class IndexResult:
    turns: int = 0
    memories: int = 0


def _index_turns(rt: Runtime, tenant_id: str, pending: Sequence[PendingTurn]) -> int:
    if not pending:
        return 0
    embedder = rt.embedder
    lex = [TurnLex.of(t.question, t.answer, t.occurred_at) for t in pending]
    vectors = _embed_turns(embedder, pending)
    mirror = index_mirror(rt)
    if mirror is not None:
        mirror.upsert_turns(tenant_id, [
            TurnDoc(turn_id=t.id, session_id=t.session_id, agent_id=t.agent_id, user_id=t.user_id, seq=t.seq,
                    question=t.question, answer=t.answer, occurred_at=t.occurred_at, lex_terms=x.terms,
                    lex_parts=x.parts, embedding=v.turn, question_embedding=v.question, answer_embedding=v.answer)
            for t, x, v in zip(pending, lex, vectors, strict=True)])
    with rt.db.tenant(tenant_id) as conn:
        written = store_turn_index(conn, tenant_id, pending, lex, vectors, embedder.name)
    if written:
        metrics.add_metric(name="TurnsIndexed", unit=MetricUnit.Count, value=written)
    return written


def _embed_turns(embedder: Embedder, pending: Sequence[PendingTurn]) -> list[TurnVectors]:
    """The turn's text and each utterance, in one embedding call (the embedder batches by
    length): the turn vector finds candidates, the utterance vectors score them."""
    texts = [t.embed_text for t in pending] + [t.question for t in pending]
    answers = [i for i, t in enumerate(pending) if t.answer]
    texts += [pending[i].answer for i in answers]
    vecs = embedder.embed(texts)
    n = len(pending)
    answer_vec: dict[int, Vector] = {i: vecs[2 * n + j] for j, i in enumerate(answers)}
    return [TurnVectors(turn=vecs[i], question=vecs[n + i], answer=answer_vec.get(i)) for i in range(n)]


def _index_memories(rt: Runtime, tenant_id: str, pending: Sequence[Memory]) -> int:
    if not pending:
        return 0
    embedder = rt.embedder
    vectors = embedder.embed([m.content for m in pending])
    mirror = index_mirror(rt)
    if mirror is not None:
        mirror.upsert_memories(tenant_id, [MemoryDoc(memory=m, embedding=v) for m, v in zip(pending, vectors,
                                                                                             strict=True)])
    with rt.db.tenant(tenant_id) as conn:
        written = store_memory_index(conn, tenant_id, pending, list(vectors), embedder.name)
    if written:
        metrics.add_metric(name="MemoriesIndexed", unit=MetricUnit.Count, value=written)
    return written


def index_turns(rt: Runtime, tenant_id: str, turn_ids: Sequence[UUID]) -> int:
    """Index the named turns (those not indexed yet by the current model); returns how many."""
    if not turn_ids:
        return 0
    with rt.db.tenant(tenant_id) as conn:
        pending = pending_turns(conn, tenant_id, limit=len(turn_ids), model=rt.embedder.name, turn_ids=turn_ids)
    return _index_turns(rt, tenant_id, pending)


def index_turn(rt: Runtime, tenant_id: str, turn_id: UUID | str) -> bool:
    """Index one turn. False when there was nothing to do (already indexed, or deleted)."""
    return index_turns(rt, tenant_id, [UUID(str(turn_id))]) > 0


def index_memory(rt: Runtime, tenant_id: str, memory_id: UUID | str) -> bool:
    """Index one memory. False when there was nothing to do (already indexed, or deleted)."""
    with rt.db.tenant(tenant_id) as conn:
        pending = pending_memories(conn, tenant_id, limit=1, model=rt.embedder.name,
                                   memory_ids=[UUID(str(memory_id))])
    return _index_memories(rt, tenant_id, pending) > 0


def index_pending(rt: Runtime, tenant_id: str, limit: int = DEFAULT_BATCH) -> IndexResult:
    """Index up to ``limit`` unindexed turns and ``limit`` unindexed memories of a tenant,
    oldest first, in embedding batches. Call again while it returns a full batch."""
    with rt.db.tenant(tenant_id) as conn:
        turns = pending_turns(conn, tenant_id, limit=limit, model=rt.embedder.name)
        memories = pending_memories(conn, tenant_id, limit=limit, model=rt.embedder.name)
    return IndexResult(turns=_index_turns(rt, tenant_id, turns), memories=_index_memories(rt, tenant_id, memories))
