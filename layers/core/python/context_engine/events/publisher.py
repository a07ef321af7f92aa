"""Publishing events after commit. The outbox makes this best-effort safe: whatever is
not marked published here is republished by the outbox relay."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from context_engine.events.envelope import EventEnvelope

log = logging.getLogger(__name__)


class Publisher(Protocol):
    def publish(self, events: Sequence[EventEnvelope]) -> list[EventEnvelope]:
        """Publish; return the events that were NOT accepted (to be retried by the relay)."""
        ...


class InProcessPublisher:
    """The embedded default: hands each event to subscribers registered by detail type
    (the local runtime registers the same consumers that SQS feeds in AWS)."""

    def __init__(self) -> None:
        self._subscribers: list[Callable[[EventEnvelope], None]] = []

    def subscribe(self, fn: Callable[[EventEnvelope], None]) -> None:
        self._subscribers.append(fn)

    def publish(self, events: Sequence[EventEnvelope]) -> list[EventEnvelope]:
        for event in events:
            for fn in self._subscribers:
                fn(event)
        return []


class EventBridgePublisher:
    """PutEvents in batches of 10 with per-entry failure handling."""

    def __init__(self, bus_name: str, source: str, client: Any = None) -> None:
        import boto3

        self.bus_name, self.source = bus_name, source
        self.client = client or boto3.client("events")

    def publish(self, events: Sequence[EventEnvelope]) -> list[EventEnvelope]:
        failed: list[EventEnvelope] = []
        for start in range(0, len(events), 10):
            batch = list(events[start : start + 10])
            entries = [
                {
                    "EventBusName": self.bus_name,
                    "Source": self.source,
                    "DetailType": e.detail_type,
                    "Detail": json.dumps(e.eventbridge_detail(), default=str),
                    "Time": e.time,
                }
                for e in batch
            ]
            try:
                resp = self.client.put_events(Entries=entries)
            except Exception:  # the relay retries; never fail the caller's committed write
                log.exception("PutEvents failed", extra={"count": len(batch)})
                failed.extend(batch)
                continue
            for event, result in zip(batch, resp.get("Entries", []), strict=False):
                if result.get("ErrorCode"):
                    log.warning("event rejected", extra={"event_id": str(event.event_id),
                                                         "error_code": result["ErrorCode"]})
                    failed.append(event)
        return failed
