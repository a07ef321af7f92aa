"""Transactional outbox: an event row is written in the same transaction as the change."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from context_engine.db.database import Conn


def add(conn: Conn, tenant_id: str, event_id: UUID, detail_type: str, detail: dict[str, Any]) -> None:
    conn.execute(
        "insert into outbox (tenant_id, event_id, detail_type, detail) values (%s, %s, %s, %s)",
        [tenant_id, event_id, detail_type, json.dumps(detail, default=str)],
    )


def mark_published(conn: Conn, tenant_id: str, event_ids: list[UUID]) -> None:
    if event_ids:
        conn.execute(
            "update outbox set published_at = now(), attempts = attempts + 1"
            " where tenant_id = %s and event_id = any(%s) and published_at is null",
            [tenant_id, event_ids],
        )
