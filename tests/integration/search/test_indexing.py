"""Indexing after the write: embeddings, analyzed terms, statistics and idempotency."""

from __future__ import annotations

from datetime import UTC, datetime

from context_engine.models.api import CreateMemoryRequest, WriteTurnRequest
from context_engine.retrieval import analyze
from context_engine.services import indexing, memories, turns


def _write(runtime, admin, session="s1", user="u1", question="Where did Anna travel?", answer="Anna went to Lisbon.",
           when=datetime(2023, 5, 8, 13, 56, tzinfo=UTC)):
    res, _ = turns.write_turn(runtime, admin, session, WriteTurnRequest(
        agent_id="a1", user_id=user, question=question, answer=answer, occurred_at=when), None)
    return res


def _row(runtime, tenant, turn_id):
    with runtime.db.tenant(tenant) as conn:
        return conn.execute("select lex::text as lex, lex_len, lex_parts, embedding is not null as has_vec,"
                            " q_embedding is not null as has_q, a_embedding is not null as has_a,"
                            " embedding_model, indexed_at from turns where tenant_id = %s and id = %s",
                            [tenant, turn_id]).fetchone()


def _stats(runtime, tenant, user="u1"):
    with runtime.db.tenant(tenant) as conn:
        doc = conn.execute("select n_docs, total_len from search_doc_stats where tenant_id = %s and user_id = %s",
                           [tenant, user]).fetchone()
        terms = conn.execute("select term, df from search_term_stats where tenant_id = %s and user_id = %s",
                             [tenant, user]).fetchall()
    return doc, {r["term"]: r["df"] for r in terms}


def test_write_leaves_turn_unindexed_and_index_turn_fills_every_column(runtime, admin) -> None:
    res = _write(runtime, admin)
    assert _row(runtime, admin.tenant_id, res.turn_id)["indexed_at"] is None
    assert indexing.index_turn(runtime, admin.tenant_id, res.turn_id) is True
    row = _row(runtime, admin.tenant_id, res.turn_id)
    assert row["has_vec"] and row["has_q"] and row["has_a"] and row["indexed_at"] is not None
    assert row["embedding_model"] == runtime.embedder.name
    expected = analyze("8 May 2023") + analyze("Where did Anna travel?") + analyze("Anna went to Lisbon.")
    assert row["lex_len"] == len(expected)
    assert row["lex_parts"] == [" ".join(analyze("Where did Anna travel?")), " ".join(analyze("Anna went to Lisbon."))]
    for term in ("lisbon", "anna", "2023", "may"):
        assert f"'{term}'" in row["lex"]


def test_indexing_is_idempotent_and_statistics_count_each_turn_once(runtime, admin) -> None:
    a = _write(runtime, admin, question="Anna: I adopted a puppy", answer="Ben: What breed is the puppy?")
    _write(runtime, admin, question="Anna: A beagle", answer="Ben: Lovely")
    assert indexing.index_turn(runtime, admin.tenant_id, a.turn_id) is True
    assert indexing.index_turn(runtime, admin.tenant_id, a.turn_id) is False  # redelivered event
    first = indexing.index_pending(runtime, admin.tenant_id)
    assert (first.turns, first.memories) == (1, 0)
    assert indexing.index_pending(runtime, admin.tenant_id).turns == 0
    doc, df = _stats(runtime, admin.tenant_id)
    assert doc["n_docs"] == 2
    assert df["puppi"] == 1  # counted once although the turn says it twice
    assert df["anna"] == 2 and df["ben"] == 2


def test_deleting_a_turn_removes_it_from_the_statistics(runtime, admin) -> None:
    a = _write(runtime, admin, question="Anna: I adopted a puppy", answer="Ben: nice")
    _write(runtime, admin, question="Anna: A beagle", answer="Ben: Lovely")
    indexing.index_pending(runtime, admin.tenant_id)
    turns.delete_turn(runtime, admin, "s1", a.turn_id)
    doc, df = _stats(runtime, admin.tenant_id)
    assert doc["n_docs"] == 1
    assert df.get("puppi", 0) == 0 and df["beagl"] == 1


def test_index_memory(runtime, admin) -> None:
    mem = memories.create(runtime, admin, CreateMemoryRequest(agent_id="a1", user_id="u1", content="Prefers tea"))
    assert indexing.index_memory(runtime, admin.tenant_id, mem.id) is True
    assert indexing.index_memory(runtime, admin.tenant_id, mem.id) is False
    with runtime.db.tenant(admin.tenant_id) as conn:
        row = conn.execute("select embedding is not null as v, indexed_at from memories where id = %s",
                           [mem.id]).fetchone()
    assert row["v"] and row["indexed_at"] is not None


def test_every_write_bumps_the_user_generation_and_shared_memories_the_agent_one(runtime, admin) -> None:
    def gens():
        with runtime.db.tenant(admin.tenant_id) as conn:
            rows = conn.execute("select user_id, generation from search_generations").fetchall()
        return {r["user_id"]: r["generation"] for r in rows}

    _write(runtime, admin)
    g1 = gens()
    _write(runtime, admin, session="s2")
    g2 = gens()
    assert g2["u1"] > g1["u1"]
    memories.create(runtime, admin, CreateMemoryRequest(agent_id="a1", visibility="agent", content="Office hours 9-5"))
    g3 = gens()
    assert g3["u1"] == g2["u1"] and g3[""] >= 1
    indexing.index_pending(runtime, admin.tenant_id)  # indexing changes results: it bumps too
    assert gens()["u1"] > g3["u1"]


def test_a_turn_without_answer_has_no_answer_vector(runtime, admin) -> None:
    res = _write(runtime, admin, answer="")
    indexing.index_turn(runtime, admin.tenant_id, res.turn_id)
    row = _row(runtime, admin.tenant_id, res.turn_id)
    assert row["has_vec"] and row["has_q"] and not row["has_a"]
    assert row["lex_parts"] == [" ".join(analyze("Where did Anna travel?")), ""]
