from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID

from context_engine.db.database import Conn
from context_engine.models.domain import Turn

COLS = "id, session_id, agent_id, user_id, seq, question, answer, occurred_at, token_count, metadata, created_at"


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


# WriteQA in one statement: create-or-advance the session (its row lock orders concurrent
# writers, so seqs are consecutive), create-or-bump the window, insert the turn and its outbox
# row. The session is only advanced when it belongs to this agent and user; otherwise nothing
# is written and no row comes back. Foreign keys are checked at the end of the statement, when
# a new session exists.
_APPEND = """
with s as (
  insert into sessions as x (tenant_id, id, agent_id, user_id, last_seq, turn_count, token_count)
  values (%(t)s, %(sid)s, %(agent)s, %(user)s, 1, 1, %(tokens)s)
  on conflict (tenant_id, id) do update
    set last_seq = x.last_seq + 1, turn_count = x.turn_count + 1, token_count = x.token_count + excluded.token_count,
        updated_at = now()
    where x.agent_id = excluded.agent_id and x.user_id = excluded.user_id
  returning last_seq
), w as (
  insert into context_windows as cw (tenant_id, session_id, version)
  select %(t)s, %(sid)s, 2 from s
  on conflict (tenant_id, session_id) do update set version = cw.version + 1, updated_at = now()
  returning version
), ins as (
  insert into turns (tenant_id, id, session_id, agent_id, user_id, seq, question, answer, occurred_at, token_count,
                     metadata, search_text)
  select %(t)s, %(id)s, %(sid)s, %(agent)s, %(user)s, s.last_seq, %(q)s, %(a)s, %(at)s, %(tokens)s, %(meta)s,
         %(search)s from s
), o as (
  insert into outbox (tenant_id, event_id, detail_type, detail)
  select %(t)s, %(event_id)s, %(detail_type)s,
         %(detail)s::jsonb || jsonb_build_object('seq', s.last_seq, 'window_version', w.version) from s, w
)
select s.last_seq as seq, w.version from s, w
"""


def append(
    conn: Conn,
    tenant_id: str,
    *,
    turn_id: UUID,
    session_id: str,
    agent_id: str,
    user_id: str,
    question: str,
    answer: str,
    occurred_at: datetime,
    token_count: int,
    metadata: dict[str, Any],
    search_text: str,
    event_id: UUID,
    detail_type: str,
    detail: dict[str, Any],
) -> tuple[int, int] | None:
    """Write one turn (see ``_APPEND``); (seq, window version), or None when the session
    belongs to another agent or user (nothing written). ``detail`` gets seq and window_version."""
    row = conn.execute(_APPEND, {
        "t": tenant_id, "sid": session_id, "agent": agent_id, "user": user_id, "tokens": token_count, "id": turn_id,
        "q": question, "a": answer, "at": occurred_at, "meta": json.dumps(metadata), "search": search_text,
        "event_id": event_id, "detail_type": detail_type, "detail": json.dumps(detail, default=str),
    }).fetchone()
    return (int(row["seq"]), int(row["version"])) if row else None
