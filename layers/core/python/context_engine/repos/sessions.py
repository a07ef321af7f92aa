from __future__ import annotations

from context_engine.db.database import Conn
from context_engine.models.domain import ContextWindow, Session

_COLS = "id, agent_id, user_id, last_seq, turn_count, token_count, created_at, updated_at"


def get(conn: Conn, tenant_id: str, session_id: str, *, for_update: bool = False) -> Session | None:
    sql = f"select {_COLS} from sessions where tenant_id = %s and id = %s"
    row = conn.execute(sql + (" for update" if for_update else ""), [tenant_id, session_id]).fetchone()
    return Session(**row) if row else None


def ensure(conn: Conn, tenant_id: str, session_id: str, agent_id: str, user_id: str) -> Session:
    """Create the session on first write (with its window); lock it for this transaction so
    concurrent writes to one session get consecutive seqs."""
    conn.execute(
        "insert into sessions (tenant_id, id, agent_id, user_id) values (%s, %s, %s, %s)"
        " on conflict (tenant_id, id) do nothing",
        [tenant_id, session_id, agent_id, user_id],
    )
    conn.execute(
        "insert into context_windows (tenant_id, session_id) values (%s, %s) on conflict do nothing",
        [tenant_id, session_id],
    )
    session = get(conn, tenant_id, session_id, for_update=True)
    assert session is not None  # inserted above or already there, same transaction
    return session


def delete(conn: Conn, tenant_id: str, session_id: str) -> dict[str, int]:
    """Delete a session and everything hanging off it (turns, tool calls, window cascade)."""
    counts = {}
    for table in ("turns", "tool_calls"):
        cur = conn.execute(f"delete from {table} where tenant_id = %s and session_id = %s", [tenant_id, session_id])
        counts[table] = cur.rowcount
    cur = conn.execute("delete from sessions where tenant_id = %s and id = %s", [tenant_id, session_id])
    counts["sessions"] = cur.rowcount
    return counts


def get_window(conn: Conn, tenant_id: str, session_id: str) -> ContextWindow:
    row = conn.execute(
        "select session_id, summary, summary_covers_seq, summary_seqs, summary_tokens, strategy, stats, version"
        " from context_windows where tenant_id = %s and session_id = %s",
        [tenant_id, session_id],
    ).fetchone()
    return ContextWindow(**row) if row else ContextWindow(session_id=session_id)


def bump_window(conn: Conn, tenant_id: str, session_id: str) -> int:
    """Any change to what a session's context could contain bumps the version; cache keys
    include it, so stale cached contexts are never served."""
    row = conn.execute(
        "update context_windows set version = version + 1, updated_at = now()"
        " where tenant_id = %s and session_id = %s returning version",
        [tenant_id, session_id],
    ).fetchone()
    return int(row["version"]) if row else 1
