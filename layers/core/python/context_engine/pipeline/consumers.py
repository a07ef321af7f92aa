"""What each queue's consumer does with one event (wiring.QUEUES names the consumers).

- index: embeds and indexes turns and memories (``services.indexing``), then prepares the
  contexts of the agent's model calls ahead of the next query (``services.prepare``).
- compress: the threshold check on TurnWritten, a rebuild when a summarised turn is deleted,
  and starting the rebuild_context workflow for ContextRebuildRequested.
- audit_intake: takes every domain event into the audit intake exactly once
  (``services.audit.ingest_event``) and appends the tenant's intake to its hash chain.
"""

from __future__ import annotations

import logging
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from context_engine.events.models import (
    ContextDeleted,
    ContextRebuildRequested,
    MemoryWritten,
    ToolCallUpdated,
    TurnWritten,
)
from context_engine.observability.powertools import metrics
from context_engine.pipeline.consumer import Delivery, consume
from context_engine.pipeline.workflows import get_workflow_starter
from context_engine.repos import jobs
from context_engine.runtime import Runtime
from context_engine.services import compress

log = logging.getLogger(__name__)

REBUILD_WORKFLOW = "rebuild_context"


# --- index --------------------------------------------------------------------------
def handle_index(d: Delivery) -> None:
    # Imported on use: the indexing and preparation services belong to the query side.
    from context_engine.services import indexing, prepare

    event = d.event
    if isinstance(event, TurnWritten):
        d.after_effect(lambda: _index_turn(d.rt, event, indexing, prepare))
    elif isinstance(event, MemoryWritten):
        d.after_effect(lambda: indexing.index_memory(d.rt, d.tenant_id, event.memory_id))
    elif isinstance(event, ContextDeleted):
        d.after_effect(lambda: _unindex(d.rt, event))
    elif isinstance(event, ToolCallUpdated):
        # A tool result changes what the next context holds: prepare it again.
        d.after_effect(lambda: prepare.prepare_contexts(d.rt, d.tenant_id, event.session_id))


def _unindex(rt: Runtime, event: ContextDeleted) -> None:
    """DeleteContext removes rows in PostgreSQL (its own index); an external search index
    (OpenSearch) must drop the documents too, or deleted turns would still be retrieved."""
    from context_engine.search import index_mirror

    mirror = index_mirror(rt)
    if mirror is None:
        return
    if event.scope == "turn" and event.turn_id:
        mirror.delete_turns(event.tenant_id, [event.turn_id])
    elif event.scope == "memory" and event.memory_id:
        mirror.delete_memories(event.tenant_id, [event.memory_id])
    elif event.scope == "session" and event.session_id:
        mirror.delete_session(event.tenant_id, event.session_id)


def _index_turn(rt: Runtime, event: TurnWritten, indexing: Any, prepare: Any) -> None:
    indexing.index_turn(rt, event.tenant_id, event.turn_id)
    prepare.prepare_contexts(rt, event.tenant_id, event.session_id)


# --- compress -----------------------------------------------------------------------
def handle_compress(d: Delivery) -> None:
    event = d.event
    if isinstance(event, ContextRebuildRequested):
        d.after_effect(lambda: start_rebuild(d.rt, event))
        return
    if isinstance(event, TurnWritten | ContextDeleted):
        queued = None
        with d.once() as conn:
            if conn is None:
                return
            if isinstance(event, TurnWritten):
                queued = compress.check_threshold(conn, d.tenant_id, event)
            else:
                queued = compress.check_deletion(conn, d.tenant_id, event)
        if queued is not None:
            job, outbox_event = queued
            metrics.add_metric(name="CompressionsQueued", unit=MetricUnit.Count, value=1)
            d.rt.publish_committed(d.tenant_id, [outbox_event])


def start_rebuild(rt: Runtime, event: ContextRebuildRequested) -> str | None:
    """Start the workflow for a queued job. The execution is named after the job, so a
    redelivered request cannot start a second one (Step Functions refuses the name)."""
    with rt.db.tenant(event.tenant_id) as conn:
        job = jobs.get(conn, event.tenant_id, event.job_id)
    if job is None or job.status in ("succeeded", "failed"):
        return None
    return get_workflow_starter().start(REBUILD_WORKFLOW, str(event.job_id),
                                        {"job_id": str(event.job_id), "tenant_id": event.tenant_id})


# --- audit intake -------------------------------------------------------------------
def handle_audit_intake(d: Delivery) -> None:
    from context_engine.services import audit

    with d.once() as conn:
        if conn is None:
            return
        # Into the audit intake in the claim's transaction: taken in exactly once.
        audit.ingest_event(conn, d.envelope)
        log.info("domain event received", extra={"event_id": str(d.envelope.event_id),
                                                  "detail_type": d.detail_type, "tenant_id": d.tenant_id})
    try:  # seal it into the chain now; if this fails, the scheduled audit appender does it
        audit.append_pending(d.rt, d.tenant_id)
    except Exception:
        log.exception("audit append after intake failed", extra={"tenant_id": d.tenant_id})


CONSUMERS = {"index": handle_index, "compress": handle_compress, "audit_intake": handle_audit_intake}


def consume_batch(function: str, event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The body of every consumer function's handler."""
    return consume(event, context, function, CONSUMERS[function])
