"""The audit log in PostgreSQL: append-only for the application role, chained per tenant
without forks, queryable, and verifiable down to the first tampered record."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from context_engine.audit import store
from context_engine.audit.chain import GENESIS_HASH, AuditOutcome, ChainBreak
from context_engine.audit.models import AuditEntry, AuditFilter
from context_engine.auth import create_key
from context_engine.errors import Forbidden
from context_engine.events.envelope import EventEnvelope
from context_engine.models.domain import Principal, Role
from context_engine.services import audit


def entry(i: int, **over: object) -> AuditEntry:
    data: dict[str, object] = {"actor": f"key_{i % 3}", "role": "writer", "action": "turn.write",
                               "resource_type": "turn", "resource_id": f"turn-{i}",
                               "details": {"user_id": f"u{i % 2}", "status": 201}}
    data.update(over)
    return AuditEntry(**data)  # type: ignore[arg-type]


def principal(runtime, tenant_id: str, role: Role) -> Principal:  # type: ignore[no-untyped-def]
    key_id, _ = create_key(runtime.db, tenant_id, role)
    return Principal(tenant_id=tenant_id, key_id=key_id, role=role)


def test_appended_records_form_one_chain_from_genesis(runtime, admin) -> None:  # type: ignore[no-untyped-def]
    tenant = admin.tenant_id
    audit.record(runtime, tenant, [entry(i) for i in range(7)])
    assert audit.append_pending(runtime, tenant) == 7
    with runtime.db.tenant(tenant) as conn:
        chain = list(store.iter_chain(conn, tenant))
        head = store.head(conn, tenant)
        assert store.pending_count(conn, tenant) == 0
    assert [r.seq for r in chain] == list(range(1, 8))
    assert chain[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in zip(chain, chain[1:], strict=False))
    assert head is not None and (head.seq, head.hash) == (7, chain[-1].hash)
    report = audit.verify(runtime, admin)
    assert report.ok and report.checked == 7 and report.first_broken is None


def test_a_redelivered_event_is_audited_once(runtime, admin) -> None:  # type: ignore[no-untyped-def]
    tenant = admin.tenant_id
    event = EventEnvelope(detail_type="TurnWritten", tenant_id=tenant, detail={
        "session_id": "s1", "turn_id": str(uuid.uuid4()), "seq": 1, "agent_id": "a", "user_id": "u1",
        "token_count": 5, "window_version": 2})
    with runtime.db.tenant(tenant) as conn:
        assert audit.ingest_event(conn, event) is True
    audit.append_pending(runtime, tenant)
    with runtime.db.tenant(tenant) as conn:  # redelivered after its intake row was appended
        assert audit.ingest_event(conn, event) is True
        assert audit.ingest_event(conn, event) is False  # and twice before the next append
    audit.append_pending(runtime, tenant)
    page = audit.query(runtime, admin, AuditFilter(action="event.TurnWritten"), cursor=None, limit=50,
                       newest_first=False)
    assert len(page.items) == 1
    rec = page.items[0]
    assert rec.id == str(event.event_id) and rec.resource_type == "turn"
    assert rec.details["user_id"] == "u1" and rec.actor == "system"


def test_concurrent_appenders_never_fork_the_chain(runtime, admin) -> None:  # type: ignore[no-untyped-def]
    tenant = admin.tenant_id
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(15):
                audit.record(runtime, tenant, [entry(n * 100 + i)])
                audit.append_pending(runtime, tenant)
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    audit.append_pending(runtime, tenant)
    report = audit.verify(runtime, admin)
    assert report.ok and report.checked == 60
    with runtime.db.tenant(tenant) as conn:
        ids = [r.id for r in store.iter_chain(conn, tenant)]
    assert len(set(ids)) == 60


def test_the_application_role_cannot_change_or_delete_records(runtime, admin) -> None:  # type: ignore[no-untyped-def]
    tenant = admin.tenant_id
    audit.record(runtime, tenant, [entry(1)])
    audit.append_pending(runtime, tenant)
    for sql in ("update audit_log set actor = 'someone' where tenant_id = %s",
                "delete from audit_log where tenant_id = %s",
                "update audit_heads set seq = 0 where tenant_id = %s"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), runtime.db.tenant(tenant) as conn:
            conn.execute(sql, [tenant])
    # Even the owner hits the trigger: the log is append-only for everybody.
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"), runtime.db.owner() as conn:
        conn.execute("delete from audit_log where tenant_id = %s", [tenant])


def test_an_insert_that_does_not_extend_the_head_is_rejected(runtime, admin) -> None:  # type: ignore[no-untyped-def]
    tenant = admin.tenant_id
    audit.record(runtime, tenant, [entry(1)])
    audit.append_pending(runtime, tenant)
    with pytest.raises(psycopg.errors.IntegrityConstraintViolation), runtime.db.tenant(tenant) as conn:
        conn.execute(
            "insert into audit_log (tenant_id, seq, id, occurred_at, actor, role, action, resource_type, outcome,"
            " details, prev_hash, hash) values (%s, 2, 'forged', now(), 'x', 'x', 'x', 'x', 'success', '{}', %s, %s)",
            [tenant, GENESIS_HASH, "a" * 64])


def test_verify_names_exactly_the_tampered_record(runtime, admin) -> None:  # type: ignore[no-untyped-def]
    tenant = admin.tenant_id
    audit.record(runtime, tenant, [entry(i) for i in range(10)])
    audit.append_pending(runtime, tenant)
    assert audit.verify(runtime, admin).ok
    with runtime.db.owner() as conn:  # the owner bypasses the trigger the way an attacker with DBA rights would
        conn.execute("set local session_replication_role = replica")
        conn.execute("update audit_log set details = details || '{\"status\": 200}'::jsonb"
                     " where tenant_id = %s and seq = 6", [tenant])
    report = audit.verify(runtime, admin)
    assert not report.ok
    assert report.first_broken is not None
    assert report.first_broken.seq == 6 and report.first_broken.reason is ChainBreak.HASH_MISMATCH
    assert report.checked == 5


def test_verify_catches_deleted_newest_records_against_the_head(runtime, admin) -> None:  # type: ignore[no-untyped-def]
    tenant = admin.tenant_id
    audit.record(runtime, tenant, [entry(i) for i in range(4)])
    audit.append_pending(runtime, tenant)
    with runtime.db.owner() as conn:
        conn.execute("set local session_replication_role = replica")
        conn.execute("delete from audit_log where tenant_id = %s and seq = 4", [tenant])
    report = audit.verify(runtime, admin)
    assert not report.ok and report.first_broken is not None
    assert report.first_broken.reason is ChainBreak.HEAD_MISMATCH and report.first_broken.seq == 4


def test_query_filters_and_pages_with_a_cursor(runtime, admin) -> None:  # type: ignore[no-untyped-def]
    tenant = admin.tenant_id
    t0 = datetime.now(UTC) - timedelta(hours=1)
    entries = [entry(i, occurred_at=t0 + timedelta(minutes=i)) for i in range(12)]
    entries.append(entry(99, action="memory.delete", resource_type="memory", resource_id="m-1",
                         outcome=AuditOutcome.DENIED))
    audit.record(runtime, tenant, entries)
    seen: list[int] = []
    cursor = None
    while True:
        page = audit.query(runtime, admin, AuditFilter(action="turn.write"), cursor=cursor, limit=5,
                           newest_first=False)
        seen.extend(r.seq for r in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == list(range(1, 13))
    newest = audit.query(runtime, admin, AuditFilter(), cursor=None, limit=2, newest_first=True)
    assert [r.seq for r in newest.items] == [13, 12] and newest.next_cursor == "d:12"
    older = audit.query(runtime, admin, AuditFilter(), cursor=newest.next_cursor, limit=2, newest_first=True)
    assert [r.seq for r in older.items] == [11, 10]
    by_actor = audit.query(runtime, admin, AuditFilter(actor="key_1"), cursor=None, limit=50, newest_first=False)
    assert {r.actor for r in by_actor.items} == {"key_1"} and len(by_actor.items) == 4
    denied = audit.query(runtime, admin, AuditFilter(resource_type="memory", resource_id="m-1"), cursor=None,
                         limit=50, newest_first=False)
    assert [(r.action, r.outcome) for r in denied.items] == [("memory.delete", AuditOutcome.DENIED)]
    window = audit.query(runtime, admin, AuditFilter(since=t0 + timedelta(minutes=3), until=t0 + timedelta(minutes=6)),
                         cursor=None, limit=50, newest_first=False)
    assert [r.resource_id for r in window.items] == ["turn-3", "turn-4", "turn-5"]
    subject = audit.query(runtime, admin, AuditFilter(user_id="u1", action="turn.write"), cursor=None, limit=50,
                          newest_first=False)
    assert len(subject.items) == 6


def test_tenants_never_see_each_others_records(runtime, admin) -> None:  # type: ignore[no-untyped-def]
    other = principal(runtime, f"t-{uuid.uuid4().hex[:12]}", Role.admin)
    audit.record(runtime, admin.tenant_id, [entry(1)])
    audit.record(runtime, other.tenant_id, [entry(2), entry(3)])
    mine = audit.query(runtime, admin, AuditFilter(), cursor=None, limit=50, newest_first=False)
    theirs = audit.query(runtime, other, AuditFilter(), cursor=None, limit=50, newest_first=False)
    assert [r.resource_id for r in mine.items] == ["turn-1"]
    assert [r.resource_id for r in theirs.items] == ["turn-2", "turn-3"]
    assert audit.verify(runtime, other).checked == 2


@pytest.mark.parametrize("role", [Role.writer, Role.reader])
def test_only_auditors_and_admins_read_the_log(runtime, tenant_id, role) -> None:  # type: ignore[no-untyped-def]
    caller = principal(runtime, tenant_id, role)
    with pytest.raises(Forbidden):
        audit.query(runtime, caller, AuditFilter(), cursor=None, limit=10, newest_first=False)
    with pytest.raises(Forbidden):
        audit.verify(runtime, caller)
    auditor = principal(runtime, tenant_id, Role.auditor)
    assert audit.verify(runtime, auditor).ok


def test_entries_with_content_fields_are_refused_at_intake(runtime, admin) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="never go into audit details"):
        audit.record(runtime, admin.tenant_id, [entry(1, details={"question": "my card is 4111..."})])
