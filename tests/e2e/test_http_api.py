"""The HTTP API over a real socket against `context-engine serve` (embedded PostgreSQL)."""

from __future__ import annotations

import uuid


def new_session() -> str:
    return f"s-{uuid.uuid4().hex[:10]}"


def turn(**kw):  # type: ignore[no-untyped-def]
    return {"agent_id": "agent-1", "user_id": "user-1", "question": "Where is the Eiffel tower?",
            "answer": "In Paris.", **kw}


def test_health_and_openapi_need_no_key(server) -> None:
    status, _, body = server.call("GET", "/v1/health", key=None)
    assert status == 200 and body["checks"]["database"] == "ok"
    status, _, doc = server.call("GET", "/v1/openapi.json", key=None)
    assert status == 200
    assert "/v1/sessions/{session_id}/turns" in doc["paths"]
    assert "/v1/context/query" in doc["paths"]


def test_missing_or_wrong_key_is_401(server) -> None:
    s = new_session()
    assert server.call("POST", f"/v1/sessions/{s}/turns", turn(), key=None)[0] == 401
    status, _, body = server.call("POST", f"/v1/sessions/{s}/turns", turn(), key="ce_" + "x" * 40)
    assert status == 401 and body["error"]["code"] == "unauthorized"


def test_write_then_page_turns(server) -> None:
    s = new_session()
    for i in range(5):
        status, _, body = server.call("POST", f"/v1/sessions/{s}/turns", turn(question=f"q{i}"))
        assert status == 201 and body["seq"] == i + 1
    status, _, page = server.call("GET", f"/v1/sessions/{s}/turns?limit=2")
    assert status == 200 and [t["seq"] for t in page["items"]] == [1, 2] and page["next_after_seq"] == 2
    status, _, page = server.call("GET", f"/v1/sessions/{s}/turns?limit=2&after_seq=4")
    assert [t["seq"] for t in page["items"]] == [5] and page["next_after_seq"] is None
    status, _, info = server.call("GET", f"/v1/sessions/{s}")
    assert info["session"]["turn_count"] == 5


def test_invalid_body_names_the_field(server) -> None:
    s = new_session()
    status, _, body = server.call("POST", f"/v1/sessions/{s}/turns", {"agent_id": "a", "user_id": "u"})
    assert status == 422
    assert ["body", "question"] in [d["loc"] for d in body["error"]["details"]]
    status, _, body = server.call("POST", f"/v1/sessions/{s}/turns", turn(token_budget=3))
    assert status == 422 and ["body", "token_budget"] in [d["loc"] for d in body["error"]["details"]]
    status, _, body = server.call("GET", f"/v1/sessions/{s}/turns?limit=0")
    assert status == 422 and ["query", "limit"] in [d["loc"] for d in body["error"]["details"]]
    assert "Traceback" not in str(body)


def test_malformed_json_is_400_and_oversized_is_413(server) -> None:
    s = new_session()
    status, _, body = server.call("POST", f"/v1/sessions/{s}/turns", raw=b'{"agent_id": ')
    assert status == 400 and body["error"]["code"] == "malformed_json"
    status, _, body = server.call("POST", f"/v1/sessions/{s}/turns", raw=b"x" * (300 * 1024))
    assert status == 413
    status, _, body = server.call("POST", f"/v1/sessions/{s}/turns", turn(answer="y" * 40_000))
    assert status == 413 and body["error"]["details"][0]["loc"] == ["answer"]
    assert server.call("GET", f"/v1/sessions/{s}")[0] == 404  # nothing half-written


def test_idempotency_key_stores_one_turn(server) -> None:
    s = new_session()
    key = str(uuid.uuid4())
    a = server.call("POST", f"/v1/sessions/{s}/turns", turn(), headers={"Idempotency-Key": key})
    b = server.call("POST", f"/v1/sessions/{s}/turns", turn(), headers={"Idempotency-Key": key})
    assert a[0] == b[0] == 201 and a[2] == b[2]
    assert b[1].get("idempotent-replayed") == "true"
    assert server.call("GET", f"/v1/sessions/{s}")[2]["session"]["turn_count"] == 1
    c = server.call("POST", f"/v1/sessions/{s}/turns", turn(question="other"), headers={"Idempotency-Key": key})
    assert c[0] == 409


def test_other_tenant_gets_404_and_no_data(server) -> None:
    s = new_session()
    _, _, written = server.call("POST", f"/v1/sessions/{s}/turns", turn(answer="secret-answer-42"))
    _, _, memory = server.call("POST", "/v1/memories", {"agent_id": "agent-1", "user_id": "user-1",
                                                        "content": "likes secret-answer-42"})
    other = server.create_key(f"other-{uuid.uuid4().hex[:6]}", "admin")
    for method, path in [("GET", f"/v1/sessions/{s}"), ("GET", f"/v1/sessions/{s}/turns"),
                         ("DELETE", f"/v1/sessions/{s}/turns/{written['turn_id']}"),
                         ("DELETE", f"/v1/sessions/{s}"), ("GET", f"/v1/memories/{memory['id']}"),
                         ("DELETE", f"/v1/memories/{memory['id']}")]:
        status, _, body = server.call(method, path, key=other)
        assert status == 404, (method, path, status)
        assert "secret-answer-42" not in str(body)
    status, _, res = server.call("POST", "/v1/context/query", {"agent_id": "agent-1", "user_id": "user-1",
                                                               "query": "secret answer", "token_budget": 500},
                                 key=other)
    assert status == 200 and "secret-answer-42" not in res["context"]
    status, _, res = server.call("POST", "/v1/memories/search", {"agent_id": "agent-1", "user_id": "user-1",
                                                                 "query": "secret"}, key=other)
    assert status == 200 and res["items"] == []
    assert server.call("GET", f"/v1/sessions/{s}")[0] == 200  # still there for its owner


def test_roles_and_agent_scope(server) -> None:
    tenant = f"roles-{uuid.uuid4().hex[:6]}"
    admin = server.create_key(tenant, "admin")
    reader = server.create_key(tenant, "reader")
    scoped = server.create_key(tenant, "writer", agent="agent-1")
    s = new_session()
    assert server.call("POST", f"/v1/sessions/{s}/turns", turn(), key=reader)[0] == 403
    assert server.call("POST", f"/v1/sessions/{s}/turns", turn(), key=admin)[0] == 201
    assert server.call("GET", f"/v1/sessions/{s}", key=reader)[0] == 200
    assert server.call("PUT", "/v1/agents/agent-1", {}, key=reader)[0] == 403
    assert server.call("POST", f"/v1/sessions/{new_session()}/turns", turn(agent_id="agent-2"), key=scoped)[0] == 404
    assert server.call("POST", f"/v1/sessions/{s}/turns", turn(), key=scoped)[0] == 201


def test_query_context_respects_budget(server) -> None:
    s = new_session()
    for i in range(20):
        server.call("POST", f"/v1/sessions/{s}/turns", turn(question=f"Tell me fact {i} about Paris " * 3))
    for budget in (5, 50, 300, 4000):
        status, _, res = server.call("POST", "/v1/context/query", {
            "agent_id": "agent-1", "user_id": "user-1", "session_id": s, "query": "Paris", "token_budget": budget})
        assert status == 200
        assert res["token_count"] <= budget == res["token_budget"]
    status, _, res = server.call("POST", "/v1/context/query", {
        "agent_id": "agent-1", "session_id": s, "query": "Paris", "token_budget": 10_000_000})
    assert status == 413


def test_tool_calls_memories_agents_and_deletes(server) -> None:
    s = new_session()
    status, _, chain = server.call("POST", f"/v1/sessions/{s}/tool-calls", {
        "agent_id": "agent-1", "user_id": "user-1",
        "calls": [{"call_id": "c1", "name": "search", "arguments": {"q": "x"}},
                  {"call_id": "c2", "name": "fetch", "parent_call_id": "c1"}]})
    assert status == 201 and [c["chain_seq"] for c in chain["items"]] == [1, 2]
    status, _, call = server.call("PATCH", f"/v1/sessions/{s}/tool-calls/c1", {"status": "succeeded",
                                                                              "result": {"hits": 3}})
    assert status == 200 and call["status"] == "succeeded"
    assert server.call("PATCH", f"/v1/sessions/{s}/tool-calls/c1", {"status": "running"})[0] == 409
    assert server.call("PATCH", f"/v1/sessions/{s}/tool-calls/nope", {"status": "failed"})[0] == 404
    assert server.call("POST", f"/v1/sessions/{s}/tool-calls", {
        "agent_id": "agent-1", "user_id": "user-1", "calls": [{"call_id": "c1", "name": "again"}]})[0] == 409

    status, _, mem = server.call("POST", "/v1/memories", {"agent_id": "agent-1", "user_id": "user-1",
                                                          "content": "prefers window seats", "importance": 0.8})
    assert status == 201
    status, _, found = server.call("POST", "/v1/memories/search", {"agent_id": "agent-1", "user_id": "user-1",
                                                                   "query": "window seats"})
    assert status == 200 and found["items"][0]["memory"]["id"] == mem["id"]
    assert server.call("GET", f"/v1/memories/{mem['id']}")[0] == 200
    assert server.call("DELETE", f"/v1/memories/{mem['id']}")[0] == 200
    assert server.call("GET", f"/v1/memories/{mem['id']}")[0] == 404

    status, _, agent = server.call("PUT", "/v1/agents/agent-1", {"model_calls": [
        {"id": "answer", "token_budget": 800, "template": "Summary:{summary}\nHistory:{history}"}]})
    assert status == 200 and agent["version"] >= 1
    assert server.call("PUT", "/v1/agents/agent-1", {"model_calls": [
        {"id": "bad", "section_shares": {"history": 0.9, "memory": 0.9}}]})[0] == 422

    _, _, w = server.call("POST", f"/v1/sessions/{s}/turns", turn())
    assert server.call("DELETE", f"/v1/sessions/{s}/turns/{w['turn_id']}")[0] == 200
    assert server.call("DELETE", f"/v1/sessions/{s}/turns/{w['turn_id']}")[0] == 404
    assert server.call("DELETE", f"/v1/sessions/{s}")[0] == 200
    assert server.call("GET", f"/v1/sessions/{s}")[0] == 404


def test_unknown_route_is_404_json(server) -> None:
    status, _, body = server.call("GET", "/v1/nope")
    assert status == 404 and body["error"]["code"] == "route_not_found"
