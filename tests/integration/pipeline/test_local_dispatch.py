"""The local runtime: the same rules and queues in process, asynchronously; the ASL run by
moto's executor (the dispatcher starts and owns it, as ``serve`` does)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from context_engine.models.api import PutAgentRequest
from context_engine.pipeline import processed
from context_engine.pipeline.local import LocalDispatcher, LocalMessage
from context_engine.pipeline.settings import get_pipeline_settings
from context_engine.pipeline.sfn_local import invoke_handler
from context_engine.runtime import Runtime
from context_engine.services import agents, turns

from .conftest import write_turns


def _indexed(rt: Runtime, tenant_id: str, turn_id: Any) -> bool:
    with rt.db.tenant(tenant_id) as conn:
        row = conn.execute("select indexed_at from turns where id = %s", [turn_id]).fetchone()
    return row["indexed_at"] is not None


def test_a_write_returns_before_indexing_happens(runtime, admin) -> None:
    gate = threading.Event()

    def gated(name: str, event: dict[str, Any]) -> Any:
        if name == "index":
            assert gate.wait(10)
        return invoke_handler(name, event)

    with LocalDispatcher(runtime, invoker=gated, run_relay=False) as dispatcher:
        written = write_turns(runtime, admin, "s1", 1)[0]
        assert not _indexed(runtime, admin.tenant_id, written.turn_id)  # acknowledged, not yet indexed
        gate.set()
        assert dispatcher.drain(30)
    assert _indexed(runtime, admin.tenant_id, written.turn_id)


def test_passing_the_threshold_compresses_the_window_automatically(runtime, admin) -> None:
    agents.put_agent(runtime, admin, "a1", PutAgentRequest(compress_threshold_tokens=600,
                                                           compress_strategy="summarize"))
    with LocalDispatcher(runtime, run_relay=False) as dispatcher:
        written = write_turns(runtime, admin, "s1", 14)  # ≈ 60 tokens each: past 600
        assert dispatcher.drain(60)
        first = turns.get_session(runtime, admin, "s1").window
        assert first.summary and first.strategy == "summarize"
        # The newest turns (half the threshold) stay verbatim; older ones are in the summary.
        assert 0 < first.summary_covers_seq < 14
        assert first.summary_seqs == list(range(1, first.summary_covers_seq + 1))
        assert first.stats["trigger"] == "threshold" and first.stats["summarizer"] == "extractive"

        write_turns(runtime, admin, "s1", 14, start=14)
        assert dispatcher.drain(60)
        assert dispatcher.dead_letters("compress") == [] and dispatcher.dead_letters("index") == []
    second = turns.get_session(runtime, admin, "s1").window
    # Folded in incrementally: the summary now stands for more turns, the prior ones included.
    assert second.summary_covers_seq > first.summary_covers_seq
    assert second.summary_seqs == list(range(1, second.summary_covers_seq + 1))
    assert second.version > first.version
    with runtime.db.tenant(admin.tenant_id) as conn:
        rows = conn.execute("select status, resource->>'trigger' as trigger from jobs where tenant_id = %s",
                            [admin.tenant_id]).fetchall()
        assert {r["status"] for r in rows} == {"succeeded"} and len(rows) >= 2
        assert {r["trigger"] for r in rows} == {"threshold"}
        # The audit intake saw every event, ContextCompressed included.
        types = {r["detail_type"] for r in conn.execute(
            "select detail_type from processed_events where tenant_id = %s and consumer = 'audit_intake'",
            [admin.tenant_id]).fetchall()}
        assert {"TurnWritten", "ContextRebuildRequested", "ContextCompressed"} <= types
    assert len(turns.list_turns(runtime, admin, "s1", 0, 100).items) == len(written) + 14


def test_a_poison_message_reaches_the_local_dead_letters(runtime) -> None:
    with LocalDispatcher(runtime, run_relay=False, redelivery_delay_s=0.01) as dispatcher:
        dispatcher.queues["audit"].put(LocalMessage("poison-1", "not an event", 0.0))
        assert dispatcher.drain(30)
        dead = dispatcher.dead_letters("audit")
    assert [m.message_id for m in dead] == ["poison-1"]
    assert dead[0].receive_count == dispatcher.queues["audit"].spec.max_receive_count


@pytest.fixture
def relay_without_delay(monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CONTEXT_ENGINE_RELAY_MIN_AGE_S", "0")
    get_pipeline_settings.cache_clear()
    yield
    get_pipeline_settings.cache_clear()


def test_the_scheduled_relay_delivers_what_the_write_could_not(runtime, admin, relay_without_delay,
                                                                monkeypatch) -> None:
    with monkeypatch.context() as m:
        m.setattr(Runtime, "publish_committed", lambda *a, **k: None)  # the process "died" after commit
        written = write_turns(runtime, admin, "s1", 1)[0]
    with LocalDispatcher(runtime, relay_interval_s=0.1) as dispatcher:
        deadline = threading.Event()
        for _ in range(100):
            if _indexed(runtime, admin.tenant_id, written.turn_id):
                break
            deadline.wait(0.1)
        assert dispatcher.drain(30)
    assert _indexed(runtime, admin.tenant_id, written.turn_id)
    with runtime.db.tenant(admin.tenant_id) as conn:
        assert processed.count(conn, admin.tenant_id, "audit_intake") == 1
