"""PostgresSearchBackend against the real embedded PostgreSQL: sources, fusion, filters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from context_engine.auth import create_key
from context_engine.models.api import CreateMemoryRequest, SearchMemoriesRequest, WriteTurnRequest
from context_engine.models.domain import Principal, Role
from context_engine.search.base import CandidatePlan, Scope, SearchQuery
from context_engine.search.postgres import PostgresSearchBackend
from context_engine.services import indexing, memories, turns

T0 = datetime(2023, 5, 1, 10, 0, tzinfo=UTC)

TALK = [
    ("Anna: I started pottery classes last week", "Ben: That sounds relaxing, what did you make?"),
    ("Anna: A small bowl, a bit wonky", "Ben: Wonky bowls have character"),
    ("Ben: My sister visits from Toronto next month", "Anna: You must be excited"),
    ("Anna: I ran a half marathon on Sunday", "Ben: Congratulations! What was your time?"),
    ("Anna: Two hours and five minutes", "Ben: Impressive for a first race"),
    ("Ben: We adopted a rescue dog named Biscuit", "Anna: Biscuit is a perfect name"),
]


@pytest.fixture
def backend(runtime):
    return PostgresSearchBackend(runtime.db)


def _write_talk(runtime, principal, user="u1", agent="a1", index=True):
    for i, (q, a) in enumerate(TALK):
        when = T0 + timedelta(days=7 * (i // 3), minutes=i)
        turns.write_turn(runtime, principal, f"{user}-s{i // 3}", WriteTurnRequest(
            agent_id=agent, user_id=user, question=q, answer=a, occurred_at=when), None)
    if index:
        indexing.index_pending(runtime, principal.tenant_id)


def _query(runtime, text):
    return SearchQuery.build(text, runtime.embedder.embed_query(text))


def _questions(search):
    return [s.candidate.parts[0].text for s in search.hits]


def test_lexical_and_dense_hits_are_ranked_first(runtime, admin, backend) -> None:
    _write_talk(runtime, admin)
    res = backend.search_turns(Scope(admin.tenant_id, "a1", "u1"), _query(runtime, "What is the dog called?"), k=3)
    assert _questions(res)[0] == "Ben: We adopted a rescue dog named Biscuit"
    res = backend.search_turns(Scope(admin.tenant_id, "a1", "u1"), _query(runtime, "pottery bowl"), k=2)
    assert set(_questions(res)) == {TALK[0][0], TALK[1][0]}
    hit = res.hits[0].candidate
    assert hit.session_id == "u1-s0" and hit.seq in (1, 2) and hit.occurred_at is not None


def test_results_never_cross_user_agent_or_tenant(runtime, admin, backend) -> None:
    _write_talk(runtime, admin, user="u1")
    _write_talk(runtime, admin, user="u2")
    _write_talk(runtime, admin, user="u3", agent="a2")
    key_id, _ = create_key(runtime.db, admin.tenant_id + "-x", Role.admin)
    other = Principal(tenant_id=admin.tenant_id + "-x", key_id=key_id, role=Role.admin)
    _write_talk(runtime, other, user="u1")
    res = backend.search_turns(Scope(admin.tenant_id, "a1", "u1"), _query(runtime, "Biscuit dog pottery marathon"),
                               k=50)
    assert res.hits and {h.candidate.session_id.split("-")[0] for h in res.hits} == {"u1"}
    ids = {h.candidate.id for h in res.hits}
    with runtime.db.tenant(admin.tenant_id) as conn:
        owners = conn.execute("select distinct agent_id, user_id from turns where id::text = any(%s)",
                              [list(ids)]).fetchall()
    assert [(r["agent_id"], r["user_id"]) for r in owners] == [("a1", "u1")]


def test_turns_are_found_before_they_are_indexed(runtime, admin, backend) -> None:
    _write_talk(runtime, admin, index=False)
    res = backend.search_turns(Scope(admin.tenant_id, "a1", "u1"), _query(runtime, "Biscuit"), k=3)
    assert _questions(res)[0] == TALK[5][0]


def test_date_named_in_query_pulls_turns_of_that_week(runtime, admin, backend) -> None:
    _write_talk(runtime, admin)
    res = backend.search_turns(Scope(admin.tenant_id, "a1", "u1"),
                               _query(runtime, "What happened on 8 May 2023?"), k=3)
    assert {h.candidate.session_id for h in res.hits} == {"u1-s1"}


def test_neighbours_of_the_best_hits_are_candidates(runtime, admin, backend) -> None:
    _write_talk(runtime, admin)
    # "Two hours and five minutes" shares no word with the query: it is the neighbour of the hit
    res = backend.search_turns(Scope(admin.tenant_id, "a1", "u1"), _query(runtime, "half marathon Sunday"), k=10,
                               plan=CandidatePlan(fts=1, vector=1))
    assert TALK[4][0] in _questions(res)
    res = backend.search_turns(Scope(admin.tenant_id, "a1", "u1"), _query(runtime, "half marathon Sunday"), k=10,
                               plan=CandidatePlan(fts=1, vector=1, neighbours=False, unindexed=0))
    assert TALK[4][0] not in _questions(res)


def test_search_without_embedding_is_lexical_only(runtime, admin, backend) -> None:
    _write_talk(runtime, admin)
    res = backend.search_turns(Scope(admin.tenant_id, "a1", "u1"), SearchQuery.build("Toronto sister", None), k=2)
    assert _questions(res)[0] == TALK[2][0]
    assert all(h.candidate.dense is None for h in res.hits)


def test_memories_respect_visibility(runtime, admin, backend) -> None:
    mine = memories.create(runtime, admin, CreateMemoryRequest(agent_id="a1", user_id="u1",
                                                               content="u1 is allergic to peanuts"))
    memories.create(runtime, admin, CreateMemoryRequest(agent_id="a1", user_id="u2", content="u2 loves peanuts"))
    shared = memories.create(runtime, admin, CreateMemoryRequest(agent_id="a1", visibility="agent",
                                                                 content="The kitchen serves peanut-free meals"))
    memories.create(runtime, admin, CreateMemoryRequest(agent_id="a2", visibility="agent", content="peanuts a2"))
    indexing.index_pending(runtime, admin.tenant_id)
    q = _query(runtime, "peanuts allergy")
    got = backend.search_memories(Scope(admin.tenant_id, "a1", "u1"), q, k=10)
    assert {m.memory.id for m in got} == {mine.id, shared.id}
    assert got[0].memory.id == mine.id and got[0].lexical_rank == 1
    anonymous = backend.search_memories(Scope(admin.tenant_id, "a1", None), q, k=10)
    assert {m.memory.id for m in anonymous} == {shared.id}


def test_memory_search_endpoint_uses_the_backend(runtime, admin) -> None:
    m = memories.create(runtime, admin, CreateMemoryRequest(agent_id="a1", user_id="u1",
                                                            content="Anna's favourite colour is green"))
    memories.create(runtime, admin, CreateMemoryRequest(agent_id="a1", user_id="u1", content="Anna works nights"))
    indexing.index_pending(runtime, admin.tenant_id)
    res = memories.search(runtime, admin, SearchMemoriesRequest(agent_id="a1", user_id="u1",
                                                                query="which colour does she like", k=1))
    assert [h.memory.id for h in res.items] == [m.id] and res.items[0].score > 0


def test_hnsw_path_for_very_large_users_finds_the_same_turn(runtime, admin, backend) -> None:
    _write_talk(runtime, admin)
    q = _query(runtime, "What is the dog called?")
    scan = backend.search_turns(Scope(admin.tenant_id, "a1", "u1"), q, k=3)
    hnsw = backend.search_turns(Scope(admin.tenant_id, "a1", "u1"), q, k=3, plan=CandidatePlan(exact_scan_max=0))
    assert _questions(hnsw)[0] == _questions(scan)[0] == "Ben: We adopted a rescue dog named Biscuit"


def test_lexical_match_function_never_reads_another_tenant(runtime, admin) -> None:
    _write_talk(runtime, admin)
    with runtime.db.tenant(admin.tenant_id) as conn:
        mine = conn.execute("select count(*) as n from ce_search_match(%s, 'a1', 'u1', 'biscuit'::tsquery)",
                            [admin.tenant_id]).fetchone()["n"]
    with runtime.db.tenant("someone-else") as conn:  # the caller's tenant is not the one asked for
        theirs = conn.execute("select count(*) as n from ce_search_match(%s, 'a1', 'u1', 'biscuit'::tsquery)",
                              [admin.tenant_id]).fetchone()["n"]
    assert (mine, theirs) == (1, 0)


def test_scope_lexeme_is_indexed_but_not_counted_as_a_term(runtime, admin) -> None:
    _write_talk(runtime, admin)
    with runtime.db.tenant(admin.tenant_id) as conn:
        scope = conn.execute("select ce_search_scope(%s, 'a1', 'u1') as s", [admin.tenant_id]).fetchone()["s"]
        tagged = conn.execute("select count(*) as n from turns where tenant_id = %s and lex @@ %s::tsquery",
                              [admin.tenant_id, f"'{scope}'"]).fetchone()["n"]
        counted = conn.execute("select count(*) as n from search_term_stats where tenant_id = %s"
                               " and left(term, 1) = '_'", [admin.tenant_id]).fetchone()["n"]
    assert (tagged, counted) == (len(TALK), 0)
