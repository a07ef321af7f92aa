"""The in-process copy of users' turn vectors (search/user_index.py) against the real
embedded PostgreSQL: same ranking as the all-SQL path, refreshed by generation, reloaded
after deletions, bounded, per tenant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from context_engine.auth import create_key
from context_engine.models.api import WriteTurnRequest
from context_engine.models.domain import Principal, Role
from context_engine.search import user_index_cache
from context_engine.search.base import CandidatePlan, Scope, SearchQuery
from context_engine.search.postgres import PostgresSearchBackend
from context_engine.search.user_index import UserIndex, UserIndexCache, _vectors
from context_engine.services import indexing, turns

T0 = datetime(2023, 5, 1, 10, 0, tzinfo=UTC)
TOPICS = ["pottery class and a wonky bowl", "half marathon on Sunday in two hours", "rescue dog named Biscuit",
          "sister visiting from Toronto", "new job at the bakery downtown", "camping trip by the lake",
          "learning to play the violin", "painting a sunset over the sea", "book club reading Dune",
          "fixing the old bicycle chain"]
QUERIES = ["What is the dog called?", "How long did the marathon take?", "Which book does the club read?",
           "Where did they go camping?", "violin lessons", "What happened at the bakery?",
           "What did Anna paint on 2 May 2023?", "the bicycle in May 2023"]
# Every turn a dense candidate, and the neighbours of every candidate: turns on the same topic
# tie (the hashing embedder), and a cut through ties may pick different turns on either path.
EXACT = CandidatePlan(vector=100, bq_oversample=10, neighbours_of_top=None)


def _write(runtime, principal, user="u1", agent="a1", n=60, start=0):
    ids = []
    for i in range(start, start + n):
        topic = TOPICS[i % len(TOPICS)]
        res = turns.write_turn(runtime, principal, f"{agent}-{user}-s{i // 10}", WriteTurnRequest(
            agent_id=agent, user_id=user, question=f"Anna: turn {i} about the {topic}",
            answer=f"Ben: tell me more about the {topic.split()[-1]}", occurred_at=T0 + timedelta(hours=i)), None)
        ids.append(str(res[0].turn_id))
    indexing.index_pending(runtime, principal.tenant_id)
    return ids


def _query(runtime, text):
    return SearchQuery.build(text, runtime.embedder.embed_query(text))


@pytest.fixture
def cache(runtime):
    return UserIndexCache(64 * 1024 * 1024, runtime.settings.embedding_dim)


def test_copy_ranks_exactly_like_the_sql_path(runtime, admin, cache) -> None:
    _write(runtime, admin)
    scope = Scope(admin.tenant_id, "a1", "u1")
    with_copy, sql_only = PostgresSearchBackend(runtime.db, cache), PostgresSearchBackend(runtime.db)
    for text in QUERIES:
        # every candidate, by id: turns on the same topic tie, and ties may come in any order
        a = with_copy.search_turns(scope, _query(runtime, text), k=100, plan=EXACT)
        b = sql_only.search_turns(scope, _query(runtime, text), k=100, plan=EXACT)
        assert a.from_user_index and not b.from_user_index
        assert a.candidates == b.candidates == len(a.hits)
        scores = {h.candidate.id: h.score for h in b.hits}
        assert {h.candidate.id: h.score for h in a.hits} == pytest.approx(scores, abs=1e-4), text
        assert [h.candidate.dense for h in a.hits] == pytest.approx(
            [next(x.candidate.dense for x in b.hits if x.candidate.id == h.candidate.id) for h in a.hits], abs=1e-5)
    assert len(cache) == 1


def test_new_turns_reach_the_copy_without_a_reload(runtime, admin, cache) -> None:
    _write(runtime, admin, n=20)
    scope = Scope(admin.tenant_id, "a1", "u1")
    backend = PostgresSearchBackend(runtime.db, cache)
    backend.search_turns(scope, _query(runtime, "dog"), k=5)
    entry = next(iter(cache._entries.values()))
    assert entry.n == 20
    new = _write(runtime, admin, n=3, start=20)
    res = backend.search_turns(scope, _query(runtime, "turn 21 about the half marathon"), k=5)
    assert next(iter(cache._entries.values())) is entry and entry.n == 23  # refreshed in place
    assert new[1] in {h.candidate.id for h in res.hits}
    vec = runtime.embedder.embed_query("turn 22 about the rescue dog named Biscuit")
    assert new[2] in [tid for tid, _ in entry.top(vec, 3)]


def test_a_turn_indexed_late_within_the_margin_is_picked_up(runtime, admin, cache, database) -> None:
    """``indexed_at`` is the indexing transaction's start: a slow transaction can commit a row
    older than the copy's watermark; the refresh re-reads the last minute."""
    _write(runtime, admin, n=10)
    scope = Scope(admin.tenant_id, "a1", "u1")
    backend = PostgresSearchBackend(runtime.db, cache)
    backend.search_turns(scope, _query(runtime, "dog"), k=5)
    entry = next(iter(cache._entries.values()))
    [late] = _write(runtime, admin, n=1, start=10)
    with database.owner() as conn:  # as if its transaction had started 30 s before the watermark
        conn.execute("update turns set indexed_at = %s where id = %s", [entry.watermark - timedelta(seconds=30), late])
    entry.generation -= 1  # the copy saw the generation of that commit already: force one refresh
    backend.search_turns(scope, _query(runtime, "dog"), k=5)
    assert late in entry.row_of


def test_a_refresh_reads_only_rows_the_copy_does_not_hold(runtime, admin, cache, database, monkeypatch) -> None:
    """Every turn here was indexed within the refresh margin: a refresh must still fetch only
    the new ones (and a re-indexed one), not the whole last minute again."""
    _write(runtime, admin, n=10)
    scope = Scope(admin.tenant_id, "a1", "u1")
    backend = PostgresSearchBackend(runtime.db, cache)
    backend.search_turns(scope, _query(runtime, "dog"), k=5)
    entry = next(iter(cache._entries.values()))
    assert len(entry.recent) == 10
    read: list[int] = []
    upsert = UserIndex.upsert
    monkeypatch.setattr(UserIndex, "upsert", lambda self, rows: (read.append(len(rows)), upsert(self, rows))[1])
    _write(runtime, admin, n=3, start=10)
    backend.search_turns(scope, _query(runtime, "dog"), k=5)
    [held] = _write(runtime, admin, n=1, start=13)
    backend.search_turns(scope, _query(runtime, "dog"), k=5)
    assert read == [3, 1] and entry.n == 14 and len(entry.recent) == 14
    # re-indexed with another vector: read again, and the copy is loaded anew
    with database.owner() as conn:
        conn.execute("update turns set indexed_at = now(), embedding = a_embedding where id = %s", [held])
    backend.search_turns(scope, _query(runtime, "dog"), k=5)
    assert read[:3] == [3, 1, 1] and next(iter(cache._entries.values())) is not entry


def test_deleted_turns_reload_the_copy(runtime, admin, cache) -> None:
    ids = _write(runtime, admin, n=20)
    scope = Scope(admin.tenant_id, "a1", "u1")
    backend = PostgresSearchBackend(runtime.db, cache)
    text = "turn 5 about the new job at the bakery downtown"
    assert ids[5] in {h.candidate.id for h in backend.search_turns(scope, _query(runtime, text), k=5).hits}
    before = next(iter(cache._entries.values()))
    turns.delete_turn(runtime, admin, "a1-u1-s0", ids[5])
    res = backend.search_turns(scope, _query(runtime, text), k=5)
    after = next(iter(cache._entries.values()))
    assert after is not before and after.n == 19 and ids[5] not in after.row_of
    assert ids[5] not in {h.candidate.id for h in res.hits}


def test_copies_are_per_tenant_agent_and_user(runtime, admin, cache) -> None:
    key_id, _ = create_key(runtime.db, admin.tenant_id + "-x", Role.admin)
    other = Principal(tenant_id=admin.tenant_id + "-x", key_id=key_id, role=Role.admin)
    mine = set(_write(runtime, admin, n=10))
    theirs = set(_write(runtime, other, n=10))
    _write(runtime, admin, user="u2", n=10)
    _write(runtime, admin, agent="a2", n=10)
    backend = PostgresSearchBackend(runtime.db, cache)
    for tenant, expected in ((admin.tenant_id, mine), (other.tenant_id, theirs)):
        res = backend.search_turns(Scope(tenant, "a1", "u1"), _query(runtime, "dog marathon bakery"), k=50)
        assert {h.candidate.id for h in res.hits} <= expected and res.hits
    backend.search_turns(Scope(admin.tenant_id, "a1", "u2"), _query(runtime, "dog"), k=5)
    backend.search_turns(Scope(admin.tenant_id, "a2", "u1"), _query(runtime, "dog"), k=5)
    assert set(cache._entries) == {(admin.tenant_id, "a1", "u1"), (other.tenant_id, "a1", "u1"),
                                   (admin.tenant_id, "a1", "u2"), (admin.tenant_id, "a2", "u1")}
    for (tenant, _, _), entry in cache._entries.items():
        assert set(entry.ids) <= (theirs if tenant == other.tenant_id else set(entry.ids))
    assert cache.drop_user(admin.tenant_id, "u1") == 2 and len(cache) == 2


def test_budget_evicts_least_recently_used_and_skips_users_too_large(runtime, admin) -> None:
    dim = runtime.settings.embedding_dim
    users = ("u1", "u2", "u3", "u4", "u5")
    for user in users:
        _write(runtime, admin, user=user, n=30)
    one_user = UserIndexCache(1 << 30, dim)
    PostgresSearchBackend(runtime.db, one_user).search_turns(Scope(admin.tenant_id, "a1", "u1"),
                                                            _query(runtime, "dog"), k=5)
    size = one_user.nbytes
    cache = UserIndexCache(int(size * 4.5), dim)  # four users' worth; each fits the quarter a user may take
    backend = PostgresSearchBackend(runtime.db, cache)
    for user in ("u1", "u2", "u3", "u1", "u4"):
        backend.search_turns(Scope(admin.tenant_id, "a1", user), _query(runtime, "dog"), k=5)
    assert [k[2] for k in cache._entries] == ["u2", "u3", "u1", "u4"]
    backend.search_turns(Scope(admin.tenant_id, "a1", "u5"), _query(runtime, "dog"), k=5)
    assert [k[2] for k in cache._entries] == ["u3", "u1", "u4", "u5"]  # u2 was least recently used
    assert cache.nbytes <= cache.max_bytes
    tiny = UserIndexCache(size, dim)  # a user must fit a quarter of the budget
    res = PostgresSearchBackend(runtime.db, tiny).search_turns(Scope(admin.tenant_id, "a1", "u1"),
                                                              _query(runtime, "rescue dog named Biscuit"), k=5)
    assert len(tiny) == 0 and res.hits  # served by the all-SQL path


def test_background_loads_serve_the_first_query_from_sql(runtime, admin) -> None:
    _write(runtime, admin, n=20)
    cache = UserIndexCache(1 << 26, runtime.settings.embedding_dim, background=runtime.db)
    scope = Scope(admin.tenant_id, "a1", "u1")
    sql_only = PostgresSearchBackend(runtime.db).search_turns(scope, _query(runtime, "rescue dog"), k=100)
    backend = PostgresSearchBackend(runtime.db, cache)
    first = backend.search_turns(scope, _query(runtime, "rescue dog"), k=100)
    assert not first.from_user_index and not sql_only.from_user_index  # SQL answered; the load runs meanwhile
    cache.wait_for_loads()
    entry = cache._entries[(admin.tenant_id, "a1", "u1")]
    assert entry.n == 20 and entry.generation > 0
    second = backend.search_turns(scope, _query(runtime, "rescue dog"), k=100)
    assert second.from_user_index
    assert {h.candidate.id: h.score for h in second.hits} == pytest.approx(
        {h.candidate.id: h.score for h in first.hits}, abs=1e-4)


def test_idle_copies_expire(runtime, admin) -> None:
    _write(runtime, admin, n=5)
    cache = UserIndexCache(1 << 26, runtime.settings.embedding_dim, idle_s=0.0)
    backend = PostgresSearchBackend(runtime.db, cache)
    backend.search_turns(Scope(admin.tenant_id, "a1", "u1"), _query(runtime, "dog"), k=5)
    _write(runtime, admin, user="u2", n=5)
    backend.search_turns(Scope(admin.tenant_id, "a1", "u2"), _query(runtime, "dog"), k=5)
    assert [k[2] for k in cache._entries] == ["u2"]


def test_query_context_uses_the_process_copy_and_erasure_drops_it(runtime, admin) -> None:
    from context_engine.models.api import QueryContextRequest
    from context_engine.services import context

    _write(runtime, admin, n=10)
    cache = user_index_cache(runtime)
    assert cache is user_index_cache(runtime)
    res = context.query_context(runtime, admin, QueryContextRequest(
        agent_id="a1", user_id="u1", query="What is the dog called?", token_budget=500))
    assert "Biscuit" in res.context
    assert (admin.tenant_id, "a1", "u1") in cache._entries
    assert cache.drop_user(admin.tenant_id, "u1") == 1


def test_top_is_the_exact_cosine_order(runtime, admin, cache) -> None:
    rng = np.random.default_rng(7)
    entry = UserIndex(4, generation=1)
    vecs = rng.normal(size=(3000, 4)).astype(np.float32)  # more rows than one product chunk
    entry.upsert([{"id": f"t{i}", "session_id": "s", "seq": i, "question": "q", "answer": "", "lex_parts": ["x"],
                   "indexed_at": T0, "occurred_at": T0, "lex_len": 1, "terms": ["x"], "e": _blob(v), "q": None,
                   "a": _blob(v)} for i, v in enumerate(vecs)])
    q = rng.normal(size=4).astype(np.float32)
    cos = vecs @ q / np.linalg.norm(vecs, axis=1) / np.linalg.norm(q)
    assert [tid for tid, _ in entry.top(q, 25)] == [f"t{i}" for i in np.argsort(-cos)[:25]]
    got = entry.cosines(["t3", "missing"], q)
    assert set(got) == {"t3"} and got["t3"].question is None and got["t3"].answer == pytest.approx(cos[3], abs=1e-6)


def test_top_with_oversample_reorders_the_hamming_nearest_like_pgvector(runtime, admin, cache) -> None:
    rng = np.random.default_rng(11)
    entry = UserIndex(128, generation=1)
    vecs = rng.normal(size=(2000, 128)).astype(np.float32)
    entry.upsert([{"id": f"t{i}", "session_id": "s", "seq": i, "question": "q", "answer": "", "lex_parts": ["x"],
                   "indexed_at": T0, "occurred_at": T0, "lex_len": 1, "terms": ["x"], "e": _blob(v), "q": None,
                   "a": None} for i, v in enumerate(vecs)])
    q = rng.normal(size=128).astype(np.float32)
    hamming = ((vecs > 0) != (q > 0)).sum(axis=1)
    cos = vecs @ q / np.linalg.norm(vecs, axis=1) / np.linalg.norm(q)
    got = entry.top(q, 10, oversample=4)
    pool = set(np.nonzero(hamming <= np.sort(hamming)[39])[0])  # the 40 nearest (and ties at the edge)
    assert {int(tid[1:]) for tid, _ in got} <= pool
    assert [c for _, c in got] == sorted((c for _, c in got), reverse=True)
    assert [c for _, c in got] == pytest.approx([cos[int(tid[1:])] for tid, _ in got], abs=1e-5)
    exact = [f"t{i}" for i in np.argsort(-cos)[:10]]
    assert [tid for tid, _ in entry.top(q, 10, oversample=1000)] == exact == [tid for tid, _ in entry.top(q, 10)]


def _blob(v: np.ndarray) -> bytes:
    return len(v).to_bytes(2, "big") + bytes(2) + v.astype(">f4").tobytes()


def test_pgvector_binary_form_is_parsed_and_a_dimension_mismatch_is_refused() -> None:
    blob = _blob(np.array([0.5, -1.25, 3.0], dtype=np.float32))
    rows, present = _vectors([blob, None], 3)
    assert rows.tolist() == [[0.5, -1.25, 3.0], [0.0, 0.0, 0.0]] and present.tolist() == [True, False]
    with pytest.raises(ValueError, match="3 dimensions"):
        _vectors([blob], 4)
