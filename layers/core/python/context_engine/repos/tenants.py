"""Tenants and API keys. Creation runs on the owner connection (operator commands);
lookup by key hash goes through the narrow SECURITY DEFINER function."""

from __future__ import annotations

import json
import secrets

from context_engine.db.database import Conn
from context_engine.models.domain import Principal, Role, Tenant


def create_tenant(conn: Conn, tenant_id: str, name: str) -> None:
    conn.execute("insert into tenants (id, name) values (%s, %s) on conflict (id) do nothing", [tenant_id, name])


def get_tenant(conn: Conn, tenant_id: str) -> Tenant | None:
    row = conn.execute(
        "select id, name, classification, privacy_policy, retention, limits from tenants where id = %s", [tenant_id]
    ).fetchone()
    return Tenant(**row) if row else None


def update_tenant_settings(conn: Conn, tenant_id: str, **fields: object) -> None:
    allowed = {"classification", "privacy_policy", "retention", "limits"}
    for name, value in fields.items():
        if name not in allowed:
            raise ValueError(name)
        conn.execute(
            f"update tenants set {name} = %s where id = %s",
            [json.dumps(value) if not isinstance(value, str) else value, tenant_id],
        )


def insert_key(conn: Conn, tenant_id: str, key_hash: str, role: Role, agent_id: str | None, name: str | None) -> str:
    key_id = "key_" + secrets.token_hex(8)
    conn.execute(
        "insert into api_keys (id, tenant_id, key_hash, role, agent_id, name) values (%s,%s,%s,%s,%s,%s)",
        [key_id, tenant_id, key_hash, role.value, agent_id, name],
    )
    return key_id


def authenticate(conn: Conn, key_hash: str) -> Principal | None:
    row = conn.execute("select * from ce_authenticate(%s)", [key_hash]).fetchone()
    if not row:
        return None
    return Principal(tenant_id=row["tenant_id"], key_id=row["key_id"], role=Role(row["role"]), agent_id=row["agent_id"])
