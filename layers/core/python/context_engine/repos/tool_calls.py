from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from context_engine.db.database import Conn
from context_engine.models.domain import ToolCall

COLS = ("call_id, session_id, agent_id, user_id, turn_id, parent_call_id, chain_seq, name, arguments, status,"
        " result, error, created_at, updated_at, finished_at")


def next_chain_seq(conn: Conn, tenant_id: str, session_id: str) -> int:
    row = conn.execute(
        "select coalesce(max(chain_seq), 0) as m from tool_calls where tenant_id = %s and session_id = %s",
        [tenant_id, session_id],
    ).fetchone()
    return int(row["m"]) + 1 if row else 1


def insert(
    conn: Conn, tenant_id: str, *, session_id: str, agent_id: str, user_id: str, call_id: str, name: str,
    arguments: dict[str, Any], turn_id: UUID | None, parent_call_id: str | None, status: str, chain_seq: int,
) -> ToolCall | None:
    """Insert; None when the call_id already exists in the session (caller answers 409)."""
    row = conn.execute(
        f"insert into tool_calls (tenant_id, session_id, agent_id, user_id, call_id, name, arguments, turn_id,"
        f" parent_call_id, status, chain_seq) values (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
        f" on conflict do nothing returning {COLS}",
        [tenant_id, session_id, agent_id, user_id, call_id, name, json.dumps(arguments), turn_id,
         parent_call_id, status, chain_seq],
    ).fetchone()
    return ToolCall(**row) if row else None


def get(conn: Conn, tenant_id: str, session_id: str, call_id: str, *, for_update: bool = False) -> ToolCall | None:
    sql = f"select {COLS} from tool_calls where tenant_id = %s and session_id = %s and call_id = %s"
    row = conn.execute(sql + (" for update" if for_update else ""), [tenant_id, session_id, call_id]).fetchone()
    return ToolCall(**row) if row else None


def update_result(
    conn: Conn, tenant_id: str, session_id: str, call_id: str, *, status: str, result: Any, error: Any,
    token_count: int, terminal: bool,
) -> ToolCall:
    row = conn.execute(
        f"update tool_calls set status = %s, result = %s, error = %s, token_count = %s, updated_at = now(),"
        f" finished_at = case when %s then now() else finished_at end"
        f" where tenant_id = %s and session_id = %s and call_id = %s returning {COLS}",
        [status, json.dumps(result) if result is not None else None,
         json.dumps(error) if error is not None else None, token_count, terminal, tenant_id, session_id, call_id],
    ).fetchone()
    assert row is not None
    return ToolCall(**row)


def for_session(conn: Conn, tenant_id: str, session_id: str, *, limit: int = 50) -> list[ToolCall]:
    """Open calls first, then the most recently finished; chains stay in order."""
    rows = conn.execute(
        f"select {COLS} from tool_calls where tenant_id = %s and session_id = %s"
        " order by (status in ('pending','running')) desc, updated_at desc, chain_seq desc limit %s",
        [tenant_id, session_id, limit],
    ).fetchall()
    return [ToolCall(**r) for r in rows]
