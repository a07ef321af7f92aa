"""WriteQA against the real embedded PostgreSQL."""

from __future__ import annotations

import pytest

from context_engine.errors import Conflict, NotFound, PayloadTooLarge
from context_engine.models.api import QueryContextRequest, WriteTurnRequest
from context_engine.models.domain import Principal, Role
from context_engine.services import context, turns


def _req(**kw):  # type: ignore[no-untyped-def]
    base = {"agent_id": "a1", "user_id": "u1", "question": "What is the capital of France?", "answer": "Paris."}
    return WriteTurnRequest(**{**base, **kw})


def test_write_assigns_consecutive_seqs_and_counts_tokens(runtime, admin) -> None:
    r1, _ = turns.write_turn(runtime, admin, "s1", _req(), None)
    r2, _ = turns.write_turn(runtime, admin, "s1", _req(question="And of Spain?", answer="Madrid."), None)
    assert (r1.seq, r2.seq) == (1, 2)
    assert r1.token_count > 0
    info = turns.get_session(runtime, admin, "s1")
    assert info.session.turn_count == 2
    assert info.session.token_count == r1.token_count + r2.token_count
    assert info.window.version >= 3  # created at 1, bumped by each write


def test_same_idempotency_key_stores_one_turn(runtime, admin) -> None:
    first, replayed1 = turns.write_turn(runtime, admin, "s1", _req(), "key-1")
    second, replayed2 = turns.write_turn(runtime, admin, "s1", _req(), "key-1")
    assert first == second and (replayed1, replayed2) == (False, True)
    assert turns.get_session(runtime, admin, "s1").session.turn_count == 1
    with pytest.raises(Conflict):
        turns.write_turn(runtime, admin, "s1", _req(question="different"), "key-1")


def test_oversized_turn_is_413_and_writes_nothing(runtime, admin) -> None:
    with pytest.raises(PayloadTooLarge) as err:
        turns.write_turn(runtime, admin, "s1", _req(answer="x" * (runtime.settings.max_turn_chars + 1)), None)
    assert err.value.details[0]["loc"] == ["answer"]
    with pytest.raises(NotFound):
        turns.get_session(runtime, admin, "s1")


def test_other_tenant_sees_404_never_data(runtime, admin) -> None:
    turns.write_turn(runtime, admin, "shared-name", _req(), None)
    from context_engine.auth import create_key

    key_id, _ = create_key(runtime.db, admin.tenant_id + "-other", Role.admin)
    intruder = Principal(tenant_id=admin.tenant_id + "-other", key_id=key_id, role=Role.admin)
    with pytest.raises(NotFound):
        turns.get_session(runtime, intruder, "shared-name")
    with pytest.raises(NotFound):
        turns.list_turns(runtime, intruder, "shared-name", 0, 10)
    # The intruder writing to the same session id creates its own session, in its own tenant.
    r, _ = turns.write_turn(runtime, intruder, "shared-name", _req(), None)
    assert r.seq == 1


def test_row_level_security_hides_rows_even_without_filter(runtime, admin) -> None:
    turns.write_turn(runtime, admin, "s1", _req(), None)
    with runtime.db.tenant("someone-else") as conn:
        assert conn.execute("select count(*) as n from turns").fetchone()["n"] == 0
    with runtime.db.tenant(admin.tenant_id) as conn:
        assert conn.execute("select count(*) as n from turns").fetchone()["n"] == 1


def test_query_context_never_exceeds_budget(runtime, admin) -> None:
    for i in range(30):
        turns.write_turn(runtime, admin, "s1", _req(question=f"question number {i} " * 5, answer="ok " * 20), None)
    for budget in (1, 10, 50, 200, 1000, 100000):
        res = context.query_context(runtime, admin, QueryContextRequest(
            agent_id="a1", user_id="u1", session_id="s1", query="question", token_budget=budget))
        assert res.token_count <= budget
        from context_engine.text.tokens import count_tokens

        assert count_tokens(res.context) == res.token_count


def test_concurrent_writes_to_a_new_session_get_consecutive_seqs(runtime, admin) -> None:
    """Writers race to create the session and then to advance it: the session row lock (taken
    by the one upsert statement) orders them, so seqs are 1..n with no gap or duplicate, and
    the counters and window version agree."""
    from concurrent.futures import ThreadPoolExecutor

    def write(i: int) -> int:
        return turns.write_turn(runtime, admin, "race", _req(question=f"q{i}"), None)[0].seq

    with ThreadPoolExecutor(6) as pool:
        seqs = list(pool.map(write, range(60)))
    assert sorted(seqs) == list(range(1, 61))
    info = turns.get_session(runtime, admin, "race")
    assert info.session.turn_count == 60 and info.session.last_seq == 60
    assert info.window.version == 61  # created at 1, bumped by each write
    page = turns.list_turns(runtime, admin, "race", 0, 100)
    assert [t.seq for t in page.items] == list(range(1, 61))


def test_a_session_of_another_user_is_a_conflict_and_writes_nothing(runtime, admin) -> None:
    turns.write_turn(runtime, admin, "mine", _req(), None)
    with pytest.raises(Conflict):
        turns.write_turn(runtime, admin, "mine", _req(user_id="u2"), None)
    info = turns.get_session(runtime, admin, "mine")
    assert info.session.turn_count == 1 and info.session.user_id == "u1"
    scoped = Principal(tenant_id=admin.tenant_id, key_id="k2", role=Role.writer, agent_id="a2")
    with pytest.raises(NotFound):  # a key scoped to another agent does not learn the session exists
        turns.write_turn(runtime, scoped, "mine", _req(agent_id="a2"), None)
