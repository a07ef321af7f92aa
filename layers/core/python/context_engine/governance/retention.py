"""Retention: per-tenant TTLs for turns, tool results and memories, purged on a schedule.

Age is measured from when a row was stored (``created_at`` for turns; ``updated_at`` for
tool calls and memories, which change after they are created) — not from a turn's
``occurred_at``, which a client may set to any date when importing history.

Each batch deletes from the external index mirror first (a retry finds the same ids),
then from PostgreSQL in one transaction together with the session counters, the rebuilt
summaries of windows that covered expired turns and the window versions; cached contexts
that may quote expired rows are dropped after the commit. A tenant's purge is audited
(counts only) when it removed anything.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from context_engine.audit.models import SYSTEM_ACTOR, SYSTEM_ROLE, AuditEntry
from context_engine.cache.keys import user_prefix
from context_engine.governance.erase import agent_prefix
from context_engine.governance.jobs import error_summary
from context_engine.governance.settings import GovernanceSettings
from context_engine.governance.summaries import drop_staged_summaries, rebuild_without
from context_engine.runtime import Runtime
from context_engine.search import index_mirror
from context_engine.services import audit
from context_engine.services.tenants import retention_of

log = logging.getLogger(__name__)


@dataclass
class PurgeResult:
    turns: int = 0
    tool_calls: int = 0
    memories: int = 0
    sessions: int = 0
    summaries_rebuilt: int = 0
    cache_entries: int = 0
    _prefixes: set[str] = field(default_factory=set, repr=False)

    def counts(self) -> dict[str, int]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and v}


def _purge_turns(rt: Runtime, tenant: str, cutoff: datetime, batch: int, out: PurgeResult) -> None:
    mirror = index_mirror(rt)
    while True:
        with rt.db.tenant(tenant) as conn:
            ids = [r["id"] for r in conn.execute(
                "select id from turns where tenant_id = %s and created_at < %s order by created_at limit %s",
                [tenant, cutoff, batch]).fetchall()]
        if not ids:
            return
        if mirror is not None:
            mirror.delete_turns(tenant, ids)
        with rt.db.tenant(tenant) as conn:
            groups = conn.execute(
                "with d as (delete from turns where tenant_id = %s and id = any(%s)"
                "           returning session_id, agent_id, user_id, seq, token_count)"
                " select session_id, agent_id, user_id, array_agg(seq) as seqs, count(*) as n,"
                "        sum(token_count) as tokens from d group by 1, 2, 3",
                [tenant, ids]).fetchall()
            for g in groups:
                conn.execute(
                    "update sessions set turn_count = greatest(turn_count - %s, 0),"
                    " token_count = greatest(token_count - %s, 0) where tenant_id = %s and id = %s",
                    [g["n"], g["tokens"], tenant, g["session_id"]])
                out.summaries_rebuilt += int(rebuild_without(rt, conn, tenant, g["session_id"], g["seqs"],
                                                             reason="retention"))
                conn.execute("update context_windows set version = version + 1, updated_at = now()"
                             " where tenant_id = %s and session_id = %s", [tenant, g["session_id"]])
                out.turns += int(g["n"])
                out._prefixes.add(user_prefix(tenant, g["agent_id"], g["user_id"]))
            drop_staged_summaries(conn, tenant, [g["session_id"] for g in groups])


def _purge_tool_calls(rt: Runtime, tenant: str, cutoff: datetime, batch: int, out: PurgeResult) -> None:
    while True:
        with rt.db.tenant(tenant) as conn:
            rows = conn.execute(
                "delete from tool_calls where tenant_id = %s and (session_id, call_id) in ("
                "  select session_id, call_id from tool_calls where tenant_id = %s and updated_at < %s limit %s)"
                " returning session_id, agent_id, user_id",
                [tenant, tenant, cutoff, batch]).fetchall()
            for sid in {r["session_id"] for r in rows}:
                conn.execute("update context_windows set version = version + 1, updated_at = now()"
                             " where tenant_id = %s and session_id = %s", [tenant, sid])
        out.tool_calls += len(rows)
        out._prefixes.update(user_prefix(tenant, r["agent_id"], r["user_id"]) for r in rows)
        if len(rows) < batch:
            return


def _purge_memories(rt: Runtime, tenant: str, cutoff: datetime, batch: int, out: PurgeResult) -> None:
    mirror = index_mirror(rt)
    while True:
        with rt.db.tenant(tenant) as conn:
            rows = conn.execute(
                "select id, agent_id, user_id, visibility from memories where tenant_id = %s and updated_at < %s"
                " order by updated_at limit %s", [tenant, cutoff, batch]).fetchall()
        if not rows:
            return
        ids = [r["id"] for r in rows]
        if mirror is not None:
            mirror.delete_memories(tenant, ids)
        with rt.db.tenant(tenant) as conn:
            out.memories += conn.execute("delete from memories where tenant_id = %s and id = any(%s)",
                                         [tenant, ids]).rowcount
        for r in rows:  # a shared memory is in every user's context of that agent
            out._prefixes.add(agent_prefix(tenant, r["agent_id"]) if r["visibility"] == "agent"
                              else user_prefix(tenant, r["agent_id"], r["user_id"]))


def _drop_empty_sessions(rt: Runtime, tenant: str, cutoff: datetime, out: PurgeResult) -> None:
    """Sessions whose turns and tool calls all expired and that saw no write since."""
    with rt.db.tenant(tenant) as conn:
        out.sessions += conn.execute(
            "delete from sessions s where tenant_id = %s and updated_at < %s"
            " and not exists (select 1 from turns t where t.tenant_id = s.tenant_id and t.session_id = s.id)"
            " and not exists (select 1 from tool_calls c where c.tenant_id = s.tenant_id and c.session_id = s.id)",
            [tenant, cutoff]).rowcount


def purge_tenant(rt: Runtime, tenant_id: str, gov: GovernanceSettings, *, now: datetime | None = None) -> PurgeResult:
    now = now or datetime.now(UTC)
    with rt.db.tenant(tenant_id) as conn:
        policy = retention_of(conn, tenant_id)
    out = PurgeResult()
    if policy.is_empty:
        return out
    if policy.turns_days:
        cutoff = now - timedelta(days=policy.turns_days)
        _purge_turns(rt, tenant_id, cutoff, gov.delete_batch, out)
        _drop_empty_sessions(rt, tenant_id, cutoff, out)
    if policy.tool_results_days:
        _purge_tool_calls(rt, tenant_id, now - timedelta(days=policy.tool_results_days), gov.delete_batch, out)
    if policy.memories_days:
        _purge_memories(rt, tenant_id, now - timedelta(days=policy.memories_days), gov.delete_batch, out)
    out.cache_entries = sum(rt.cache.delete_prefix(p) for p in sorted(out._prefixes))
    counts = out.counts()
    if counts:
        audit.record(rt, tenant_id, [AuditEntry(
            actor=SYSTEM_ACTOR, role=SYSTEM_ROLE, action="retention.purge", resource_type="tenant",
            resource_id=tenant_id, occurred_at=now,
            details={"counts": counts, "policy": policy.model_dump(exclude_none=True)})])
        log.info("retention purge", extra={"tenant_id": tenant_id, "counts": counts})
    return out


def purge_all(rt: Runtime, gov: GovernanceSettings, *, now: datetime | None = None) -> dict[str, dict[str, int]]:
    """Every tenant with a retention policy; one tenant's failure does not stop the others."""
    with rt.db.unscoped() as conn:
        tenants = [r["t"] for r in conn.execute("select ce_list_tenants() as t").fetchall()]
    results: dict[str, dict[str, int]] = {}
    for tenant in tenants:
        try:
            counts = purge_tenant(rt, tenant, gov, now=now).counts()
        except Exception as exc:
            log.error("retention purge failed", extra={"tenant_id": tenant, "error": error_summary(exc)})
            continue
        if counts:
            results[tenant] = counts
    return results
