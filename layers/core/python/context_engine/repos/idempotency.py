"""Idempotency records live in the same transaction as the effect they protect, so a
stored response exists exactly when the effect committed."""

from __future__ import annotations

import json
from typing import Any

from context_engine.db.database import Conn


def claim(conn: Conn, tenant_id: str, scope: str, key: str, request_hash: str) -> dict[str, Any] | None:
    """Return the stored record if the key was used before, else None (and the caller
    must ``store`` its response in this transaction). A concurrent request with the same
    key waits on the row lock until the first commits."""
    inserted = conn.execute(
        "insert into idempotency_keys (tenant_id, scope, key, request_hash, status_code, response)"
        " values (%s, %s, %s, %s, 0, 'null') on conflict do nothing returning key",
        [tenant_id, scope, key, request_hash],
    ).fetchone()
    if inserted:
        return None
    row = conn.execute(
        "select request_hash, status_code, response from idempotency_keys"
        " where tenant_id = %s and scope = %s and key = %s",
        [tenant_id, scope, key],
    ).fetchone()
    assert row is not None
    return dict(row)


def store(conn: Conn, tenant_id: str, scope: str, key: str, status_code: int, response: Any) -> None:
    conn.execute(
        "update idempotency_keys set status_code = %s, response = %s where tenant_id = %s and scope = %s and key = %s",
        [status_code, json.dumps(response, default=str), tenant_id, scope, key],
    )
