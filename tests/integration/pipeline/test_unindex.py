"""DeleteContext reaches an external search index: the index consumer drops the documents
of a deleted turn, memory or session from the mirror (OpenSearch in AWS)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

import context_engine.services.indexing  # noqa: F401 - bound to the real mirror before any test patches it
from context_engine.events.envelope import EventEnvelope
from context_engine.wiring import rules_for

from .conftest import invoke, sqs_event_for


class RecordingMirror:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def delete_turns(self, tenant_id: str, ids: list[uuid.UUID]) -> None:
        self.calls.append(("turns", tenant_id, list(ids)))

    def delete_memories(self, tenant_id: str, ids: list[uuid.UUID]) -> None:
        self.calls.append(("memories", tenant_id, list(ids)))

    def delete_session(self, tenant_id: str, session_id: str) -> None:
        self.calls.append(("session", tenant_id, session_id))


def test_context_deleted_is_routed_to_the_index_queue() -> None:
    assert "index" in {r.queue for r in rules_for("ContextDeleted")}


@pytest.mark.parametrize("scope", ["turn", "memory", "session"])
def test_index_consumer_deletes_from_the_mirror(runtime, tenant_id, monkeypatch, scope) -> None:
    mirror = RecordingMirror()
    monkeypatch.setattr("context_engine.search.index_mirror", lambda rt: mirror)
    turn_id, memory_id = uuid.uuid4(), uuid.uuid4()
    detail = {"scope": scope, "agent_id": "a1", "user_id": "u1", "session_id": "s1",
              **({"turn_id": str(turn_id), "seq": 3} if scope == "turn" else {}),
              **({"memory_id": str(memory_id)} if scope == "memory" else {})}
    event = EventEnvelope(detail_type="ContextDeleted", tenant_id=tenant_id, detail=detail)
    response = invoke("index", sqs_event_for([event], "index"))
    assert response == {"batchItemFailures": []}
    expected = {"turn": ("turns", tenant_id, [turn_id]), "memory": ("memories", tenant_id, [memory_id]),
                "session": ("session", tenant_id, "s1")}[scope]
    assert mirror.calls == [expected]


def test_without_a_mirror_nothing_is_called(runtime, tenant_id) -> None:
    event = EventEnvelope(detail_type="ContextDeleted", tenant_id=tenant_id,
                          detail={"scope": "session", "agent_id": "a1", "session_id": "s1"})
    assert invoke("index", sqs_event_for([event], "index")) == {"batchItemFailures": []}
