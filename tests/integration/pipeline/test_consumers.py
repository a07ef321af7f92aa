"""Consumers on SQS: EventBridge rule → queue → the function's handler, partial batch
failures, idempotency under redelivery, poison messages and the DLQ."""

from __future__ import annotations

import json
import uuid
from typing import Any

from context_engine.events.envelope import EventEnvelope
from context_engine.models.api import CreateMemoryRequest, PutAgentRequest
from context_engine.pipeline import processed
from context_engine.pipeline.aws_events import eventbridge_body, sqs_batch, sqs_record
from context_engine.runtime import Runtime
from context_engine.services import agents, memories
from context_engine.wiring import QUEUES

from .conftest import invoke, lambda_records, sqs_event_for, write_turns


def _mine(messages: list[dict[str, Any]], tenant_id: str) -> list[dict[str, Any]]:
    return [m for m in messages if json.loads(m["Body"])["detail"]["tenant_id"] == tenant_id]


def _jobs(rt: Runtime, tenant_id: str) -> list[dict[str, Any]]:
    with rt.db.tenant(tenant_id) as conn:
        return list(conn.execute("select id, status, resource from jobs where tenant_id = %s and kind = 'compress'",
                                 [tenant_id]).fetchall())


def test_rules_route_each_event_type_to_its_queues(eb_runtime, admin, aws_pipeline) -> None:
    write_turns(eb_runtime, admin, "s1", 1)
    memories.create(eb_runtime, admin, CreateMemoryRequest(agent_id="a1", user_id="u1", content="likes tea"))
    got = {q: [json.loads(m["Body"])["detail-type"] for m in _mine(aws_pipeline.drain(q), admin.tenant_id)]
           for q in QUEUES}
    assert sorted(got["index"]) == ["MemoryWritten", "TurnWritten"]
    assert got["compress"] == ["TurnWritten"]
    assert sorted(got["audit"]) == ["MemoryWritten", "TurnWritten"]


def test_index_consumer_indexes_the_turn_from_its_queue(eb_runtime, admin, aws_pipeline) -> None:
    turn = write_turns(eb_runtime, admin, "s1", 1)[0]
    messages = _mine(aws_pipeline.drain("index"), admin.tenant_id)
    assert invoke("index", lambda_records(messages, "index")) == {"batchItemFailures": []}
    with eb_runtime.db.tenant(admin.tenant_id) as conn:
        row = conn.execute("select indexed_at, embedding is not null as embedded from turns where id = %s",
                           [turn.turn_id]).fetchone()
        assert row["indexed_at"] is not None and row["embedded"]
        assert processed.count(conn, admin.tenant_id, "index") == 1
        # A redelivery is recognised and skipped.
        assert invoke("index", lambda_records(messages, "index")) == {"batchItemFailures": []}
        assert processed.count(conn, admin.tenant_id, "index") == 1


def test_duplicate_turn_written_queues_one_compression(eb_runtime, admin, aws_pipeline) -> None:
    agents.put_agent(eb_runtime, admin, "a1", PutAgentRequest(compress_threshold_tokens=256,
                                                              compress_strategy="truncate"))
    write_turns(eb_runtime, admin, "s1", 8)  # ≈ 60 tokens each: past 256
    messages = _mine(aws_pipeline.drain("compress"), admin.tenant_id)
    last = [m for m in messages if json.loads(m["Body"])["detail"]["seq"] == 8]
    for _ in range(3):  # SQS at-least-once: the same message three times
        assert invoke("compress", lambda_records(last, "compress")) == {"batchItemFailures": []}
    jobs = _jobs(eb_runtime, admin.tenant_id)
    assert len(jobs) == 1
    assert jobs[0]["resource"]["trigger"] == "threshold" and jobs[0]["resource"]["strategy"] == "truncate"
    requested = _mine(aws_pipeline.drain("audit"), admin.tenant_id)
    assert [json.loads(m["Body"])["detail-type"] for m in requested].count("ContextRebuildRequested") == 1
    # Other turns past the threshold see the compression in flight and queue none.
    assert invoke("compress", lambda_records(messages, "compress")) == {"batchItemFailures": []}
    assert len(_jobs(eb_runtime, admin.tenant_id)) == 1


def test_below_threshold_queues_nothing(eb_runtime, admin, aws_pipeline) -> None:
    write_turns(eb_runtime, admin, "s1", 3)  # default threshold 8000 tokens
    messages = _mine(aws_pipeline.drain("compress"), admin.tenant_id)
    assert invoke("compress", lambda_records(messages, "compress")) == {"batchItemFailures": []}
    assert _jobs(eb_runtime, admin.tenant_id) == []


def test_poison_messages_fail_alone_and_the_rest_of_the_batch_is_processed(runtime, admin) -> None:
    good = [EventEnvelope(detail_type="MemoryWritten", tenant_id=admin.tenant_id, detail={
        "memory_id": str(uuid.uuid4()), "agent_id": "a1", "user_id": "u1", "visibility": "private"})
        for _ in range(2)]
    unknown = EventEnvelope(detail_type="SomethingElse", tenant_id=admin.tenant_id, detail={})
    invalid = EventEnvelope(detail_type="TurnWritten", tenant_id=admin.tenant_id, detail={"seq": "not a number"})
    records = [sqs_record(eventbridge_body(good[0]), "audit"), sqs_record("{not json", "audit"),
               sqs_record(eventbridge_body(unknown), "audit"), sqs_record(eventbridge_body(invalid), "audit"),
               sqs_record(eventbridge_body(good[1]), "audit")]
    response = invoke("audit_intake", sqs_batch(records))
    assert sorted(f["itemIdentifier"] for f in response["batchItemFailures"]) == sorted(
        r["messageId"] for r in records[1:4])
    with runtime.db.tenant(admin.tenant_id) as conn:
        assert processed.count(conn, admin.tenant_id, "audit_intake") == 2


def test_a_batch_of_only_poison_reports_every_record(runtime) -> None:
    records = [sqs_record("garbage", "audit"), sqs_record("[]", "audit")]
    response = invoke("audit_intake", sqs_batch(records))
    assert {f["itemIdentifier"] for f in response["batchItemFailures"]} == {r["messageId"] for r in records}


def test_poison_message_moves_to_the_dlq_after_max_receives(runtime, admin, aws_pipeline) -> None:
    """SQS (moto) redrive: the consumer keeps reporting the record failed; the event source
    mapping deletes only the successes; after maxReceiveCount the message is in the DLQ."""
    url = aws_pipeline.queue_urls["audit"]
    good = EventEnvelope(detail_type="MemoryWritten", tenant_id=admin.tenant_id, detail={
        "memory_id": str(uuid.uuid4()), "agent_id": "a1", "user_id": None, "visibility": "agent"})
    aws_pipeline.sqs.send_message(QueueUrl=url, MessageBody="poison: not an EventBridge event")
    aws_pipeline.sqs.send_message(QueueUrl=url, MessageBody=eventbridge_body(good))
    receives = 0
    while messages := aws_pipeline.receive("audit"):
        receives += 1
        assert receives <= QUEUES["audit"].max_receive_count + 1
        failed = {f["itemIdentifier"] for f in invoke("audit_intake", lambda_records(messages, "audit"))[
            "batchItemFailures"]}
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            aws_pipeline.sqs.delete_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)])
    assert receives == QUEUES["audit"].max_receive_count
    dead = aws_pipeline.receive("audit", dlq=True)
    assert [m["Body"] for m in dead] == ["poison: not an EventBridge event"]
    with runtime.db.tenant(admin.tenant_id) as conn:
        assert processed.count(conn, admin.tenant_id, "audit_intake") == 1


def test_deleting_a_summarised_turn_queues_a_rebuild(runtime, admin, captured) -> None:
    from context_engine.models.api import RebuildRequest
    from context_engine.services import compress, turns

    written = write_turns(runtime, admin, "s1", 4)
    # Give the window a summary covering seqs 1..4 without running the workflow here.
    job = compress.request_rebuild(runtime, admin, "s1", RebuildRequest(strategy="truncate"))
    plan = compress.load_window(runtime, admin.tenant_id, job.job_id)
    compress.run_strategy(runtime, plan)
    assert compress.store_summary(runtime, plan)["stored"] is True

    turns.delete_turn(runtime, admin, "s1", written[1].turn_id)
    deleted = [e for e in captured if e.detail_type == "ContextDeleted"]
    assert invoke("compress", sqs_event_for(deleted, "compress")) == {"batchItemFailures": []}
    queued = [j for j in _jobs(runtime, admin.tenant_id) if j["resource"]["trigger"] == "deletion"]
    assert len(queued) == 1 and queued[0]["status"] == "queued"

    # The rebuild it queues summarises the covered turns again, without the deleted one.
    plan = compress.load_window(runtime, admin.tenant_id, queued[0]["id"])
    compress.run_strategy(runtime, plan)
    assert compress.store_summary(runtime, plan)["stored"] is True
    window = turns.get_session(runtime, admin, "s1").window
    assert window.summary_seqs == [1, 3, 4] and "Turn 1:" not in window.summary
