"""The shapes AWS hands to our functions, built locally: an SQS batch whose bodies are
EventBridge events (rule target = queue), and the scheduled event of a timer rule. The
local dispatcher, ``context-engine invoke`` samples and tests all use these."""

from __future__ import annotations

import hashlib
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from context_engine.events.envelope import EventEnvelope
from context_engine.events.models import EventBridgeEvent
from context_engine.wiring import EVENT_SOURCE

ACCOUNT = "000000000000"
REGION = "us-east-1"


def queue_arn(queue: str) -> str:
    return f"arn:aws:sqs:{REGION}:{ACCOUNT}:context-engine-{queue}"


def eventbridge_body(envelope: EventEnvelope, source: str = EVENT_SOURCE) -> str:
    return EventBridgeEvent.of(envelope, source, account=ACCOUNT, region=REGION).model_dump_json(by_alias=True)


def sqs_record(body: str, queue: str, *, message_id: str | None = None, receive_count: int = 1,
               sent_at: float | None = None) -> dict[str, Any]:
    sent_ms = str(int((sent_at or time.time()) * 1000))
    return {
        "messageId": message_id or str(uuid.uuid4()),
        "receiptHandle": f"local-{uuid.uuid4().hex}",
        "body": body,
        "attributes": {"ApproximateReceiveCount": str(receive_count), "SentTimestamp": sent_ms,
                       "SenderId": "AIDAEVENTBRIDGE", "ApproximateFirstReceiveTimestamp": sent_ms},
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn(queue),
        "awsRegion": REGION,
    }


def sqs_batch(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Records": records}


def scheduled_event(rule: str, at: datetime | None = None) -> dict[str, Any]:
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
        "account": ACCOUNT, "time": (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"), "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{rule}"], "detail": {},
    }
