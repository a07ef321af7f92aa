"""Sandbox runs: one row per POST /v1/sandbox/runs, updated by the sandbox_run workflow."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel

from context_engine.db.database import Conn

RunStatus = Literal["queued", "running", "succeeded", "failed", "timed_out"]
TERMINAL_RUN_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "timed_out"})

COLS = ("id, status, language, limits, code_bytes, code_sha256, stdin_bytes, agent_id, session_id, call_id,"
        " created_by, created_role, stdout, stderr, exit_code, duration_ms, stdout_truncated, stderr_truncated,"
        " reason, isolation, start_failures, created_at, started_at, finished_at, updated_at")


class SandboxRun(BaseModel):
    """A stored run. ``stdout``/``stderr``/``exit_code``... stay null until the run ends."""

    id: UUID
    status: RunStatus
    language: str
    limits: dict[str, Any]
    code_bytes: int
    code_sha256: str
    stdin_bytes: int
    agent_id: str | None
    session_id: str | None
    call_id: str | None
    created_by: str
    created_role: str
    stdout: str | None
    stderr: str | None
    exit_code: int | None
    duration_ms: float | None
    stdout_truncated: bool
    stderr_truncated: bool
    reason: str | None
    isolation: str | None
    start_failures: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_RUN_STATUSES


def insert(
    conn: Conn, tenant_id: str, *, run_id: UUID, language: str, limits: dict[str, Any], code_bytes: int,
    code_sha256: str, stdin_bytes: int, agent_id: str | None, session_id: str | None, call_id: str | None,
    created_by: str, created_role: str,
) -> SandboxRun | None:
    """Insert a queued run; None when the tool call already has a run (the caller answers 409)."""
    row = conn.execute(
        f"insert into sandbox_runs (tenant_id, id, status, language, limits, code_bytes, code_sha256, stdin_bytes,"
        f" agent_id, session_id, call_id, created_by, created_role)"
        f" values (%s,%s,'queued',%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) on conflict do nothing returning {COLS}",
        [tenant_id, run_id, language, json.dumps(limits), code_bytes, code_sha256, stdin_bytes, agent_id,
         session_id, call_id, created_by, created_role],
    ).fetchone()
    return SandboxRun(**row) if row else None


def get(conn: Conn, tenant_id: str, run_id: UUID, *, for_update: bool = False) -> SandboxRun | None:
    sql = f"select {COLS} from sandbox_runs where tenant_id = %s and id = %s"
    row = conn.execute(sql + (" for update" if for_update else ""), [tenant_id, run_id]).fetchone()
    return SandboxRun(**row) if row else None


def delete(conn: Conn, tenant_id: str, run_id: UUID) -> None:
    conn.execute("delete from sandbox_runs where tenant_id = %s and id = %s", [tenant_id, run_id])


def mark_running(conn: Conn, tenant_id: str, run_id: UUID) -> SandboxRun:
    row = conn.execute(
        f"update sandbox_runs set status = 'running', started_at = coalesce(started_at, now()), updated_at = now()"
        f" where tenant_id = %s and id = %s returning {COLS}",
        [tenant_id, run_id],
    ).fetchone()
    assert row is not None
    return SandboxRun(**row)


def count_start_failure(conn: Conn, tenant_id: str, run_id: UUID) -> int:
    row = conn.execute(
        "update sandbox_runs set start_failures = start_failures + 1, updated_at = now()"
        " where tenant_id = %s and id = %s returning start_failures",
        [tenant_id, run_id],
    ).fetchone()
    assert row is not None
    return int(row["start_failures"])


def finish(
    conn: Conn, tenant_id: str, run_id: UUID, *, status: str, stdout: str | None, stderr: str | None,
    exit_code: int | None, duration_ms: float | None, stdout_truncated: bool, stderr_truncated: bool,
    reason: str | None, isolation: str | None,
) -> SandboxRun:
    row = conn.execute(
        f"update sandbox_runs set status = %s, stdout = %s, stderr = %s, exit_code = %s, duration_ms = %s,"
        f" stdout_truncated = %s, stderr_truncated = %s, reason = %s, isolation = %s, finished_at = now(),"
        f" updated_at = now() where tenant_id = %s and id = %s returning {COLS}",
        [status, stdout, stderr, exit_code, duration_ms, stdout_truncated, stderr_truncated, reason, isolation,
         tenant_id, run_id],
    ).fetchone()
    assert row is not None
    return SandboxRun(**row)
