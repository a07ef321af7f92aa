"""Sample events for ``context-engine invoke <function> events/samples/<file>.json``: what API
Gateway, SQS (EventBridge rule targets), Step Functions and the scheduler hand to each
function. Generated from the models (so they are valid by construction) into
``events/samples/``; a test keeps the files in step with this module.

    python -m context_engine.events.samples --write
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from context_engine.events import generated
from context_engine.events.envelope import EventEnvelope
from context_engine.events.schemas import repo_root

SAMPLE_TIME = datetime(2025, 1, 15, 9, 30, tzinfo=UTC)
TENANT = "dev"  # the tenant ``context-engine serve`` creates
SESSION = "sample-session"


def _id(n: int) -> UUID:
    return UUID(int=n)


DETAILS: dict[str, dict[str, Any]] = {
    "TurnWritten": {"session_id": SESSION, "turn_id": str(_id(0x101)), "seq": 1, "agent_id": "support-bot",
                    "user_id": "user-1", "token_count": 42, "window_version": 2},
    "ToolCallUpdated": {"session_id": SESSION, "call_id": "call-1", "name": "search_flights", "status": "succeeded",
                        "agent_id": "support-bot", "user_id": "user-1", "window_version": 3},
    "ContextRebuildRequested": {"job_id": str(_id(0x201)), "session_id": SESSION, "agent_id": "support-bot",
                                "user_id": "user-1", "strategy": "summarize", "trigger": "api",
                                "target_tokens": 500, "keep_head": None, "keep_tail": None},
    "ContextCompressed": {"job_id": str(_id(0x201)), "session_id": SESSION, "agent_id": "support-bot",
                          "user_id": "user-1", "strategy": "summarize", "summarizer": "extractive", "fallback": False,
                          "covers_seq": 40, "turns_covered": 40, "input_tokens": 4200, "summary_tokens": 480,
                          "window_version": 44},
    "ContextDeleted": {"scope": "turn", "session_id": SESSION, "agent_id": "support-bot", "user_id": "user-1",
                       "turn_id": str(_id(0x101)), "seq": 1},
    "MemoryWritten": {"memory_id": str(_id(0x301)), "agent_id": "support-bot", "user_id": "user-1",
                      "visibility": "private"},
    "UserErased": {"user_id": "user-1", "agent_id": "support-bot", "job_id": str(_id(0x401)),
                   "counts": {"turns": 40, "memories": 3, "sessions": 1}},
    "SandboxRunFinished": {"run_id": str(_id(0x501)), "status": "succeeded", "session_id": SESSION,
                           "call_id": "call-2", "exit_code": 0, "duration_ms": 87},
}


def envelope(detail_type: str, n: int = 1) -> EventEnvelope:
    from context_engine.events.models import EVENT_MODELS

    env = EventEnvelope(event_id=_id(0xE000 + n), detail_type=detail_type, tenant_id=TENANT, time=SAMPLE_TIME,
                        detail=DETAILS[detail_type])
    EVENT_MODELS[detail_type].model_validate(env.eventbridge_detail())
    return env


def _apigw(method: str, path: str, route: str, params: dict[str, str], body: Any = None) -> dict[str, Any]:
    return {
        "version": "2.0", "routeKey": f"{method} {route}", "rawPath": path, "rawQueryString": "",
        "headers": {"content-type": "application/json", "idempotency-key": "sample-1"} if body else {},
        "pathParameters": params,
        "requestContext": {
            "accountId": "000000000000", "apiId": "sample", "domainName": "localhost", "domainPrefix": "localhost",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                     "userAgent": "context-engine-invoke"},
            "requestId": "sample-request", "routeKey": f"{method} {route}", "stage": "$default",
            "time": "15/Jan/2025:09:30:00 +0000", "timeEpoch": 1736933400000,
            # What the Lambda authorizer returns for the dev tenant's admin key.
            "authorizer": {"lambda": {"tenant_id": TENANT, "key_id": "key_sample", "role": "admin",
                                      "agent_id": ""}},
        },
        "body": json.dumps(body) if body is not None else None, "isBase64Encoded": False,
    }


def samples() -> dict[str, Any]:
    from context_engine.events.models import EVENT_MODELS, EventBridgeEvent
    from context_engine.pipeline.aws_events import eventbridge_body, scheduled_event, sqs_batch, sqs_record

    def eb(detail_type: str) -> dict[str, Any]:
        return EventBridgeEvent.of(envelope(detail_type), "context-engine").to_json()

    def sqs(queue: str, *types: str) -> dict[str, Any]:
        return sqs_batch([sqs_record(eventbridge_body(envelope(t, i)), queue, message_id=str(_id(0xA000 + i)),
                                     sent_at=SAMPLE_TIME.timestamp()) for i, t in enumerate(types, start=1)])

    def receipts(batch: dict[str, Any]) -> dict[str, Any]:
        for i, r in enumerate(batch["Records"], start=1):
            r["receiptHandle"] = f"sample-receipt-{i}"
        return batch

    out: dict[str, Any] = {f"eventbridge/{t}.json": eb(t) for t in EVENT_MODELS}
    out |= {
        "sqs/index_turn_written.json": receipts(sqs("index", "TurnWritten")),
        "sqs/compress_rebuild_requested.json": receipts(sqs("compress", "ContextRebuildRequested")),
        "sqs/audit_mixed_batch.json": receipts(sqs("audit", "TurnWritten", "MemoryWritten", "ContextCompressed")),
        "apigw/write_turn.json": _apigw("POST", f"/v1/sessions/{SESSION}/turns", "/v1/sessions/{session_id}/turns",
                                        {"session_id": SESSION}, {"agent_id": "support-bot", "user_id": "user-1",
                                                                  "question": "Where is the offsite?",
                                                                  "answer": "In Porto, 3-5 June."}),
        "apigw/rebuild.json": _apigw("POST", f"/v1/sessions/{SESSION}/rebuild", "/v1/sessions/{session_id}/rebuild",
                                     {"session_id": SESSION}, {"strategy": "summarize", "target_tokens": 300}),
        "apigw/get_session.json": _apigw("GET", f"/v1/sessions/{SESSION}", "/v1/sessions/{session_id}",
                                         {"session_id": SESSION}),
        "stepfunctions/rebuild_load_window.json": {"action": "load_window", "job_id": str(_id(0x201)),
                                                   "tenant_id": TENANT},
        "scheduled/outbox_relay.json": {**scheduled_event("outbox_relay", SAMPLE_TIME), "id": str(_id(0xF001))},
    }
    return out


def sample_dir() -> Path:
    return repo_root() / "events" / "samples"


def _expected() -> dict[str, str]:
    return {k: generated.render(v) for k, v in samples().items()}


def stale_files(folder: Path | None = None) -> list[str]:
    return generated.stale(folder or sample_dir(), _expected())


def write(folder: Path | None = None) -> list[str]:
    return generated.write(folder or sample_dir(), _expected())


def main(argv: list[str] | None = None) -> int:
    return generated.cli(argv, doc=__doc__, what="events/samples", module="context_engine.events.samples",
                         write_fn=write, stale_fn=stale_files)


if __name__ == "__main__":
    sys.exit(main())
