"""SQS batch consumption shared by every consumer function.

Each SQS message body is an EventBridge event (the rule's target is the queue). A record
is parsed into the typed event and handed to the consumer's handler; the powertools
``BatchProcessor`` reports the records that raised as ``batchItemFailures`` so that only
they are redelivered (and moved to the DLQ after the queue's maxReceiveCount). A poison
message therefore never blocks the rest of its batch.

Idempotency: a consumer either claims the event in the transaction of its effect
(``Delivery.once``), or, when the effect is itself idempotent and runs elsewhere, checks
before and records after (``Delivery.after_effect``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from context_engine.db.database import Conn
from context_engine.events.envelope import EventEnvelope
from context_engine.events.models import EventBridgeEvent, EventDetail, parse_detail
from context_engine.observability.powertools import metrics
from context_engine.pipeline import processed
from context_engine.runtime import Runtime, get_runtime

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Delivery:
    """One received event, with what a consumer needs to process it exactly once."""

    consumer: str
    envelope: EventEnvelope
    event: EventDetail
    receive_count: int
    rt: Runtime

    @property
    def tenant_id(self) -> str:
        return self.envelope.tenant_id

    @property
    def detail_type(self) -> str:
        return self.envelope.detail_type

    @contextmanager
    def once(self) -> Iterator[Conn | None]:
        """A tenant transaction that has claimed this event for this consumer, or None when
        an earlier delivery already had its effect (the caller then does nothing)."""
        with self.rt.db.tenant(self.tenant_id) as conn:
            if not processed.claim(conn, self.tenant_id, self.consumer, self.envelope.event_id, self.detail_type):
                _duplicate(self)
                yield None
                return
            yield conn

    def after_effect(self, effect: Callable[[], T]) -> T | None:
        """For effects that are idempotent themselves and run in their own transactions:
        skip a known duplicate, run, then record. A crash between the two only repeats an
        idempotent effect."""
        with self.rt.db.tenant(self.tenant_id) as conn:
            if processed.seen(conn, self.tenant_id, self.consumer, self.envelope.event_id):
                _duplicate(self)
                return None
        result = effect()
        with self.rt.db.tenant(self.tenant_id) as conn:
            processed.claim(conn, self.tenant_id, self.consumer, self.envelope.event_id, self.detail_type)
        return result


def _duplicate(d: Delivery) -> None:
    metrics.add_metric(name="DuplicateEvents", unit=MetricUnit.Count, value=1)
    log.info("duplicate delivery skipped", extra={"consumer": d.consumer, "event_id": str(d.envelope.event_id),
                                                 "detail_type": d.detail_type, "receive_count": d.receive_count})


ConsumerHandler = Callable[[Delivery], None]


def parse_record(body: str) -> tuple[EventEnvelope, EventDetail]:
    """SQS body → (envelope, typed detail). Raises on anything malformed (a poison message)."""
    eb = EventBridgeEvent.model_validate_json(body)
    return eb.envelope(), parse_detail(eb.detail_type, eb.detail)


def consume(event: dict[str, Any], context: Any, consumer: str, handle: ConsumerHandler,
            rt: Runtime | None = None) -> dict[str, Any]:
    """Process one SQS batch; returns ``{"batchItemFailures": [...]}``."""
    runtime = rt or get_runtime()
    # Counted per batch, not per record: one metric value per invocation keeps EMF output small.
    counts = {"ProcessedEvents": 0, "FailedEvents": 0, "PoisonMessages": 0}

    def record_handler(record: SQSRecord) -> None:
        try:
            envelope, detail = parse_record(record.body)
        except Exception:
            counts["PoisonMessages"] += 1
            log.exception("unparseable message; it will reach the DLQ after maxReceiveCount",
                          extra={"consumer": consumer, "message_id": record.message_id})
            raise
        receives = int(record.attributes.get("ApproximateReceiveCount") or 1)
        delivery = Delivery(consumer, envelope, detail, receives, runtime)
        try:
            handle(delivery)
        except Exception:
            counts["FailedEvents"] += 1
            log.exception("event failed; SQS will redeliver it", extra={
                "consumer": consumer, "event_id": str(envelope.event_id), "detail_type": envelope.detail_type,
                "receive_count": receives})
            raise
        counts["ProcessedEvents"] += 1

    # A batch in which every record failed is reported like any other (all ids listed)
    # instead of raising: the effect on SQS is the same, and the logs stay readable.
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    response = dict(process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                             context=context))
    for name, value in counts.items():
        if value:
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    return response
