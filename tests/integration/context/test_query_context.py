"""QueryContext end to end on PostgreSQL: sections, provenance, templates, cache, prepared contexts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from context_engine.errors import NotFound, ValidationFailed
from context_engine.models.api import (
    CreateMemoryRequest,
    PutAgentRequest,
    QueryContextRequest,
    RegisterToolChainRequest,
    ToolCallSpec,
    UpdateToolResultRequest,
    WriteTurnRequest,
)
from context_engine.models.domain import ModelCall
from context_engine.observability.powertools import metrics
from context_engine.services import agents, context, indexing, memories, prepare, tools, turns
from context_engine.text.tokens import count_tokens

T0 = datetime(2024, 1, 10, 9, 0, tzinfo=UTC)


def write(rt, p, session, q, a, user="u1", when=None):
    res, _ = turns.write_turn(rt, p, session, WriteTurnRequest(agent_id="a1", user_id=user, question=q, answer=a,
                                                               occurred_at=when or T0), None)
    return res


def query(rt, p, **kw):
    return context.query_context(rt, p, QueryContextRequest(**{"agent_id": "a1", **kw}))


@pytest.fixture
def history(runtime, admin):
    """u1 talked about a trip in an old session; a current session is about something else."""
    write(runtime, admin, "old", "I am planning a trip to Kyoto in April", "Cherry blossoms peak then.",
          when=T0 - timedelta(days=30))
    write(runtime, admin, "old", "Which temple should I visit first?", "Kiyomizu-dera at sunrise.",
          when=T0 - timedelta(days=30))
    for i in range(5):
        write(runtime, admin, "cur", f"Question {i} about my spreadsheet formulas", f"Use SUMIF number {i}.")
    memories.create(runtime, admin, CreateMemoryRequest(agent_id="a1", user_id="u1",
                                                        content="The user is vegetarian and travels with a toddler"))
    tools.register_chain(runtime, admin, "cur", RegisterToolChainRequest(agent_id="a1", user_id="u1", calls=[
        ToolCallSpec(call_id="c1", name="weather", arguments={"city": "Kyoto"}),
        ToolCallSpec(call_id="c2", name="calendar", arguments={"month": "April"})]))
    tools.update_result(runtime, admin, "cur", "c2", UpdateToolResultRequest(status="succeeded",
                                                                              result={"free": ["4-12 April"]}))
    indexing.index_pending(runtime, admin.tenant_id)


def test_context_has_every_section_with_provenance(runtime, admin, history) -> None:
    res = query(runtime, admin, session_id="cur", query="What did we decide about the Kyoto temple?",
                token_budget=1500)
    assert res.cache == "miss" and res.token_count == count_tokens(res.context) <= 1500
    by_type = {}
    for s in res.snippets:
        by_type.setdefault(s.type, []).append(s)
        assert s.content in res.context
    assert {"history", "memory", "tool"} <= set(by_type)
    earlier = [s for s in by_type["history"] if s.provenance.session_id == "old"]
    assert any("Kiyomizu" in s.content for s in earlier)
    assert all(s.provenance.turn_id and s.provenance.seq for s in earlier)
    recent = [s for s in by_type["history"] if s.provenance.session_id == "cur"]
    assert [s.provenance.seq for s in recent] == [1, 2, 3, 4, 5]
    assert by_type["memory"][0].provenance.memory_id is not None
    assert [s.provenance.call_id for s in by_type["tool"]][0] == "c1"  # open calls first
    assert "vegetarian" in res.context and '"4-12 April"' in res.context
    assert res.query == "What did we decide about the Kyoto temple?"


def test_without_session_retrieves_across_the_users_sessions(runtime, admin, history) -> None:
    res = query(runtime, admin, user_id="u1", query="Kyoto cherry blossoms", token_budget=300)
    assert "Cherry blossoms peak then." in res.context
    assert not any(s.type == "tool" for s in res.snippets)
    other = query(runtime, admin, user_id="u2", query="Kyoto cherry blossoms", token_budget=300)
    assert "Kyoto" not in other.context  # another user's history is never retrieved


def test_budget_always_holds(runtime, admin, history) -> None:
    for budget in (1, 2, 7, 30, 120, 700, 5000):
        res = query(runtime, admin, session_id="cur", query="Kyoto trip and spreadsheets", token_budget=budget)
        assert res.token_count == count_tokens(res.context) <= budget


def test_model_call_template_budget_and_default_query(runtime, admin, history) -> None:
    agents.put_agent(runtime, admin, "a1", PutAgentRequest(model_calls=[ModelCall(
        id="planner", template="## Memory\n{memory}\n## History\n{history}\n## Tools\n{tool}", token_budget=400,
        section_shares={"memory": 0.2, "history": 0.6, "tool": 0.2})]))
    res = query(runtime, admin, session_id="cur", model_call_id="planner")
    assert res.token_budget == 400 and res.token_count <= 400
    assert res.query == "Question 4 about my spreadsheet formulas"  # the session's latest question
    assert res.context.startswith("## Memory\n") and "\n## History\n" in res.context
    assert not any(s.type == "summary" for s in res.snippets)  # no share, no section
    with pytest.raises(NotFound):
        query(runtime, admin, session_id="cur", model_call_id="nope")


def test_validation(runtime, admin, history) -> None:
    with pytest.raises(ValueError):
        QueryContextRequest(agent_id="a1", user_id="u1", token_budget=10)  # no query, no model call
    with pytest.raises(ValidationFailed):
        query(runtime, admin, session_id="cur", user_id="u2", query="x", token_budget=10)
    with pytest.raises(NotFound):
        query(runtime, admin, session_id="missing", query="x", token_budget=10)


def _count(name):
    return sum(metrics.metric_set.get(name, {}).get("Value", []))


def test_cache_hit_then_invalidated_by_writes(any_runtime, admin, history) -> None:
    rt = any_runtime
    req = {"session_id": "cur", "query": "Kyoto temple", "token_budget": 800}
    hits0 = _count("ContextCacheHit")
    first = query(rt, admin, **req)
    second = query(rt, admin, **req)
    assert (first.cache, second.cache) == ("miss", "hit")
    assert second.model_copy(update={"cache": "miss"}) == first
    assert _count("ContextCacheHit") == hits0 + 1
    write(rt, admin, "cur", "New question", "New answer")  # same session: window version
    assert query(rt, admin, **req).cache == "miss"
    assert query(rt, admin, **req).cache == "hit"


def test_sessionless_query_is_invalidated_by_any_write_of_that_user(any_runtime, admin, history) -> None:
    rt = any_runtime
    req = {"user_id": "u1", "query": "Kyoto temple", "token_budget": 800}
    assert query(rt, admin, **req).cache == "miss"
    assert query(rt, admin, **req).cache == "hit"
    write(rt, admin, "yet-another-session", "Unrelated", "Still unrelated", user="u2")  # another user
    assert query(rt, admin, **req).cache == "hit"
    write(rt, admin, "yet-another-session-u1", "Kyoto hotel?", "Booked the ryokan.")  # this user, new session
    res = query(rt, admin, **req)
    assert res.cache == "miss" and "ryokan" in res.context  # found even before indexing
    assert query(rt, admin, **req).cache == "hit"
    memories.create(rt, admin, CreateMemoryRequest(agent_id="a1", visibility="agent", content="Kyoto office closed"))
    assert query(rt, admin, **req).cache == "miss"  # the agent's shared memories count for every user
    indexing.index_pending(rt, admin.tenant_id)
    assert query(rt, admin, **req).cache == "miss"  # indexing changes what is found


def test_prepared_contexts_make_the_next_query_a_hit(any_runtime, admin, history) -> None:
    rt = any_runtime
    agents.put_agent(rt, admin, "a1", PutAgentRequest(model_calls=[
        ModelCall(id="answer", token_budget=600), ModelCall(id="route", token_budget=120)]))
    new = write(rt, admin, "cur", "Can you remind me of the temple plan?", "")
    indexing.index_turn(rt, admin.tenant_id, new.turn_id)  # the index consumer: index, then prepare
    assert prepare.prepare_contexts(rt, admin.tenant_id, "cur") == 2
    assert prepare.prepare_contexts(rt, admin.tenant_id, "cur") == 0  # idempotent
    for mc, budget in (("answer", 600), ("route", 120)):
        res = query(rt, admin, session_id="cur", model_call_id=mc)
        assert res.cache == "hit" and res.token_budget == budget
        assert res.query == "Can you remind me of the temple plan?"
    assert "Kiyomizu" in query(rt, admin, session_id="cur", model_call_id="answer").context
    # an explicit query equal to the latest question is the same context
    same = query(rt, admin, session_id="cur", model_call_id="answer", query="Can you remind me of the temple plan?")
    assert same.cache == "hit"
    write(rt, admin, "cur", "Another one", "ok")
    assert query(rt, admin, session_id="cur", model_call_id="answer").cache == "miss"


def test_prepare_respects_the_agent_switch(runtime, admin, history) -> None:
    agents.put_agent(runtime, admin, "a1", PutAgentRequest(prepare_contexts=False,
                                                           model_calls=[ModelCall(id="answer")]))
    assert prepare.prepare_contexts(runtime, admin.tenant_id, "cur") == 0
    assert prepare.prepare_contexts(runtime, admin.tenant_id, "missing-session") == 0


def test_deleted_session_content_leaves_the_cache(redis_runtime, admin, history) -> None:
    req = {"session_id": "cur", "query": "spreadsheet", "token_budget": 300}
    assert query(redis_runtime, admin, **req).cache == "miss"
    keys = list(redis_runtime.cache.client.scan_iter(match=f"ctx:{admin.tenant_id}:*"))
    assert keys
    turns.delete_session(redis_runtime, admin, "cur")
    assert not list(redis_runtime.cache.client.scan_iter(match=f"ctx:{admin.tenant_id}:a1:u1:cur:*"))
