"""Running governance jobs (export, erase) outside the request that queued them.

AWS: a ``JobInvocation`` message on the governance jobs queue, consumed by the governance
function (SQS redelivers a failed job, then moves it to the queue's DLQ). Locally: a small
thread pool in the serving process. Either way, the scheduled governance run resumes
jobs whose runner died (``ce_governance_jobs_to_resume``), and a job is claimed before it
runs, so two runners never work on one job at once.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any
from uuid import UUID

from context_engine.governance.models import JobInvocation
from context_engine.governance.settings import GovernanceSettings
from context_engine.models.domain import Job
from context_engine.repos import jobs
from context_engine.runtime import Runtime

log = logging.getLogger(__name__)

_executor: ThreadPoolExecutor | None = None
_futures: set[Future[Any]] = set()
_lock = threading.Lock()


def claim(rt: Runtime, tenant_id: str, job_id: UUID, gov: GovernanceSettings) -> Job | None:
    """Mark the job running; None when it is finished or another runner holds it (a running
    job whose runner has been silent longer than ``job_stale_s`` may be taken over)."""
    with rt.db.tenant(tenant_id) as conn:
        row = conn.execute(
            "update jobs set status = 'running', updated_at = now() where tenant_id = %s and id = %s"
            " and kind in ('export', 'erase') and (status = 'queued' or (kind = 'erase' and status = 'failed')"
            "      or (status = 'running' and updated_at < now() - make_interval(secs => %s)))"
            " returning id", [tenant_id, job_id, gov.job_stale_s]).fetchone()
        return jobs.get(conn, tenant_id, job_id) if row else None


def fail(rt: Runtime, tenant_id: str, job_id: UUID, step_error: dict[str, Any]) -> None:
    """Record a failure (its class and step, never a message that could quote content) and
    count the attempt, which the resume query bounds."""
    with rt.db.tenant(tenant_id) as conn:
        conn.execute(
            "update jobs set status = 'failed', error = %s, updated_at = now(),"
            " result = jsonb_set(coalesce(result, '{}'::jsonb), '{extra,attempts}',"
            "   to_jsonb(coalesce((result->'extra'->>'attempts')::integer, 0) + 1), true)"
            " where tenant_id = %s and id = %s",
            [json.dumps(step_error), tenant_id, job_id])


def error_summary(exc: BaseException) -> dict[str, Any]:
    """What is safe to log or store about a failure in code that handles turn content: the class
    and, for database errors, the SQLSTATE — never the message or traceback (a PostgreSQL error's
    DETAIL can quote the failing row)."""
    summary: dict[str, Any] = {"type": type(exc).__name__}
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate:
        summary["sqlstate"] = sqlstate
    return summary


Runner = Callable[[Runtime, str, UUID], Any]


def _local_executor() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="governance-job")
        return _executor


def submit(rt: Runtime, gov: GovernanceSettings, tenant_id: str, job_id: UUID, runner: Runner) -> None:
    """Start the job elsewhere. A failure to start is logged, not raised: the job row is
    queued and the schedule resumes it."""
    try:
        if gov.governance_jobs_queue_url:
            import boto3

            boto3.client("sqs").send_message(
                QueueUrl=gov.governance_jobs_queue_url,
                MessageBody=JobInvocation(tenant_id=tenant_id, job_id=job_id).model_dump_json())
            return
        future = _local_executor().submit(runner, rt, tenant_id, job_id)
        with _lock:
            _futures.add(future)
        future.add_done_callback(lambda f: _futures.discard(f))
    except Exception as exc:
        log.error("governance job not started; the schedule will resume it",
                  extra={"tenant_id": tenant_id, "job_id": str(job_id), "error": error_summary(exc)})


def wait_local(timeout_s: float = 60.0) -> None:
    """Wait for locally running jobs (tests, shutdown)."""
    with _lock:
        pending = set(_futures)
    if pending:
        wait(pending, timeout=timeout_s)


def to_resume(rt: Runtime, gov: GovernanceSettings, limit: int = 100) -> list[tuple[str, UUID]]:
    with rt.db.unscoped() as conn:
        rows = conn.execute("select tenant_id, job_id from ce_governance_jobs_to_resume(%s, %s)",
                            [gov.job_stale_s, limit]).fetchall()
    return [(r["tenant_id"], r["job_id"]) for r in rows]
