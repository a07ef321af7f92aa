"""GDPR erase: the user's rows, index statistics, staged summaries, exports and cache entries
go; other users' data stays; summaries that mixed users are rebuilt without the erased
user's turns; the erasure is audited without content; interrupted erasures resume."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest

from context_engine.audit.models import AuditFilter
from context_engine.auth import create_key
from context_engine.cache.keys import user_prefix
from context_engine.errors import Forbidden
from context_engine.models.domain import Principal, Role
from context_engine.services import audit, governance

SECRET = "blue elephant"  # text only u1 ever wrote


def seed(writer, tenant: str):  # type: ignore[no-untyped-def]
    rt = writer.rt
    t1 = writer.turn("s-u1-a", "u1", f"My code word is {SECRET}. Remember it.", "Noted, I will remember.")
    writer.turn("s-u1-a", "u1", "What is the weather like in Lisbon?", "Sunny.")
    writer.turn("s-u1-b", "u1", f"Also {SECRET} is my favourite animal pair.", "Lovely.")
    writer.tool_call("s-u1-a", "u1", "call-1", {"city": "Lisbon"}, {"forecast": f"sunny, {SECRET}"})
    writer.memory("u1", f"u1 code word: {SECRET}")
    writer.memory("u1", f"shared fact from u1: {SECRET}", visibility="agent")
    writer.memory(None, f"derived from u1 turn: {SECRET}", visibility="agent", sources=[t1])
    # u2's data, including a session whose summary also covers a turn of u1.
    writer.turn("s-u2", "u2", "I prefer green tea in the morning.", "Green tea it is.")
    with rt.db.tenant(tenant) as conn:
        conn.execute("update sessions set last_seq = last_seq + 1, turn_count = turn_count + 1"
                     " where tenant_id = %s and id = 's-u2'", [tenant])
        conn.execute(
            "insert into turns (tenant_id, id, session_id, agent_id, user_id, seq, question, answer, occurred_at,"
            " token_count, search_text) values (%s, %s, 's-u2', 'agent-1', 'u1', 2, %s, 'ok', now(), 9, %s)",
            [tenant, uuid4(), f"u1 joins: {SECRET} forever", f"u1 joins: {SECRET} forever"])
    writer.turn("s-u2", "u2", "My meeting with the dentist is on Friday.", "I will remind you.")
    with rt.db.tenant(tenant) as conn:
        conn.execute(
            "update context_windows set summary = %s, summary_seqs = '{1,2,3}', summary_covers_seq = 3,"
            " summary_tokens = 64, strategy = 'summarize' where tenant_id = %s and session_id = 's-u2'",
            [f"u2 prefers green tea. u1 said {SECRET} forever. u2 sees the dentist on Friday.", tenant])
        conn.execute("insert into jobs (tenant_id, id, kind, status, resource, result) values"
                     " (%s, %s, 'compress', 'succeeded', %s, %s)",
                     [tenant, uuid4(), json.dumps({"session_id": "s-u2", "user_id": "u2"}),
                      json.dumps({"staged": {"summary": f"{SECRET} staged"}})])
    writer.memory("u2", "u2 likes green tea")
    writer.turn("s-u3", "u3", "Book a table for two.", "Done.", agent="agent-2")
    from context_engine.services import indexing

    indexing.index_pending(rt, tenant)
    for user, agent in (("u1", "agent-1"), ("u2", "agent-1"), ("u3", "agent-2")):
        rt.cache.set(user_prefix(tenant, agent, user) + "s:w1:key", b"cached context", 300)


def count(rt, tenant: str, sql: str, *args: object) -> int:  # type: ignore[no-untyped-def]
    with rt.db.tenant(tenant) as conn:
        return int(conn.execute(sql, [tenant, *args]).fetchone()["n"])


def u1_rows(rt, tenant: str) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return {
        "sessions": count(rt, tenant, "select count(*) n from sessions where tenant_id = %s and user_id = 'u1'"),
        "turns": count(rt, tenant, "select count(*) n from turns where tenant_id = %s and user_id = 'u1'"),
        "tool_calls": count(rt, tenant, "select count(*) n from tool_calls where tenant_id = %s and user_id = 'u1'"),
        "memories": count(rt, tenant, "select count(*) n from memories where tenant_id = %s and content like %s",
                          f"%{SECRET}%"),
        "terms": count(rt, tenant, "select count(*) n from search_term_stats where tenant_id = %s and user_id = 'u1'"),
        "secret_anywhere": count(
            rt, tenant, "select (select count(*) from context_windows where tenant_id = %s and summary like %s)"
                        " + (select count(*) from jobs where tenant_id = %s and result::text like %s) as n",
            f"%{SECRET}%", tenant, f"%{SECRET}%"),
    }


def test_erase_removes_the_user_everywhere_and_keeps_the_others(writer, admin, manual_jobs) -> None:  # type: ignore[no-untyped-def]
    rt, tenant = writer.rt, admin.tenant_id
    seed(writer, tenant)
    exported = governance.request_export(rt, admin, "u1")
    done = governance.run_job(rt, tenant, exported.job_id)
    assert done is not None
    export_path = Path(done.result["location"]["path"])
    assert export_path.exists()
    before = u1_rows(rt, tenant)
    assert before["sessions"] == 2 and before["turns"] == 4 and before["terms"] > 0 and before["memories"] == 3

    accepted = governance.request_erase(rt, admin, "u1", request_id="req-erase-1")
    job = governance.run_job(rt, tenant, accepted.job_id)

    assert job is not None and job.status == "succeeded"
    after = u1_rows(rt, tenant)
    assert after == {k: 0 for k in after}
    assert not export_path.exists()
    counts = job.result["steps"]
    assert counts["sessions"] == {"sessions": 2, "turns": 3, "tool_calls": 1}
    assert counts["memories"] == {"memories": 3}
    assert counts["mixed_sessions"]["turns"] == 1
    assert counts["mixed_sessions"]["summaries_rebuilt"] == 1
    # u2's session keeps its own turns and gets a summary rebuilt from them only.
    with rt.db.tenant(tenant) as conn:
        u2_turns = conn.execute("select seq, user_id from turns where tenant_id = %s and session_id = 's-u2'"
                                " order by seq", [tenant]).fetchall()
        window = conn.execute("select summary, summary_seqs from context_windows where tenant_id = %s"
                              " and session_id = 's-u2'", [tenant]).fetchone()
        session = conn.execute("select turn_count from sessions where tenant_id = %s and id = 's-u2'",
                               [tenant]).fetchone()
    assert [(r["seq"], r["user_id"]) for r in u2_turns] == [(1, "u2"), (3, "u2")]
    assert session["turn_count"] == 2
    assert window["summary"] and SECRET not in window["summary"]
    assert "tea" in window["summary"] or "dentist" in window["summary"]
    assert sorted(window["summary_seqs"]) == [1, 3]
    assert count(rt, tenant, "select count(*) n from memories where tenant_id = %s and user_id = 'u2'") == 1
    # Cache: u1's entries, and every entry of agent-1 (u1's shared memory was in them); not agent-2's.
    assert rt.cache.get(user_prefix(tenant, "agent-1", "u1") + "s:w1:key") is None
    assert rt.cache.get(user_prefix(tenant, "agent-1", "u2") + "s:w1:key") is None
    assert rt.cache.get(user_prefix(tenant, "agent-2", "u3") + "s:w1:key") == b"cached context"
    # The erasure is audited with counts and without any content.
    audit.append_pending(rt, tenant)
    erased = audit.query(rt, admin, AuditFilter(action="user.erased"), cursor=None, limit=10, newest_first=False)
    assert len(erased.items) == 1
    rec = erased.items[0]
    assert rec.resource_id == "u1" and rec.request_id == "req-erase-1"
    assert rec.details["counts"]["turns"] == 4 and rec.details["requested_by"] == admin.key_id
    whole_log = audit.query(rt, admin, AuditFilter(), cursor=None, limit=500, newest_first=False)
    assert SECRET not in whole_log.model_dump_json()
    # UserErased is in the outbox for the pipeline (audit queue, index consumers).
    assert count(rt, tenant, "select count(*) n from outbox where tenant_id = %s and detail_type = 'UserErased'") == 1


def _job(rt, tenant, job_id):  # type: ignore[no-untyped-def]
    from context_engine.repos import jobs

    with rt.db.tenant(tenant) as conn:
        return jobs.get(conn, tenant, job_id)


class Crash(Exception):
    pass


def test_an_erase_interrupted_half_way_resumes_and_completes(writer, admin, manual_jobs) -> None:  # type: ignore[no-untyped-def]
    rt, tenant = writer.rt, admin.tenant_id
    seed(writer, tenant)

    def crash_after_mixed_sessions(step: str) -> None:
        if step == "mixed_sessions":
            raise Crash("power cut")

    accepted = governance.request_erase(rt, admin, "u1")
    with pytest.raises(Crash):
        governance.run_job(rt, tenant, accepted.job_id, after_step=crash_after_mixed_sessions)
    half = _job(rt, tenant, accepted.job_id)
    assert half.status == "failed" and half.error == {"code": "job_failed", "type": "Crash"}
    assert set(half.result["steps"]) == {"plan", "memories", "mixed_sessions"}
    mid = u1_rows(rt, tenant)
    assert mid["memories"] == 0 and mid["sessions"] == 2  # half-way: memories gone, own sessions not yet

    again = governance.request_erase(rt, admin, "u1")  # the DELETE repeated: same job, resumed
    assert again.job_id == accepted.job_id
    steps_run: list[str] = []
    job = governance.run_job(rt, tenant, accepted.job_id, after_step=steps_run.append)
    assert job is not None and job.status == "succeeded"
    assert steps_run == ["sessions", "leftovers", "search_index", "cache", "finish"]
    assert u1_rows(rt, tenant) == {k: 0 for k in u1_rows(rt, tenant)}
    assert job.result["steps"]["memories"] == {"memories": 3}  # counted once, by the first run
    assert count(rt, tenant, "select count(*) n from outbox where tenant_id = %s and detail_type = 'UserErased'") == 1


def test_the_schedule_resumes_a_failed_erasure(writer, admin, manual_jobs, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    rt, tenant = writer.rt, admin.tenant_id
    seed(writer, tenant)
    accepted = governance.request_erase(rt, admin, "u1")
    with pytest.raises(Crash):
        governance.run_job(rt, tenant, accepted.job_id,
                           after_step=lambda s: (_ for _ in ()).throw(Crash()) if s == "sessions" else None)
    monkeypatch.setenv("CONTEXT_ENGINE_JOB_STALE_S", "30")
    from context_engine.governance.settings import get_governance_settings

    get_governance_settings.cache_clear()
    with rt.db.tenant(tenant) as conn:  # as if the failure was a while ago
        conn.execute("update jobs set updated_at = now() - interval '1 hour' where tenant_id = %s and id = %s",
                     [tenant, accepted.job_id])
    summary = governance.run_schedule(rt)
    assert summary["resumed_jobs"] >= 1
    assert _job(rt, tenant, accepted.job_id).status == "succeeded"
    assert u1_rows(rt, tenant)["turns"] == 0


def test_erasing_twice_is_harmless(writer, admin, manual_jobs) -> None:  # type: ignore[no-untyped-def]
    rt, tenant = writer.rt, admin.tenant_id
    seed(writer, tenant)
    first = governance.request_erase(rt, admin, "u1")
    governance.run_job(rt, tenant, first.job_id)
    second = governance.request_erase(rt, admin, "u1")
    assert second.job_id != first.job_id  # the first finished: a new (empty) erasure
    job = governance.run_job(rt, tenant, second.job_id)
    assert job is not None and job.status == "succeeded"
    assert job.result["steps"]["sessions"] == {"sessions": 0, "turns": 0, "tool_calls": 0}
    assert governance.run_job(rt, tenant, second.job_id) is None  # a finished job does not run again


@pytest.mark.parametrize("role", [Role.writer, Role.reader, Role.auditor])
def test_only_admins_export_and_erase(gov_runtime, tenant_id, role) -> None:  # type: ignore[no-untyped-def]
    key_id, _ = create_key(gov_runtime.db, tenant_id, role)
    caller = Principal(tenant_id=tenant_id, key_id=key_id, role=role)
    with pytest.raises(Forbidden):
        governance.request_erase(gov_runtime, caller, "u1")
    with pytest.raises(Forbidden):
        governance.request_export(gov_runtime, caller, "u1")


def test_an_agent_scoped_admin_key_cannot_export_or_erase(gov_runtime, tenant_id) -> None:  # type: ignore[no-untyped-def]
    key_id, _ = create_key(gov_runtime.db, tenant_id, Role.admin, agent_id="agent-1")
    scoped = Principal(tenant_id=tenant_id, key_id=key_id, role=Role.admin, agent_id="agent-1")
    with pytest.raises(Forbidden, match="tenant-wide"):
        governance.request_erase(gov_runtime, scoped, "u1")
    with pytest.raises(Forbidden, match="tenant-wide"):
        governance.request_export(gov_runtime, scoped, "u1")
    assert datetime.now(UTC)  # no job was created
    with gov_runtime.db.tenant(tenant_id) as conn:
        assert conn.execute("select count(*) n from jobs where tenant_id = %s", [tenant_id]).fetchone()["n"] == 0
