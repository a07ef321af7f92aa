from __future__ import annotations

from context_engine.db.database import Conn
from context_engine.models.domain import AgentProfile


def put(conn: Conn, tenant_id: str, agent_id: str, profile: AgentProfile) -> dict:
    row = conn.execute(
        "insert into agents (tenant_id, id, profile, classification) values (%s, %s, %s, %s)"
        " on conflict (tenant_id, id) do update set profile = excluded.profile,"
        " classification = excluded.classification, version = agents.version + 1, updated_at = now()"
        " returning id, profile, version, updated_at",
        [tenant_id, agent_id, profile.model_dump_json(), profile.classification.value],
    ).fetchone()
    assert row is not None
    return dict(row)


def get(conn: Conn, tenant_id: str, agent_id: str) -> dict | None:
    row = conn.execute(
        "select id, profile, version, updated_at from agents where tenant_id = %s and id = %s", [tenant_id, agent_id]
    ).fetchone()
    return dict(row) if row else None


def profile(conn: Conn, tenant_id: str, agent_id: str) -> AgentProfile:
    """The agent's profile, or the defaults for an agent nobody configured yet."""
    row = get(conn, tenant_id, agent_id)
    return AgentProfile(**row["profile"]) if row else AgentProfile()
