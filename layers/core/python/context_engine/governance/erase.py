"""GDPR erase: remove one user's data from PostgreSQL, the search index and the cache.

An erasure is a job (kind ``erase``) that runs in steps. Each step is idempotent and
commits its effect together with its entry in the job's progress, so an erasure that
dies half-way resumes where it stopped (the schedule resumes it, or a repeated
``DELETE /v1/users/{id}``), and running a finished step again finds nothing to delete.

Steps, in order:

1. ``plan``: which agents hold the user's data and which agents' shared memories are
   affected (needed later for cache prefixes, after the rows are gone);
2. ``memories``: memories of the user (private, and shared ones they contributed) and
   memories derived from their turns (``source_turn_ids``);
3. ``mixed_sessions``: the user's turns and tool calls in *other* users' sessions; a
   summary that covered them is rebuilt from the remaining turns;
4. ``sessions``: the user's own sessions with everything hanging off them, in batches;
5. ``leftovers``: search statistics derived from their text, compression jobs that staged
   summaries of their sessions, and earlier exports of them (files/objects too);
6. ``search_index``: the external index mirror (OpenSearch), when there is one — the
   PostgreSQL search reads the rows themselves, which are gone by now;
7. ``cache``: cached contexts of the user (and of every user of an agent whose shared
   memories were removed);
8. ``finish``: the job succeeds, ``UserErased`` goes to the outbox and the erasure is
   audited — counts only, never content — in the same transaction.

What stays: audit records (identifiers, no content; the legal record of the erasure) and
outbox rows already published (identifiers only).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from uuid import UUID

from context_engine.audit.models import SYSTEM_ACTOR, SYSTEM_ROLE, AuditEntry
from context_engine.cache.keys import user_prefix
from context_engine.db.database import Conn
from context_engine.events.models import UserErased, new_event
from context_engine.governance.export import export_store
from context_engine.governance.models import EraseProgress, ExportLocation
from context_engine.governance.settings import GovernanceSettings
from context_engine.governance.summaries import drop_staged_summaries, rebuild_without
from context_engine.models.domain import Job
from context_engine.repos import jobs, outbox
from context_engine.runtime import Runtime
from context_engine.search import index_mirror, user_index_cache
from context_engine.services import audit

log = logging.getLogger(__name__)

JOB_KIND = "erase"
STEPS = ("plan", "memories", "mixed_sessions", "sessions", "leftovers", "search_index", "cache", "finish")

StepHook = Callable[[str], None]


def agent_prefix(tenant_id: str, agent_id: str) -> str:
    """``ctx:{tenant}:{agent}:`` — every cached context of an agent (all its users)."""
    return user_prefix(tenant_id, agent_id, "")[:-1]  # the user component of "" is empty


def _save(conn: Conn, tenant_id: str, job_id: UUID, progress: EraseProgress) -> None:
    conn.execute("update jobs set result = %s, updated_at = now() where tenant_id = %s and id = %s",
                 [progress.model_dump_json(), tenant_id, job_id])


def _user_turn_ids(conn: Conn, tenant_id: str, user_id: str) -> list[UUID]:
    return [r["id"] for r in conn.execute("select id from turns where tenant_id = %s and user_id = %s",
                                          [tenant_id, user_id]).fetchall()]


# --- steps ------------------------------------------------------------------------------
def _plan(rt: Runtime, tenant: str, user: str, job: Job, p: EraseProgress, gov: GovernanceSettings) -> None:
    with rt.db.tenant(tenant) as conn:
        agents = conn.execute(
            "select agent_id from sessions where tenant_id = %s and user_id = %s"
            " union select agent_id from turns where tenant_id = %s and user_id = %s"
            " union select agent_id from tool_calls where tenant_id = %s and user_id = %s"
            " union select agent_id from memories where tenant_id = %s and user_id = %s",
            [tenant, user] * 4).fetchall()
        shared = conn.execute(
            "select distinct agent_id from memories m where tenant_id = %s and visibility = 'agent'"
            " and (user_id = %s or source_turn_ids && array(select id from turns t"
            "      where t.tenant_id = %s and t.user_id = %s))",
            [tenant, user, tenant, user]).fetchall()
        p.agents = sorted({r["agent_id"] for r in agents} | set(p.agents))
        p.shared_memory_agents = sorted({r["agent_id"] for r in shared} | set(p.shared_memory_agents))
        p.steps["plan"] = {}
        _save(conn, tenant, job.id, p)


def _memories(rt: Runtime, tenant: str, user: str, job: Job, p: EraseProgress, gov: GovernanceSettings) -> None:
    with rt.db.tenant(tenant) as conn:
        turn_ids = _user_turn_ids(conn, tenant, user)
        ids = [r["id"] for r in conn.execute(
            "select id from memories where tenant_id = %s and (user_id = %s or source_turn_ids && %s::uuid[])",
            [tenant, user, turn_ids]).fetchall()]
    mirror = index_mirror(rt)
    if mirror is not None and ids:
        mirror.delete_memories(tenant, ids)  # before the rows: a retry finds the same ids again
    with rt.db.tenant(tenant) as conn:
        n = conn.execute("delete from memories where tenant_id = %s and id = any(%s)", [tenant, ids]).rowcount
        p.steps["memories"] = {"memories": n}
        _save(conn, tenant, job.id, p)


def _mixed_sessions(rt: Runtime, tenant: str, user: str, job: Job, p: EraseProgress,
                    gov: GovernanceSettings) -> None:
    with rt.db.tenant(tenant) as conn:
        sessions = [r["session_id"] for r in conn.execute(
            "select session_id from turns where tenant_id = %s and user_id = %s"
            " union select session_id from tool_calls where tenant_id = %s and user_id = %s"
            " except select id from sessions where tenant_id = %s and user_id = %s",
            [tenant, user] * 3).fetchall()]
    counts = dict(p.extra.get("mixed_counts") or {"turns": 0, "tool_calls": 0, "summaries_rebuilt": 0})
    for session_id in sorted(sessions):
        # One session per transaction: its deletes, counters, summary and version move together.
        with rt.db.tenant(tenant) as conn:
            owner = conn.execute("select agent_id, user_id from sessions where tenant_id = %s and id = %s for update",
                                 [tenant, session_id]).fetchone()
            removed = conn.execute(
                "delete from turns where tenant_id = %s and session_id = %s and user_id = %s"
                " returning seq, token_count", [tenant, session_id, user]).fetchall()
            calls = conn.execute("delete from tool_calls where tenant_id = %s and session_id = %s and user_id = %s",
                                 [tenant, session_id, user]).rowcount
            if removed:
                conn.execute(
                    "update sessions set turn_count = turn_count - %s, token_count = token_count - %s,"
                    " updated_at = now() where tenant_id = %s and id = %s",
                    [len(removed), sum(r["token_count"] for r in removed), tenant, session_id])
            rebuilt = rebuild_without(rt, conn, tenant, session_id, [r["seq"] for r in removed], reason="erase")
            drop_staged_summaries(conn, tenant, [session_id])
            conn.execute("update context_windows set version = version + 1, updated_at = now()"
                         " where tenant_id = %s and session_id = %s", [tenant, session_id])
            counts["turns"] += len(removed)
            counts["tool_calls"] += calls
            counts["summaries_rebuilt"] += int(rebuilt)
            p.extra["mixed_counts"] = counts
            _save(conn, tenant, job.id, p)
        if owner is not None:  # that session's cached contexts may quote the removed turns
            rt.cache.delete_prefix(user_prefix(tenant, owner["agent_id"], owner["user_id"]))
    with rt.db.tenant(tenant) as conn:
        p.steps["mixed_sessions"] = counts
        p.extra.pop("mixed_counts", None)
        _save(conn, tenant, job.id, p)


def _sessions(rt: Runtime, tenant: str, user: str, job: Job, p: EraseProgress, gov: GovernanceSettings) -> None:
    counts = dict(p.extra.get("session_counts") or {"sessions": 0, "turns": 0, "tool_calls": 0})
    batch = max(1, gov.delete_batch // 100)  # sessions per transaction (each may hold many turns)
    while True:
        with rt.db.tenant(tenant) as conn:
            ids = [r["id"] for r in conn.execute(
                "select id from sessions where tenant_id = %s and user_id = %s order by id limit %s",
                [tenant, user, batch]).fetchall()]
            if not ids:
                break
            counts["turns"] += conn.execute("delete from turns where tenant_id = %s and session_id = any(%s)",
                                            [tenant, ids]).rowcount
            counts["tool_calls"] += conn.execute(
                "delete from tool_calls where tenant_id = %s and session_id = any(%s)", [tenant, ids]).rowcount
            conn.execute("delete from idempotency_keys where tenant_id = %s and scope = any(%s)",
                         [tenant, [f"turn:{sid}" for sid in ids]])
            conn.execute("delete from jobs where tenant_id = %s and kind = 'compress'"
                         " and resource->>'session_id' = any(%s)", [tenant, ids])
            counts["sessions"] += conn.execute("delete from sessions where tenant_id = %s and id = any(%s)",
                                               [tenant, ids]).rowcount  # windows cascade
            p.extra["session_counts"] = counts
            _save(conn, tenant, job.id, p)
    with rt.db.tenant(tenant) as conn:
        p.steps["sessions"] = counts
        p.extra.pop("session_counts", None)
        _save(conn, tenant, job.id, p)


def _leftovers(rt: Runtime, tenant: str, user: str, job: Job, p: EraseProgress, gov: GovernanceSettings) -> None:
    store = export_store(rt, gov)
    with rt.db.tenant(tenant) as conn:
        exports = conn.execute(
            "select id, result from jobs where tenant_id = %s and kind = 'export' and resource->>'user_id' = %s",
            [tenant, user]).fetchall()
    for row in exports:  # the files first: a retry still finds their rows
        location = (row["result"] or {}).get("location")
        if location:
            store.delete(ExportLocation.model_validate(location))
    with rt.db.tenant(tenant) as conn:
        counts = {
            "turns": conn.execute("delete from turns where tenant_id = %s and user_id = %s", [tenant, user]).rowcount,
            "tool_calls": conn.execute("delete from tool_calls where tenant_id = %s and user_id = %s",
                                       [tenant, user]).rowcount,
            # Per-user BM25 statistics hold analyzed terms of the user's text.
            "search_terms": conn.execute("delete from search_term_stats where tenant_id = %s and user_id = %s",
                                         [tenant, user]).rowcount,
            "search_docs": conn.execute("delete from search_doc_stats where tenant_id = %s and user_id = %s",
                                        [tenant, user]).rowcount,
            "exports": conn.execute("delete from jobs where tenant_id = %s and id = any(%s)",
                                    [tenant, [r["id"] for r in exports]]).rowcount,
            "jobs": conn.execute("delete from jobs where tenant_id = %s and kind = 'compress'"
                                 " and resource->>'user_id' = %s", [tenant, user]).rowcount,
        }
        p.steps["leftovers"] = counts
        _save(conn, tenant, job.id, p)


def _search_index(rt: Runtime, tenant: str, user: str, job: Job, p: EraseProgress,
                  gov: GovernanceSettings) -> None:
    mirror = index_mirror(rt)
    if mirror is not None:
        mirror.delete_user(tenant, user)
    vectors = user_index_cache(rt)
    if vectors is not None:  # this process's copy of the user's vectors
        vectors.drop_user(tenant, user)
    with rt.db.tenant(tenant) as conn:
        p.steps["search_index"] = {"index_mirrors": int(mirror is not None)}
        _save(conn, tenant, job.id, p)


def _cache(rt: Runtime, tenant: str, user: str, job: Job, p: EraseProgress, gov: GovernanceSettings) -> None:
    n = sum(rt.cache.delete_prefix(user_prefix(tenant, agent, user)) for agent in p.agents)
    n += sum(rt.cache.delete_prefix(agent_prefix(tenant, agent)) for agent in p.shared_memory_agents)
    with rt.db.tenant(tenant) as conn:
        p.steps["cache"] = {"cache_entries": n}
        _save(conn, tenant, job.id, p)


def _finish(rt: Runtime, tenant: str, user: str, job: Job, p: EraseProgress, gov: GovernanceSettings) -> None:
    counts = p.counts
    event = new_event(UserErased, tenant, user_id=user, job_id=job.id, counts=counts)
    with rt.db.tenant(tenant) as conn:
        p.steps["finish"] = {}
        conn.execute("update jobs set status = 'succeeded', result = %s, error = null, updated_at = now()"
                     " where tenant_id = %s and id = %s", [p.model_dump_json(), tenant, job.id])
        outbox.add(conn, tenant, event.event_id, event.detail_type, event.detail)
        audit.record_in(conn, tenant, [AuditEntry(
            id=f"erase:{job.id}", actor=SYSTEM_ACTOR, role=SYSTEM_ROLE, action="user.erased",
            resource_type="user", resource_id=user, request_id=job.resource.get("request_id"),
            details={"user_id": user, "job_id": str(job.id), "requested_by": job.resource.get("requested_by"),
                     "counts": counts, "agents": len(p.agents)})])
    rt.publish_committed(tenant, [event])


_RUNNERS: dict[str, Callable[[Runtime, str, str, Job, EraseProgress, GovernanceSettings], None]] = {
    "plan": _plan, "memories": _memories, "mixed_sessions": _mixed_sessions, "sessions": _sessions,
    "leftovers": _leftovers, "search_index": _search_index, "cache": _cache, "finish": _finish,
}


def run(rt: Runtime, tenant_id: str, job: Job, gov: GovernanceSettings, *, after_step: StepHook | None = None) -> Job:
    """Run (or resume) an erase job; ``after_step`` is called after each finished step."""
    user = str(job.resource["user_id"])
    progress = EraseProgress.model_validate(job.result or {})
    for step in STEPS:
        if step in progress.steps:
            continue
        _RUNNERS[step](rt, tenant_id, user, job, progress, gov)
        log.info("erase step done", extra={"tenant_id": tenant_id, "job_id": str(job.id), "step": step})
        if after_step is not None:
            after_step(step)
    with rt.db.tenant(tenant_id) as conn:
        done = jobs.get(conn, tenant_id, job.id)
    assert done is not None
    return done

