"""Domain events reach the chain through the audit queue's consumer (exactly once, in order),
and the scheduled audit function appends what the API took in."""

from __future__ import annotations

from context_engine.audit.models import AuditEntry, AuditFilter
from context_engine.events.envelope import EventEnvelope
from context_engine.local.gateway import LocalLambdaContext, load_function
from context_engine.models.api import WriteTurnRequest
from context_engine.pipeline.aws_events import eventbridge_body, scheduled_event, sqs_batch, sqs_record
from context_engine.pipeline.local import LocalDispatcher
from context_engine.services import audit, turns


def test_every_domain_event_from_the_queue_is_chained_once(runtime, admin) -> None:  # type: ignore[no-untyped-def]
    tenant = admin.tenant_id
    events = [EventEnvelope(detail_type="MemoryWritten", tenant_id=tenant, detail={
        "memory_id": f"00000000-0000-0000-0000-00000000000{i}", "agent_id": "a", "user_id": "u1",
        "visibility": "private"}) for i in range(3)]
    events.append(EventEnvelope(detail_type="UserErased", tenant_id=tenant, detail={
        "user_id": "u9", "counts": {"turns": 4, "memories": 1}}))
    batch = sqs_batch([sqs_record(eventbridge_body(e), "audit") for e in events])
    handler = load_function("audit_intake").handler
    assert handler(batch, LocalLambdaContext("audit_intake")) == {"batchItemFailures": []}
    assert handler(batch, LocalLambdaContext("audit_intake")) == {"batchItemFailures": []}  # redelivered
    page = audit.query(runtime, admin, AuditFilter(), cursor=None, limit=50, newest_first=False)
    assert [r.id for r in page.items] == [str(e.event_id) for e in events]
    erased = page.items[-1]
    assert (erased.action, erased.resource_type, erased.resource_id) == ("event.UserErased", "user", "u9")
    assert erased.details["counts"] == {"turns": 4, "memories": 1}
    assert audit.verify(runtime, admin).ok


def test_the_scheduled_audit_function_appends_pending_intake(runtime, admin) -> None:  # type: ignore[no-untyped-def]
    tenant = admin.tenant_id
    audit.record(runtime, tenant, [AuditEntry(actor="k", role="reader", action="turns.list",
                                              resource_type="session", resource_id="s1")])
    with runtime.db.tenant(tenant) as conn:
        assert conn.execute("select count(*) n from audit_log where tenant_id = %s", [tenant]).fetchone()["n"] == 0
    result = load_function("audit").handler(scheduled_event("audit_append"), LocalLambdaContext("audit"))
    assert result["records"] >= 1
    with runtime.db.tenant(tenant) as conn:
        assert conn.execute("select count(*) n from audit_log where tenant_id = %s", [tenant]).fetchone()["n"] == 1


def test_writes_through_the_local_pipeline_end_in_the_chain(runtime, admin) -> None:  # type: ignore[no-untyped-def]
    with LocalDispatcher(runtime, run_relay=False) as dispatcher:
        for i in range(3):
            turns.write_turn(runtime, admin, "s1", WriteTurnRequest(agent_id="a", user_id="u1", question=f"q{i}",
                                                                    answer="a"), None)
        assert dispatcher.drain(30)
    page = audit.query(runtime, admin, AuditFilter(action="event.TurnWritten"), cursor=None, limit=50,
                       newest_first=False)
    assert len(page.items) == 3 and {r.details["user_id"] for r in page.items} == {"u1"}
    # Two workers drain the audit queue (like SQS, no order between messages): every event is
    # in the chain once, in whatever order the consumers took them in.
    assert sorted(r.details["seq"] for r in page.items) == [1, 2, 3]
