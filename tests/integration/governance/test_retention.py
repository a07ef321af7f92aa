"""Retention: expired turns, tool results and memories are purged everywhere (rows, index
statistics, summaries, cache) and the purge is audited; fresh data and tenants without a
policy are untouched."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from context_engine.audit.models import AuditFilter
from context_engine.cache.keys import user_prefix
from context_engine.governance.models import PutTenantRequest, RetentionPolicy
from context_engine.governance.retention import purge_all, purge_tenant
from context_engine.governance.settings import get_governance_settings
from context_engine.services import audit, tenants

OLD = "an ancient remark about walruses"


def age(rt, tenant: str, table: str, column: str, where: str, days: int) -> None:  # type: ignore[no-untyped-def]
    with rt.db.tenant(tenant) as conn:
        conn.execute(f"update {table} set {column} = now() - make_interval(days => %s) where tenant_id = %s"
                     f" and {where}", [days, tenant])


def test_expired_rows_are_purged_everywhere_and_audited(writer, admin) -> None:  # type: ignore[no-untyped-def]
    rt, tenant = writer.rt, admin.tenant_id
    tenants.put_settings(rt, admin, PutTenantRequest(
        retention=RetentionPolicy(turns_days=30, tool_results_days=7, memories_days=90)))
    writer.turn("s1", "u1", f"Tell me {OLD}", "Walruses are large.")
    writer.turn("s1", "u1", "And today?", "Today is fine.")
    writer.turn("s-old", "u1", f"Only {OLD} here", "ok")
    writer.tool_call("s1", "u1", "c-old", {"q": 1}, {"r": OLD})
    writer.tool_call("s1", "u1", "c-new", {"q": 2}, {"r": "fresh"})
    writer.memory("u1", f"memory of {OLD}")
    writer.memory("u1", "fresh memory")
    writer.memory(None, f"shared {OLD}", visibility="agent")
    age(rt, tenant, "turns", "created_at", "question like '%%walruses%%'", 31)
    age(rt, tenant, "sessions", "updated_at", "id = 's-old'", 31)
    age(rt, tenant, "tool_calls", "updated_at", "call_id = 'c-old'", 8)
    age(rt, tenant, "memories", "updated_at", "content like '%%walruses%%'", 91)
    with rt.db.tenant(tenant) as conn:
        conn.execute("update context_windows set summary = %s, summary_seqs = '{1,2}', summary_covers_seq = 2,"
                     " summary_tokens = 64, strategy = 'truncate' where tenant_id = %s and session_id = 's1'",
                     [f"Summary: {OLD}. Today is fine.", tenant])
    rt.cache.set(user_prefix(tenant, "agent-1", "u1") + "s1:w3:k", b"ctx", 300)
    rt.cache.set(user_prefix(tenant, "agent-1", "u9") + "s9:w1:k", b"ctx", 300)  # sees the shared memory

    result = purge_tenant(rt, tenant, get_governance_settings())

    assert result.counts() == {"turns": 2, "tool_calls": 1, "memories": 2, "sessions": 1, "summaries_rebuilt": 1,
                               "cache_entries": 2}
    with rt.db.tenant(tenant) as conn:
        texts = [r["question"] for r in conn.execute("select question from turns where tenant_id = %s", [tenant])]
        calls = [r["call_id"] for r in conn.execute("select call_id from tool_calls where tenant_id = %s", [tenant])]
        mems = [r["content"] for r in conn.execute("select content from memories where tenant_id = %s", [tenant])]
        window = conn.execute("select summary from context_windows where tenant_id = %s and session_id = 's1'",
                              [tenant]).fetchone()
        s1 = conn.execute("select turn_count from sessions where tenant_id = %s and id = 's1'", [tenant]).fetchone()
        old_session = conn.execute("select 1 from sessions where tenant_id = %s and id = 's-old'", [tenant]).fetchone()
    assert texts == ["And today?"] and calls == ["c-new"] and mems == ["fresh memory"]
    assert OLD not in (window["summary"] or "") and "Today is fine" in window["summary"]
    assert s1["turn_count"] == 1 and old_session is None
    assert rt.cache.get(user_prefix(tenant, "agent-1", "u9") + "s9:w1:k") is None
    records = audit.query(rt, admin, AuditFilter(action="retention.purge"), cursor=None, limit=5,
                          newest_first=False).items
    assert len(records) == 1 and records[0].details["counts"]["turns"] == 2
    assert records[0].details["policy"] == {"turns_days": 30, "tool_results_days": 7, "memories_days": 90}
    # A second run finds nothing and audits nothing.
    assert purge_tenant(rt, tenant, get_governance_settings()).counts() == {}
    assert len(audit.query(rt, admin, AuditFilter(action="retention.purge"), cursor=None, limit=5,
                           newest_first=False).items) == 1


def test_tenants_without_a_policy_keep_everything(writer, admin) -> None:  # type: ignore[no-untyped-def]
    rt, tenant = writer.rt, admin.tenant_id
    writer.turn("s1", "u1", "keep me", "ok")
    age(rt, tenant, "turns", "created_at", "true", 4000)
    results = purge_all(rt, get_governance_settings(), now=datetime.now(UTC) + timedelta(days=1))
    assert tenant not in results
    with rt.db.tenant(tenant) as conn:
        assert conn.execute("select count(*) n from turns where tenant_id = %s", [tenant]).fetchone()["n"] == 1
