"""The outbox relay: republishes every outbox row that no publish marked as published.

The write path publishes right after its commit; this catches what it could not (PutEvents
failed, an entry was rejected, the process died between commit and publish). Rows are
claimed with SKIP LOCKED inside one transaction, published, and settled before the commit,
so two relays never publish the same row and a crash mid-way only leaves rows unpublished
for the next run (at-least-once; consumers deduplicate on event_id).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from pydantic import BaseModel

from context_engine.events.envelope import EventEnvelope
from context_engine.runtime import Runtime

log = logging.getLogger(__name__)

STUCK_ATTEMPTS = 10


class RelayResult(BaseModel):
    claimed: int
    published: int
    failed: int
    backlog: int
    oldest_age_s: float | None


def relay_outbox(rt: Runtime, *, limit: int = 500, min_age_s: int = 30) -> RelayResult:
    with rt.db.unscoped() as conn:
        rows = conn.execute("select * from ce_outbox_claim(%s, %s)", [limit, min_age_s]).fetchall()
        events = [EventEnvelope(event_id=r["event_id"], detail_type=r["detail_type"], tenant_id=r["tenant_id"],
                                time=r["created_at"], detail=r["detail"]) for r in rows]
        if events:
            try:
                failed_ids = {e.event_id for e in rt.publisher.publish(events)}
            except Exception:  # the rows stay unpublished for the next run
                log.exception("relay publish failed", extra={"count": len(events)})
                failed_ids = {e.event_id for e in events}
            published = [e.event_id for e in events if e.event_id not in failed_ids]
            conn.execute("select ce_outbox_settle(%s, %s)", [published, list(failed_ids)])
            for r in rows:
                if r["event_id"] in failed_ids and r["attempts"] + 1 >= STUCK_ATTEMPTS:
                    log.error("outbox event keeps failing to publish", extra={
                        "event_id": str(r["event_id"]), "detail_type": r["detail_type"], "attempts": r["attempts"] + 1})
        else:
            published, failed_ids = [], set()
        backlog = conn.execute("select * from ce_outbox_backlog()").fetchone()
    oldest = backlog["oldest"] if backlog else None
    return RelayResult(claimed=len(events), published=len(published), failed=len(failed_ids),
                       backlog=int(backlog["pending"]) if backlog else 0,
                       oldest_age_s=(datetime.now(UTC) - oldest).total_seconds() if oldest else None)
