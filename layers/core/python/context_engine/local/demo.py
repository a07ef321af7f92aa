"""A short walkthrough against a running server: write turns, query context, read back."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from typing import Any


def call(url: str, key: str | None, method: str, path: str, body: Any = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + path, data=data, method=method)
    req.add_header("content-type", "application/json")
    if key:
        req.add_header("authorization", f"Bearer {key}")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - URL given by the operator
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def run_demo(url: str, key: str | None) -> None:
    if not key:
        print("demo: no key (the dev key was created on an earlier start); pass CONTEXT_ENGINE_DEV_KEY")
        return
    session = f"demo-{uuid.uuid4().hex[:8]}"
    print(f"\n== demo: session {session}")
    turns = [
        ("I'm planning a trip to Lisbon in May. Any tips?", "Try the trams, and book Belém early."),
        ("My budget is 1500 euros, flights included.", "Then stay in Graça; it's cheaper than Chiado."),
        ("I don't eat meat.", "Noted: vegetarian options are plentiful in Lisbon."),
    ]
    for q, a in turns:
        status, body = call(url, key, "POST", f"/v1/sessions/{session}/turns",
                            {"agent_id": "travel-bot", "user_id": "alice", "question": q, "answer": a})
        print(f"POST /v1/sessions/{session}/turns -> {status} {body}")
    status, body = call(url, key, "POST", "/v1/memories", {
        "agent_id": "travel-bot", "user_id": "alice", "content": "Alice prefers window seats and trains to planes.",
        "importance": 0.8})
    print(f"POST /v1/memories -> {status}")
    time.sleep(1.5)  # indexing runs after the write is acknowledged (the index consumer)
    query = {"agent_id": "travel-bot", "user_id": "alice", "session_id": session,
             "query": "Where should I stay and what can I eat?", "token_budget": 160}
    for attempt in ("first", "same query again"):
        status, body = call(url, key, "POST", "/v1/context/query", query)
        print(f"POST /v1/context/query ({attempt}) -> {status}: token_count={body.get('token_count')} "
              f"budget={body.get('token_budget')} cache={body.get('cache')}")
    print("---- context ----\n" + str(body.get("context")) + "\n-----------------")
    status, body = call(url, key, "POST", "/v1/context/query", {
        "agent_id": "travel-bot", "user_id": "alice", "query": "how does Alice like to travel?", "token_budget": 80})
    print("QueryContext without a session (retrieval over history and memories):")
    for snippet in body.get("snippets", []):
        print(f"  [{snippet['type']}] score={snippet['score']:.2f} {snippet['content'][:70]!r}")
    status, body = call(url, key, "POST", f"/v1/sessions/{session}/turns", {"agent_id": "travel-bot"})
    print(f"invalid body -> {status} {body}")
