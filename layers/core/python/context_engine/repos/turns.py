from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID

from context_engine.db.database import Conn
from context_engine.models.domain import Turn

COLS = "id, session_id, agent_id, user_id, seq, question, answer, occurred_at, token_count, metadata, created_at"


def insert(
    conn: Conn,
    tenant_id: str,
    *,
    turn_id: UUID,
    session_id: str,
    agent_id: str,
    user_id: str,
    seq: int,
    question: str,
    answer: str,
    occurred_at: datetime,
    token_count: int,
    metadata: dict[str, Any],
    search_text: str,
) -> Turn:
    row = conn.execute(
        f"insert into turns (tenant_id, id, session_id, agent_id, user_id, seq, question, answer, occurred_at,"
        f" token_count, metadata, search_text) values (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) returning {COLS}",
        [tenant_id, turn_id, session_id, agent_id, user_id, seq, question, answer, occurred_at, token_count,
         json.dumps(metadata), search_text],
    ).fetchone()
    assert row is not None
    return Turn(**row)


def get(conn: Conn, tenant_id: str, session_id: str, turn_id: UUID) -> Turn | None:
    row = conn.execute(
        f"select {COLS} from turns where tenant_id = %s and session_id = %s and id = %s",
        [tenant_id, session_id, turn_id],
    ).fetchone()
    return Turn(**row) if row else None


def page(conn: Conn, tenant_id: str, session_id: str, *, after_seq: int, limit: int) -> list[Turn]:
    rows = conn.execute(
        f"select {COLS} from turns where tenant_id = %s and session_id = %s and seq > %s order by seq limit %s",
        [tenant_id, session_id, after_seq, limit],
    ).fetchall()
    return [Turn(**r) for r in rows]


def recent(conn: Conn, tenant_id: str, session_id: str, *, limit: int, after_seq: int = 0) -> list[Turn]:
    """The newest ``limit`` turns after ``after_seq``, newest first."""
    rows = conn.execute(
        f"select {COLS} from turns where tenant_id = %s and session_id = %s and seq > %s"
        " order by seq desc limit %s",
        [tenant_id, session_id, after_seq, limit],
    ).fetchall()
    return [Turn(**r) for r in rows]


def delete(conn: Conn, tenant_id: str, session_id: str, turn_id: UUID) -> Turn | None:
    row = conn.execute(
        f"delete from turns where tenant_id = %s and session_id = %s and id = %s returning {COLS}",
        [tenant_id, session_id, turn_id],
    ).fetchone()
    if row:
        conn.execute(
            "update sessions set turn_count = turn_count - 1, token_count = token_count - %s, updated_at = now()"
            " where tenant_id = %s and id = %s",
            [row["token_count"], tenant_id, session_id],
        )
    return Turn(**row) if row else None
