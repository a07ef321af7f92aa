from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from context_engine.db.database import Conn
from context_engine.models.domain import Memory

COLS = ("id, agent_id, user_id, visibility, content, importance, source_turn_ids, metadata, token_count,"
        " created_at, updated_at")

# A memory is visible to a caller when it belongs to the agent and is either shared
# with all its users or private to this very user.
VISIBLE = "tenant_id = %s and agent_id = %s and (visibility = 'agent' or user_id = %s)"


def insert(
    conn: Conn, tenant_id: str, *, memory_id: UUID, agent_id: str, user_id: str | None, visibility: str,
    content: str, importance: float, source_turn_ids: list[UUID], metadata: dict[str, Any], token_count: int,
) -> Memory:
    row = conn.execute(
        f"insert into memories (tenant_id, id, agent_id, user_id, visibility, content, importance,"
        f" source_turn_ids, metadata, token_count) values (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) returning {COLS}",
        [tenant_id, memory_id, agent_id, user_id, visibility, content, importance, source_turn_ids,
         json.dumps(metadata), token_count],
    ).fetchone()
    assert row is not None
    return Memory(**row)


def get(conn: Conn, tenant_id: str, memory_id: UUID) -> Memory | None:
    row = conn.execute(f"select {COLS} from memories where tenant_id = %s and id = %s",
                       [tenant_id, memory_id]).fetchone()
    return Memory(**row) if row else None


def delete(conn: Conn, tenant_id: str, memory_id: UUID) -> bool:
    return conn.execute("delete from memories where tenant_id = %s and id = %s", [tenant_id, memory_id]).rowcount > 0

