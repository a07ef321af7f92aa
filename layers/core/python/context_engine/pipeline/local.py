"""The event pipeline in one process (``context-engine serve``, tests, benchmarks).

Same routes as AWS, read from the same wiring: a published event is matched against
``EVENT_RULES`` like an EventBridge rule, wrapped like an EventBridge event and put on an
in-memory queue per ``QUEUES`` entry; a worker thread per queue hands SQS-shaped batches to
the consumer function's real handler, redelivers the records it reports in
``batchItemFailures`` (after a short delay instead of the visibility timeout) and moves a
record to the queue's dead-letter list after ``max_receive_count`` receives. The relay runs
on its ``SCHEDULES`` timer, and workflows run on moto's Step Functions executor
(``LocalStepFunctions``).

Publishing only enqueues, so a write returns before indexing or compression happen.
Unlike SQS the queues live in memory: events accepted here are lost if the process dies
before they are consumed (the outbox already marked them published).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from context_engine.events.envelope import EventEnvelope
from context_engine.events.publisher import InProcessPublisher
from context_engine.pipeline.aws_events import eventbridge_body, scheduled_event, sqs_batch, sqs_record
from context_engine.pipeline.sfn_local import LocalStepFunctions, invoke_handler
from context_engine.pipeline.workflows import set_workflow_starter
from context_engine.runtime import Runtime
from context_engine.wiring import QUEUES, SCHEDULES, QueueSpec, rules_for

log = logging.getLogger(__name__)

Invoker = Callable[[str, dict[str, Any]], Any]


@dataclass
class LocalMessage:
    message_id: str
    body: str
    sent_at: float
    receive_count: int = 0
    visible_at: float = 0.0


@dataclass
class LocalQueue:
    spec: QueueSpec
    pending: deque[LocalMessage] = field(default_factory=deque)
    dead: list[LocalMessage] = field(default_factory=list)
    in_flight: int = 0
    delivered: int = 0
    cond: threading.Condition = field(default_factory=threading.Condition)

    def put(self, message: LocalMessage) -> None:
        with self.cond:
            self.pending.append(message)
            self.cond.notify()

    def take(self, max_items: int, wait_s: float, window_s: float) -> list[LocalMessage]:
        """Up to ``max_items`` visible messages: wait up to ``wait_s`` for the first, then keep
        gathering for ``window_s`` (the event source mapping's batching window)."""
        batch: list[LocalMessage] = []
        first_deadline = time.monotonic() + wait_s
        gather_deadline: float | None = None
        with self.cond:
            while True:
                now = time.monotonic()
                for m in [m for m in self.pending if m.visible_at <= now][: max_items - len(batch)]:
                    self.pending.remove(m)
                    batch.append(m)
                    # In flight from the moment it leaves `pending`: while the batch is still
                    # gathering (the lock is released in wait) the queue must not look idle.
                    self.in_flight += 1
                if len(batch) >= max_items:
                    break
                if batch:
                    gather_deadline = gather_deadline or now + window_s
                    if now >= gather_deadline:
                        break
                    timeout = gather_deadline - now
                else:
                    if now >= first_deadline:
                        break
                    timeout = first_deadline - now
                # Capped: a redelivered message becomes visible without a notify.
                self.cond.wait(timeout=min(timeout, 0.05))
        return batch

    def settle(self, batch: list[LocalMessage], failed: set[str], redelivery_delay_s: float) -> None:
        with self.cond:
            self.in_flight -= len(batch)
            for m in batch:
                if m.message_id not in failed:
                    self.delivered += 1
                elif m.receive_count >= self.spec.max_receive_count:
                    self.dead.append(m)
                    log.error("message moved to the dead-letter queue", extra={
                        "queue": self.spec.name, "message_id": m.message_id, "receives": m.receive_count})
                else:
                    m.visible_at = time.monotonic() + redelivery_delay_s * m.receive_count
                    self.pending.append(m)
            self.cond.notify_all()

    @property
    def idle(self) -> bool:
        with self.cond:
            return not self.pending and self.in_flight == 0


class LocalDispatcher:
    def __init__(self, rt: Runtime, *, workflows: LocalStepFunctions | None = None, run_relay: bool = True,
                 redelivery_delay_s: float = 0.5, batch_window_s: float = 0.02, invoker: Invoker = invoke_handler,
                 relay_interval_s: float | None = None, concurrency: int = 2) -> None:
        if not isinstance(rt.publisher, InProcessPublisher):
            raise TypeError("the local dispatcher needs the runtime's InProcessPublisher")
        self.rt = rt
        self.workflows = workflows
        self.run_relay = run_relay
        self.redelivery_delay_s = redelivery_delay_s
        self.batch_window_s = batch_window_s
        self.invoker = invoker
        self.relay_interval_s = relay_interval_s
        # Workers per queue, like the event source mapping's maximum concurrency (capped by it).
        self.concurrency = concurrency
        self.queues = {name: LocalQueue(spec) for name, spec in QUEUES.items()}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._owns_workflows = False

    # --- lifecycle ------------------------------------------------------------------
    def start(self) -> LocalDispatcher:
        if self.workflows is None:
            self.workflows = LocalStepFunctions(invoker=self.invoker).open()
            self._owns_workflows = True
        set_workflow_starter(self.workflows)
        assert isinstance(self.rt.publisher, InProcessPublisher)
        self.rt.publisher.subscribe(self.route)
        for q in self.queues.values():
            for n in range(max(1, min(self.concurrency, q.spec.max_concurrency))):
                self._spawn(f"ce-queue-{q.spec.name}-{n}", self._work, q)
        if self.run_relay:
            for spec in SCHEDULES.values():
                self._spawn(f"ce-schedule-{spec.name}", self._tick, spec.name, spec.function,
                            self.relay_interval_s or spec.local_interval_s)
        return self

    def stop(self) -> None:
        self._stop.set()
        for q in self.queues.values():
            with q.cond:
                q.cond.notify_all()
        for t in self._threads:
            t.join(timeout=5)
        set_workflow_starter(None)
        if self._owns_workflows and self.workflows is not None:
            self.workflows.close()

    def __enter__(self) -> LocalDispatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    # --- EventBridge: rules → queues -----------------------------------------------------
    def route(self, event: EventEnvelope) -> None:
        """The InProcessPublisher's subscriber: runs inside publish(), so it only enqueues."""
        body = eventbridge_body(event)
        now = time.time()
        for rule in rules_for(event.detail_type):
            self.queues[rule.queue].put(LocalMessage(str(uuid.uuid4()), body, now))

    def publish(self, events: Sequence[EventEnvelope]) -> None:
        for e in events:
            self.route(e)

    # --- SQS → Lambda event source mapping --------------------------------------------
    def _work(self, q: LocalQueue) -> None:
        while not self._stop.is_set():
            batch = q.take(q.spec.batch_size, wait_s=0.2, window_s=self.batch_window_s)
            if not batch:
                continue
            for m in batch:
                m.receive_count += 1
            event = sqs_batch([sqs_record(m.body, q.spec.name, message_id=m.message_id,
                                          receive_count=m.receive_count, sent_at=m.sent_at) for m in batch])
            try:
                response = self.invoker(q.spec.consumer, event) or {}
                failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
            except Exception:  # a function error returns the whole batch to the queue, as in AWS
                log.exception("consumer function failed", extra={"queue": q.spec.name})
                failed = {m.message_id for m in batch}
            q.settle(batch, failed, self.redelivery_delay_s)

    # --- schedules ------------------------------------------------------------------------
    def _tick(self, rule: str, function: str, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                self.invoker(function, scheduled_event(rule))
            except Exception:
                log.exception("scheduled function failed", extra={"function": function})

    # --- observing --------------------------------------------------------------------------
    def idle(self) -> bool:
        return all(q.idle for q in self.queues.values()) and (self.workflows is None or self.workflows.running() == 0)

    def drain(self, timeout_s: float = 30.0, settle_s: float = 0.05) -> bool:
        """Wait until every queue is empty and no workflow runs (stable for ``settle_s``)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.idle():
                time.sleep(settle_s)
                if self.idle():
                    return True
            time.sleep(0.01)
        return False

    def dead_letters(self, queue: str) -> list[LocalMessage]:
        return list(self.queues[queue].dead)
