"""Consumer idempotency: which (consumer, event) pairs already had their effect."""

from __future__ import annotations

from uuid import UUID

from context_engine.db.database import Conn


def claim(conn: Conn, tenant_id: str, consumer: str, event_id: UUID, detail_type: str) -> bool:
    """Record the event as processed by ``consumer``; False if it already was. Call it in the
    transaction of the effect: a rollback releases the claim with the effect."""
    row = conn.execute(
        "insert into processed_events (tenant_id, consumer, event_id, detail_type) values (%s, %s, %s, %s)"
        " on conflict do nothing returning event_id",
        [tenant_id, consumer, event_id, detail_type],
    ).fetchone()
    return row is not None


def seen(conn: Conn, tenant_id: str, consumer: str, event_id: UUID) -> bool:
    row = conn.execute(
        "select 1 from processed_events where tenant_id = %s and consumer = %s and event_id = %s",
        [tenant_id, consumer, event_id],
    ).fetchone()
    return row is not None


def count(conn: Conn, tenant_id: str, consumer: str) -> int:
    row = conn.execute(
        "select count(*) as n from processed_events where tenant_id = %s and consumer = %s", [tenant_id, consumer]
    ).fetchone()
    return int(row["n"]) if row else 0
