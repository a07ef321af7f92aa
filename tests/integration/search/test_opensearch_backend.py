"""OpenSearchBackend against osmem-server (an OpenSearch API emulator): indexing, BM25,
filters, aggregations, neighbours, deletes. osmem implements neither ``knn`` queries nor
``knn_score`` scripts, so searches here carry no vector and the vector request bodies are
checked for their shape (the vector side runs on the PostgreSQL backend's tests)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from context_engine.embeddings import HashingEmbedder
from context_engine.models.domain import Memory
from context_engine.search.base import CandidatePlan, MemoryDoc, Scope, SearchQuery, TurnDoc
from context_engine.search.opensearch import OpenSearchBackend, cosine_body, knn_body, memory_filter, scope_filter
from context_engine.search.store import TurnLex

T0 = dt.datetime(2023, 5, 1, 10, 0, tzinfo=dt.UTC)
EMB = HashingEmbedder(16)
TALK = [
    ("Anna: I started pottery classes last week", "Ben: That sounds relaxing, what did you make?"),
    ("Anna: A small bowl, a bit wonky", "Ben: Wonky bowls have character"),
    ("Ben: My sister visits from Toronto next month", "Anna: You must be excited"),
    ("Anna: I ran a half marathon on Sunday", "Ben: Congratulations! What was your time?"),
    ("Anna: Two hours and five minutes", "Ben: Impressive for a first race"),
    ("Ben: We adopted a rescue dog named Biscuit", "Anna: Biscuit is a perfect name"),
]


def docs(agent="a1", user="u1"):
    out = []
    for i, (q, a) in enumerate(TALK):
        when = T0 + dt.timedelta(days=7 * (i // 3), minutes=i)
        lex = TurnLex.of(q, a, when)
        out.append(TurnDoc(turn_id=uuid.uuid4(), session_id=f"{user}-s{i // 3}", agent_id=agent, user_id=user,
                           seq=i % 3 + 1, question=q, answer=a, occurred_at=when, lex_terms=lex.terms,
                           lex_parts=lex.parts, embedding=EMB.embed_query(q + "\n" + a),
                           question_embedding=EMB.embed_query(q), answer_embedding=EMB.embed_query(a)))
    return out


@pytest.fixture
def backend(osmem_url):
    b = OpenSearchBackend.from_url(osmem_url, prefix=f"t{uuid.uuid4().hex[:6]}")
    b.ensure_indices(16)
    b.upsert_turns("t1", docs())
    b.upsert_turns("t1", docs(user="u2"))
    b.upsert_turns("t1", docs(agent="a2"))
    b.upsert_turns("t2", docs())
    return b


def questions(found):
    return [h.candidate.parts[0].text for h in found.hits]


def lexical(text):
    return SearchQuery.build(text, None)


def test_bm25_candidates_are_reranked_and_stay_in_scope(backend) -> None:
    found = backend.search_turns(Scope("t1", "a1", "u1"), lexical("What is the dog called? Biscuit"), k=3)
    assert questions(found)[0] == TALK[5][0]
    everything = backend.search_turns(Scope("t1", "a1", "u1"), lexical("Anna Ben pottery dog marathon sister"), k=50)
    assert len(everything.hits) == len(TALK)
    assert {h.candidate.session_id for h in everything.hits} == {"u1-s0", "u1-s1"}


def test_statistics_come_from_the_users_documents(backend) -> None:
    resp = backend._msearch(backend.turns_index, [
        {"size": 0, "track_total_hits": True, "query": {"bool": {"filter": scope_filter(Scope("t1", "a1", "u1"))}},
         "aggs": {"df": {"filters": {"filters": {"biscuit": {"term": {"lex": "biscuit"}},
                                                  "anna": {"term": {"lex": "anna"}}}}}}}])[0]
    assert resp["hits"]["total"]["value"] == len(TALK)
    assert resp["aggregations"]["df"]["buckets"]["biscuit"]["doc_count"] == 1
    assert resp["aggregations"]["df"]["buckets"]["anna"]["doc_count"] == len(TALK)


def test_neighbours_of_the_best_hits_are_fetched(backend) -> None:
    found = backend.search_turns(Scope("t1", "a1", "u1"), lexical("half marathon Sunday"), k=10,
                                 plan=CandidatePlan(fts=1, date_rows=0))
    assert TALK[4][0] in questions(found)  # shares no word with the query
    alone = backend.search_turns(Scope("t1", "a1", "u1"), lexical("half marathon Sunday"), k=10,
                                 plan=CandidatePlan(fts=1, date_rows=0, neighbours=False))
    assert questions(alone) == [TALK[3][0]]


def test_a_named_date_pulls_that_weeks_turns(backend) -> None:
    found = backend.search_turns(Scope("t1", "a1", "u1"), lexical("What happened on 8 May 2023?"), k=3)
    assert {h.candidate.session_id for h in found.hits} == {"u1-s1"}


def test_delete_user_removes_only_that_users_documents(backend) -> None:
    backend.delete_user("t1", "u1")
    assert backend.search_turns(Scope("t1", "a1", "u1"), lexical("Biscuit"), k=3).hits == []
    assert questions(backend.search_turns(Scope("t1", "a1", "u2"), lexical("Biscuit"), k=3))[0] == TALK[5][0]
    assert questions(backend.search_turns(Scope("t2", "a1", "u1"), lexical("Biscuit"), k=3))[0] == TALK[5][0]


def _memory(agent, user, visibility, content):
    now = dt.datetime.now(dt.UTC)
    return Memory(id=uuid.uuid4(), agent_id=agent, user_id=user, visibility=visibility, content=content,
                  importance=0.5, token_count=5, created_at=now, updated_at=now)


def test_memories_respect_visibility(backend) -> None:
    mine = _memory("a1", "u1", "private", "u1 is allergic to peanuts")
    theirs = _memory("a1", "u2", "private", "u2 loves peanuts")
    shared = _memory("a1", None, "agent", "The kitchen serves peanut free meals")
    other_agent = _memory("a2", None, "agent", "peanuts for a2")
    backend.upsert_memories("t1", [MemoryDoc(m, EMB.embed_query(m.content)) for m in (mine, theirs, shared,
                                                                                       other_agent)])
    got = backend.search_memories(Scope("t1", "a1", "u1"), lexical("peanuts allergy"), k=10)
    assert {m.memory.id for m in got} == {mine.id, shared.id}
    assert got[0].memory == mine and got[0].lexical_rank == 1
    assert {m.memory.id for m in backend.search_memories(Scope("t1", "a1", None), lexical("peanuts"), k=10)} == {
        shared.id}


def test_knn_request_shapes() -> None:
    scope = Scope("t1", "a1", "u1")
    vec = EMB.embed_query("dog")
    body = knn_body(scope_filter(scope), vec, 50)
    knn = body["query"]["knn"]["embedding"]
    assert knn["k"] == 50 and body["size"] == 50 and len(knn["vector"]) == 16
    assert knn["filter"] == {"bool": {"filter": [{"term": {"tenant_id": "t1"}}, {"term": {"agent_id": "a1"}},
                                                 {"term": {"user_id": "u1"}}]}}
    mem = knn_body(memory_filter(scope), vec, 10)["query"]["knn"]["embedding"]["filter"]["bool"]["filter"]
    assert {"term": {"tenant_id": "t1"}} in mem and {"term": {"agent_id": "a1"}} in mem
    visible = mem[2]["bool"]["should"]
    assert {"term": {"visibility": "agent"}} in visible
    assert {"bool": {"filter": [{"term": {"visibility": "private"}}, {"term": {"user_id": "u1"}}]}} in visible
    cos = cosine_body(scope, {"ids": {"values": ["x"]}}, 1, vec, "q_embedding")["query"]["script_score"]
    assert cos["script"]["lang"] == "knn" and cos["script"]["source"] == "knn_score"
    assert cos["script"]["params"]["field"] == "q_embedding"
    assert cos["script"]["params"]["space_type"] == "cosinesimil"
    assert {"term": {"user_id": "u1"}} in cos["query"]["bool"]["filter"]


def test_the_indexer_feeds_the_mirror(runtime, admin, osmem_url) -> None:
    from context_engine.models.api import WriteTurnRequest
    from context_engine.search import index_mirror
    from context_engine.services import indexing, turns
    from context_engine.settings import Settings

    class OpenSearchSettings(Settings):
        search_backend: str = "opensearch"
        opensearch_url: str = osmem_url
        opensearch_index_prefix: str = f"t{uuid.uuid4().hex[:6]}"

    runtime.settings = OpenSearchSettings()
    res, _ = turns.write_turn(runtime, admin, "s1", WriteTurnRequest(
        agent_id="a1", user_id="u1", question="Ben: We adopted a rescue dog named Biscuit", answer="Anna: Lovely"),
        None)
    assert indexing.index_turn(runtime, admin.tenant_id, res.turn_id)
    mirror = index_mirror(runtime)
    assert isinstance(mirror, OpenSearchBackend)
    found = mirror.search_turns(Scope(admin.tenant_id, "a1", "u1"), lexical("Biscuit"), k=1)
    assert [h.candidate.id for h in found.hits] == [str(res.turn_id)]
