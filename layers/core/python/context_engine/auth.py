"""API-key authentication: ``Authorization: Bearer <key>`` → Principal.

Keys are stored as SHA-256 hashes; the lookup goes through the narrow SECURITY DEFINER
function ``ce_authenticate`` because no tenant is known yet at this point.
"""

from __future__ import annotations

from context_engine.db.database import Database
from context_engine.models.domain import Principal, Role
from context_engine.privacy.keys import generate_api_key, hash_api_key, is_api_key
from context_engine.repos import tenants


def bearer_key(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and is_api_key(value) else None


def authenticate(db: Database, authorization: str | None) -> Principal | None:
    key = bearer_key(authorization)
    if key is None:
        return None
    with db.unscoped() as conn:
        return tenants.authenticate(conn, hash_api_key(key))


def create_key(db: Database, tenant_id: str, role: Role, agent_id: str | None = None,
               name: str | None = None, key: str | None = None) -> tuple[str, str]:
    """Create a key (owner connection); returns (key_id, plain key) — the plain key is
    shown once and never stored."""
    key = key or generate_api_key()
    if not is_api_key(key):
        raise ValueError("key must look like ce_ followed by 40 URL-safe characters")
    with db.owner() as conn:
        if tenants.get_tenant(conn, tenant_id) is None:
            tenants.create_tenant(conn, tenant_id, tenant_id)
        key_id = tenants.insert_key(conn, tenant_id, hash_api_key(key), role, agent_id, name)
    return key_id, key
