"""Window compression: RebuildContext, the automatic threshold trigger, and the tasks of
the ``rebuild_context`` workflow (statemachines/rebuild_context.asl.json).

A compression is a job (kind ``compress``). It is queued by the API, by the compress
consumer when a window's unsummarised tokens pass the agent's threshold, or when a turn
covered by the summary is deleted; queuing writes a ``ContextRebuildRequested`` event to
the outbox in the same transaction, and the compress consumer starts the workflow for it.

The workflow's tasks are the functions at the bottom of this module:
load_window → run_strategy → store_summary (+ version bump, one transaction) →
invalidate_cache → emit_compressed; any failure → mark_failed. Every task is safe to
retry: a task re-run after a timeout finds its own earlier effect and does nothing new.
The computed summary is staged in the job row rather than in the workflow state, so no
summary size can hit the Step Functions payload limit.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Literal
from uuid import UUID, uuid4

from pydantic import BaseModel

from context_engine.cache.keys import session_prefix
from context_engine.compression.models import (
    DEFAULT_KEEP_HEAD,
    DEFAULT_KEEP_TAIL,
    CompressionRequest,
    CompressionResult,
    SourceTurn,
)
from context_engine.compression.strategies import compress
from context_engine.compression.summarizers import BedrockSummarizer, ExtractiveSummarizer, Summarizer
from context_engine.db.database import Conn
from context_engine.events.envelope import EventEnvelope
from context_engine.events.models import (
    ContextCompressed,
    ContextDeleted,
    ContextRebuildRequested,
    TurnWritten,
    new_event,
)
from context_engine.models.api import JobAccepted, RebuildRequest
from context_engine.models.domain import AgentProfile, Job, Principal, Session
from context_engine.pipeline.settings import get_pipeline_settings
from context_engine.repos import agents, jobs, outbox, sessions
from context_engine.runtime import Runtime
from context_engine.services.authz import Action, require
from context_engine.services.turns import load_session

log = logging.getLogger(__name__)

JOB_KIND = "compress"
Trigger = Literal["api", "threshold", "deletion"]


# --- errors the workflow tells apart (their class names are the ASL error names) -------
class TransientError(Exception):
    """Worth retrying (the state machine's Retry lists it)."""


class SessionGone(Exception):
    """The session was deleted after the job was queued: nothing to compress, not retried."""


class JobGone(Exception):
    """The job row does not exist (another tenant's id, or deleted): not retried."""


# --- queuing ------------------------------------------------------------------------
def default_target_tokens(profile: AgentProfile) -> int:
    s = get_pipeline_settings()
    return max(64, min(s.compress_target_max_tokens, int(profile.compress_threshold_tokens * s.compress_target_share)))


def queue_compression(conn: Conn, tenant_id: str, session: Session, *, strategy: str, trigger: Trigger,
                      created_by: str, target_tokens: int | None = None, keep_head: int | None = None,
                      keep_tail: int | None = None) -> tuple[Job, EventEnvelope]:
    """Create a queued job and its ContextRebuildRequested outbox row (caller's transaction)."""
    job_id = uuid4()
    fields: dict[str, Any] = {"session_id": session.id, "agent_id": session.agent_id, "user_id": session.user_id,
                              "strategy": strategy, "trigger": trigger, "target_tokens": target_tokens,
                              "keep_head": keep_head, "keep_tail": keep_tail}
    job = jobs.create(conn, tenant_id, job_id, JOB_KIND, fields, created_by)
    event = new_event(ContextRebuildRequested, tenant_id, job_id=job_id, **fields)
    outbox.add(conn, tenant_id, event.event_id, event.detail_type, event.detail)
    return job, event


def request_rebuild(rt: Runtime, principal: Principal, session_id: str, req: RebuildRequest) -> JobAccepted:
    """RebuildContext: 202 with a job; the workflow runs asynchronously."""
    require(principal, Action.write)
    tenant = principal.tenant_id
    with rt.db.tenant(tenant) as conn:
        session = load_session(conn, principal, session_id)
        job, event = queue_compression(conn, tenant, session, strategy=req.strategy, trigger="api",
                                       created_by=principal.key_id, target_tokens=req.target_tokens,
                                       keep_head=req.keep_head, keep_tail=req.keep_tail)
    rt.publish_committed(tenant, [event])
    return JobAccepted(job_id=job.id)


def _active_job(conn: Conn, tenant_id: str, session_id: str) -> UUID | None:
    stale_after = datetime.now(UTC) - timedelta(seconds=get_pipeline_settings().compress_job_stale_s)
    row = conn.execute(
        "select id from jobs where tenant_id = %s and kind = %s and resource->>'session_id' = %s"
        " and status in ('queued', 'running') and updated_at > %s limit 1",
        [tenant_id, JOB_KIND, session_id, stale_after],
    ).fetchone()
    return row["id"] if row else None


def unsummarised_tokens(conn: Conn, tenant_id: str, session_id: str, covers_seq: int) -> int:
    row = conn.execute(
        "select coalesce(sum(token_count), 0) as n from turns where tenant_id = %s and session_id = %s and seq > %s",
        [tenant_id, session_id, covers_seq],
    ).fetchone()
    return int(row["n"]) if row else 0


def check_threshold(conn: Conn, tenant_id: str, event: TurnWritten) -> tuple[Job, EventEnvelope] | None:
    """On TurnWritten: queue an incremental compression when the window's unsummarised tokens
    pass the agent's threshold and none is in flight. The window row is locked so that two
    consumers handling two turns of one session cannot both queue one."""
    locked = conn.execute("select summary_covers_seq from context_windows where tenant_id = %s and session_id = %s"
                          " for update", [tenant_id, event.session_id]).fetchone()
    session = sessions.get(conn, tenant_id, event.session_id)
    if locked is None or session is None:
        return None  # the session was deleted since
    profile = agents.profile(conn, tenant_id, session.agent_id)
    pending = unsummarised_tokens(conn, tenant_id, session.id, int(locked["summary_covers_seq"]))
    if pending <= profile.compress_threshold_tokens or _active_job(conn, tenant_id, session.id):
        return None
    log.info("window passed its compression threshold", extra={
        "session_id": session.id, "pending_tokens": pending, "threshold": profile.compress_threshold_tokens})
    return queue_compression(conn, tenant_id, session, strategy=profile.compress_strategy, trigger="threshold",
                             created_by="system:threshold")


def check_deletion(conn: Conn, tenant_id: str, event: ContextDeleted) -> tuple[Job, EventEnvelope] | None:
    """On a deleted turn that the summary covers: rebuild, so its content leaves the summary."""
    if event.scope != "turn" or event.session_id is None or event.seq is None:
        return None
    window = sessions.get_window(conn, tenant_id, event.session_id)
    session = sessions.get(conn, tenant_id, event.session_id)
    if session is None or event.seq not in window.summary_seqs:
        return None
    return queue_compression(conn, tenant_id, session, strategy=window.strategy or "summarize", trigger="deletion",
                             created_by="system:deletion")


# --- workflow tasks -----------------------------------------------------------------
class Plan(BaseModel):
    """LoadWindow's output: small, so it travels in the workflow state."""

    job_id: UUID
    tenant_id: str
    session_id: str
    agent_id: str
    user_id: str
    strategy: Literal["summarize", "truncate", "importance"]
    trigger: Trigger
    incremental: bool
    from_seq: int
    to_seq: int
    base_covers_seq: int
    base_version: int
    # The job whose summary the window held at load time: an incremental result built on it
    # is stored only if it is still the window's summary.
    base_summary_job: str | None = None
    target_tokens: int
    keep_head: int
    keep_tail: int
    turn_count: int
    input_tokens: int
    reason: str | None = None


def _job(conn: Conn, tenant_id: str, job_id: UUID) -> Job:
    job = jobs.get(conn, tenant_id, job_id)
    if job is None:
        raise JobGone(f"job {job_id} not found")
    return job


def load_window(rt: Runtime, tenant_id: str, job_id: UUID) -> Plan:
    """Mark the job running and decide which turns to compress."""
    with rt.db.tenant(tenant_id) as conn:
        job = _job(conn, tenant_id, job_id)
        res = job.resource
        session = sessions.get(conn, tenant_id, res["session_id"])
        if session is None:
            raise SessionGone(f"session {res['session_id']} was deleted")
        profile = agents.profile(conn, tenant_id, session.agent_id)
        window = sessions.get_window(conn, tenant_id, session.id)
        trigger: Trigger = res.get("trigger", "api")
        incremental = trigger == "threshold" and window.summary is not None
        from_seq = window.summary_covers_seq + 1 if incremental else 1
        if trigger == "deletion":
            to_seq = window.summary_covers_seq
        elif trigger == "threshold":
            to_seq = _threshold_cut(conn, tenant_id, session.id, window.summary_covers_seq, profile)
        else:
            to_seq = session.last_seq
        row = conn.execute(
            "select count(*) as n, coalesce(sum(token_count), 0) as tokens from turns"
            " where tenant_id = %s and session_id = %s and seq between %s and %s",
            [tenant_id, session.id, from_seq, to_seq]).fetchone()
        if job.status == "queued":
            jobs.set_status(conn, tenant_id, job_id, "running")
    count, tokens = (int(row["n"]), int(row["tokens"])) if row else (0, 0)
    return Plan(job_id=job_id, tenant_id=tenant_id, session_id=session.id, agent_id=session.agent_id,
                user_id=session.user_id, strategy=res.get("strategy") or profile.compress_strategy, trigger=trigger,
                incremental=incremental, from_seq=from_seq, to_seq=to_seq, base_covers_seq=window.summary_covers_seq,
                base_version=window.version, base_summary_job=window.stats.get("job_id"),
                target_tokens=res.get("target_tokens") or default_target_tokens(profile),
                keep_head=res["keep_head"] if res.get("keep_head") is not None else DEFAULT_KEEP_HEAD,
                keep_tail=res["keep_tail"] if res.get("keep_tail") is not None else DEFAULT_KEEP_TAIL,
                turn_count=count, input_tokens=tokens,
                reason=None if count else "no turns to compress in the window")


def _threshold_cut(conn: Conn, tenant_id: str, session_id: str, covers_seq: int, profile: AgentProfile) -> int:
    """The newest turns (up to a share of the threshold) stay verbatim; older ones are folded in."""
    keep = int(profile.compress_threshold_tokens * get_pipeline_settings().compress_keep_recent_share)
    rows = conn.execute(
        "select seq, token_count from turns where tenant_id = %s and session_id = %s and seq > %s order by seq desc",
        [tenant_id, session_id, covers_seq]).fetchall()
    tail = 0
    for r in rows:
        tail += int(r["token_count"])
        if tail > keep:
            return int(r["seq"])
    return covers_seq  # everything fits verbatim: nothing to fold in


def load_source(conn: Conn, plan: Plan) -> list[SourceTurn]:
    rows = conn.execute(
        "select seq, question, answer, token_count, occurred_at, metadata from turns"
        " where tenant_id = %s and session_id = %s and seq between %s and %s order by seq",
        [plan.tenant_id, plan.session_id, plan.from_seq, plan.to_seq]).fetchall()
    return [SourceTurn(**r) for r in rows]


@lru_cache(maxsize=4)
def _summarizer(kind: str, model_id: str) -> Summarizer:
    if kind == "bedrock":
        return BedrockSummarizer(model_id, max_attempts=get_pipeline_settings().bedrock_max_attempts)
    return ExtractiveSummarizer()


def run_strategy(rt: Runtime, plan: Plan, *, summarizer: Summarizer | None = None) -> dict[str, Any]:
    """Compute the summary and stage it in the job row; return a small digest for the state."""
    with rt.db.tenant(plan.tenant_id) as conn:
        window = sessions.get_window(conn, plan.tenant_id, plan.session_id)
        source = load_source(conn, plan)
    prior_ok = plan.incremental and window.summary_covers_seq == plan.base_covers_seq
    req = CompressionRequest(
        strategy=plan.strategy, turns=source, target_tokens=plan.target_tokens, keep_head=plan.keep_head,
        keep_tail=plan.keep_tail, prior_summary=window.summary if prior_ok else None,
        prior_seqs=window.summary_seqs if prior_ok else [])
    result = compress(req, summarizer or _summarizer(rt.settings.summarizer, rt.settings.bedrock_summary_model_id))
    with rt.db.tenant(plan.tenant_id) as conn:
        jobs.set_status(conn, plan.tenant_id, plan.job_id, "running",
                        result={"stage": "computed", "compression": result.model_dump(mode="json")})
    return {"summary_tokens": result.summary_tokens, "covers_seq": result.covers_seq,
            "summarizer": result.summarizer, "fallback": result.fallback}


def _staged(job: Job) -> CompressionResult:
    staged = job.result if isinstance(job.result, dict) else None
    if not staged or "compression" not in staged:
        raise TransientError(f"job {job.id} has no computed summary staged")
    return CompressionResult.model_validate(staged["compression"])


def store_summary(rt: Runtime, plan: Plan) -> dict[str, Any]:
    """Store the staged summary and bump the window version in one transaction, unless a
    newer compression got there first. Re-running after success changes nothing."""
    tenant = plan.tenant_id
    with rt.db.tenant(tenant) as conn:
        job = _job(conn, tenant, plan.job_id)
        result = _staged(job)
        row = conn.execute(
            "select summary_covers_seq, version, stats->>'job_id' as job_id from context_windows"
            " where tenant_id = %s and session_id = %s for update", [tenant, plan.session_id]).fetchone()
        if row is None:
            raise SessionGone(f"session {plan.session_id} was deleted")
        if row["job_id"] == str(plan.job_id):
            return {"stored": True, "window_version": int(row["version"]), "reason": "already stored"}
        covers = int(row["summary_covers_seq"])
        superseded = (row["job_id"] != plan.base_summary_job if plan.incremental
                      else plan.trigger != "deletion" and covers > result.covers_seq)
        if superseded:
            return {"stored": False, "window_version": int(row["version"]),
                    "reason": f"superseded: the window changed meanwhile (it covers seq {covers})"}
        present = {r["seq"] for r in conn.execute(
            "select seq from turns where tenant_id = %s and session_id = %s and seq = any(%s)",
            [tenant, plan.session_id, result.seqs]).fetchall()}
        gone = sorted(set(result.seqs) - present)
        if gone:
            # Turns deleted while we compressed (or under the prior summary): their text may be
            # in this summary. Do not store it; queue a rebuild that will not read them.
            session = sessions.get(conn, tenant, plan.session_id)
            assert session is not None
            _, event = queue_compression(conn, tenant, session, strategy=plan.strategy,
                                         trigger="deletion" if covers else "threshold", created_by="system:deletion")
            requeued = event
        else:
            requeued = None
            stats = {"job_id": str(plan.job_id), "trigger": plan.trigger, "input_tokens": result.input_tokens,
                     "turns_covered": len(result.seqs), "kept_seqs": result.kept_seqs,
                     "summarizer": result.summarizer, "fallback": result.fallback,
                     "compressed_at": datetime.now(UTC).isoformat(), **result.stats}
            row = conn.execute(
                "update context_windows set summary = %s, summary_covers_seq = %s, summary_seqs = %s,"
                " summary_tokens = %s, strategy = %s, stats = %s, version = version + 1, updated_at = now()"
                " where tenant_id = %s and session_id = %s returning version",
                [result.summary, result.covers_seq, result.seqs, result.summary_tokens, result.strategy,
                 json.dumps(stats, default=str), tenant, plan.session_id]).fetchone()
            assert row is not None
    if requeued is not None:
        rt.publish_committed(tenant, [requeued])
        return {"stored": False, "window_version": plan.base_version,
                "reason": f"turns {gone} were deleted during compression; a new rebuild was queued"}
    return {"stored": True, "window_version": int(row["version"])}


def invalidate_cache(rt: Runtime, plan: Plan) -> dict[str, Any]:
    """Cache keys carry the window version, so the bump already makes old entries unreachable;
    deleting the session's prefix frees them now rather than at their TTL."""
    deleted = rt.cache.delete_prefix(session_prefix(plan.tenant_id, plan.agent_id, plan.user_id, plan.session_id))
    return {"deleted": deleted}


def emit_compressed(rt: Runtime, plan: Plan, stored: dict[str, Any]) -> dict[str, Any]:
    """Finish the job and announce the new summary (outbox + publish), once."""
    tenant = plan.tenant_id
    with rt.db.tenant(tenant) as conn:
        job = _job(conn, tenant, plan.job_id)
        if job.status == "succeeded":
            return {"event_id": (job.result or {}).get("event_id"), "reason": "already emitted"}
        result = _staged(job)
        final: dict[str, Any] = {
            "compressed": bool(stored.get("stored")), "strategy": result.strategy, "summarizer": result.summarizer,
            "fallback": result.fallback, "fallback_reason": result.fallback_reason, "covers_seq": result.covers_seq,
            "turns_covered": len(result.seqs), "kept_seqs": len(result.kept_seqs),
            "input_tokens": result.input_tokens, "summary_tokens": result.summary_tokens,
            "window_version": stored.get("window_version"), "reason": stored.get("reason"),
        }
        event = None
        if stored.get("stored"):
            event = new_event(ContextCompressed, tenant, job_id=plan.job_id, session_id=plan.session_id,
                              agent_id=plan.agent_id, user_id=plan.user_id, strategy=result.strategy,
                              summarizer=result.summarizer, fallback=result.fallback, covers_seq=result.covers_seq,
                              turns_covered=len(result.seqs), input_tokens=result.input_tokens,
                              summary_tokens=result.summary_tokens, window_version=stored["window_version"])
            outbox.add(conn, tenant, event.event_id, event.detail_type, event.detail)
            final["event_id"] = str(event.event_id)
        jobs.set_status(conn, tenant, plan.job_id, "succeeded", result=final)
    if event is not None:
        rt.publish_committed(tenant, [event])
    return {"event_id": final.get("event_id")}


def finish_noop(rt: Runtime, plan: Plan) -> dict[str, Any]:
    with rt.db.tenant(plan.tenant_id) as conn:
        jobs.set_status(conn, plan.tenant_id, plan.job_id, "succeeded",
                        result={"compressed": False, "reason": plan.reason, "strategy": plan.strategy})
    return {"compressed": False}


def mark_failed(rt: Runtime, tenant_id: str, job_id: UUID, error: dict[str, Any]) -> dict[str, Any]:
    """The workflow's catch path: record why the job failed. ``error`` is the ASL error object
    ``{Error, Cause}``; for a Lambda task the cause is the function's JSON error payload."""
    name = str(error.get("Error") or "Error")
    cause = error.get("Cause")
    message = cause
    if isinstance(cause, str):
        try:
            parsed = json.loads(cause)
            message = parsed.get("errorMessage", cause) if isinstance(parsed, dict) else cause
        except ValueError:
            message = cause
    detail = {"code": name, "message": (str(message) if message is not None else name)[:2000]}
    with rt.db.tenant(tenant_id) as conn:
        job = jobs.get(conn, tenant_id, job_id)
        if job is None:
            return {"marked": False}
        result = job.result if isinstance(job.result, dict) and "compression" not in job.result else None
        jobs.set_status(conn, tenant_id, job_id, "failed", error=detail, result=result)
    return {"marked": True, "error": detail}
