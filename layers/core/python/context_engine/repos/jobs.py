from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from context_engine.db.database import Conn
from context_engine.models.domain import Job

COLS = "id, kind, status, resource, result, error, created_at, updated_at"


def create(conn: Conn, tenant_id: str, job_id: UUID, kind: str, resource: dict[str, Any], created_by: str) -> Job:
    row = conn.execute(
        f"insert into jobs (tenant_id, id, kind, status, resource, created_by) values (%s,%s,%s,'queued',%s,%s)"
        f" returning {COLS}",
        [tenant_id, job_id, kind, json.dumps(resource), created_by],
    ).fetchone()
    assert row is not None
    return Job(**row)


def get(conn: Conn, tenant_id: str, job_id: UUID) -> Job | None:
    row = conn.execute(f"select {COLS} from jobs where tenant_id = %s and id = %s", [tenant_id, job_id]).fetchone()
    return Job(**row) if row else None


def set_status(
    conn: Conn, tenant_id: str, job_id: UUID, status: str, *, result: Any = None, error: Any = None
) -> Job | None:
    row = conn.execute(
        f"update jobs set status = %s, result = coalesce(%s, result), error = coalesce(%s, error),"
        f" updated_at = now() where tenant_id = %s and id = %s returning {COLS}",
        [status, json.dumps(result, default=str) if result is not None else None,
         json.dumps(error, default=str) if error is not None else None, tenant_id, job_id],
    ).fetchone()
    return Job(**row) if row else None
