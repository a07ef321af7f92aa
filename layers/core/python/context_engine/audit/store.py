"""Audit storage: the intake, the appender that seals intake rows into the chain, queries
and chain reads. Every function takes a tenant-scoped connection (``Database.tenant``).

Appending is serialised per tenant twice over: a transaction-scoped advisory lock keeps
two appenders of one tenant from even trying at once, and the ``audit_log_link`` trigger
(0004_governance.sql) rejects any insert that does not extend the head by one. A chain
therefore never forks, and intake order is chain order.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from context_engine.audit.chain import StoredAuditRecord, seal
from context_engine.audit.models import AuditEntry, AuditFilter, AuditRecordOut, ChainHead
from context_engine.db.database import Conn

_FIELDS = ("occurred_at", "actor", "role", "action", "resource_type", "resource_id", "outcome", "request_id",
           "trace_id", "details")
LOG_COLS = "seq, id, " + ", ".join(_FIELDS) + ", prev_hash, hash, recorded_at"
APPEND_BATCH = 500


def add(conn: Conn, tenant_id: str, entries: Sequence[AuditEntry]) -> int:
    """Take entries into the intake (the caller's transaction); entries whose id was taken
    in before are ignored. Returns how many were new. Validates each entry as a chain record
    first, so nothing that could never be sealed is stored."""
    if not entries:
        return 0
    rows = []
    for e in entries:
        e.to_record(tenant_id, 1)  # validation only: seq is assigned when appended
        rows.append([tenant_id, e.id, e.occurred_at, e.actor, e.role, e.action, e.resource_type, e.resource_id,
                     e.outcome.value, e.request_id, e.trace_id, json.dumps(e.details)])
    added = 0
    with conn.cursor() as cur:
        for row in rows:
            cur.execute(
                "insert into audit_intake (tenant_id, record_id, " + ", ".join(_FIELDS) + ")"
                " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) on conflict do nothing",
                row,
            )
            added += cur.rowcount
    return added


def pending_count(conn: Conn, tenant_id: str) -> int:
    row = conn.execute("select count(*) as n from audit_intake where tenant_id = %s", [tenant_id]).fetchone()
    return int(row["n"]) if row else 0


def pending_tenants(conn: Conn, limit: int = 1000) -> list[str]:
    """Tenants with intake rows waiting (any tenant: through a SECURITY DEFINER function)."""
    return [r["t"] for r in conn.execute("select ce_audit_pending_tenants(%s) as t", [limit]).fetchall()]


def lock_chain(conn: Conn, tenant_id: str) -> None:
    """Serialise appenders of one tenant until the transaction ends."""
    conn.execute("select pg_advisory_xact_lock(hashtextextended('ce_audit:' || %s, 0))", [tenant_id])


def head(conn: Conn, tenant_id: str) -> ChainHead | None:
    row = conn.execute("select seq, hash from audit_heads where tenant_id = %s", [tenant_id]).fetchone()
    return ChainHead(seq=int(row["seq"]), hash=row["hash"]) if row else None


def stored_record(tenant_id: str, row: dict[str, Any]) -> StoredAuditRecord:
    data = {k: row[k] for k in ("seq", "id", *_FIELDS, "prev_hash", "hash")}
    return StoredAuditRecord.model_validate({**data, "tenant_id": tenant_id})


def record_at(conn: Conn, tenant_id: str, seq: int) -> StoredAuditRecord | None:
    row = conn.execute(f"select {LOG_COLS} from audit_log where tenant_id = %s and seq = %s",
                       [tenant_id, seq]).fetchone()
    return stored_record(tenant_id, row) if row else None


def append_batch(conn: Conn, tenant_id: str, limit: int = APPEND_BATCH) -> int:
    """Seal up to ``limit`` intake rows (oldest first) into the chain and remove them from
    the intake, all in the caller's transaction. Returns how many intake rows were consumed
    (a row whose id is already in the chain — a redelivered event — is dropped unsealed)."""
    lock_chain(conn, tenant_id)
    rows = conn.execute(
        "select id as intake_id, record_id, " + ", ".join(_FIELDS) +
        " from audit_intake where tenant_id = %s order by id limit %s",
        [tenant_id, limit],
    ).fetchall()
    if not rows:
        return 0
    known = {r["id"] for r in conn.execute(
        "select id from audit_log where tenant_id = %s and id = any(%s)",
        [tenant_id, [r["record_id"] for r in rows]]).fetchall()}
    current = head(conn, tenant_id)
    prev = record_at(conn, tenant_id, current.seq) if current else None
    if current is not None and prev is None:
        raise RuntimeError(f"audit head of {tenant_id} names seq {current.seq}, which is missing")
    sealed: list[StoredAuditRecord] = []
    for r in rows:
        if r["record_id"] in known:
            continue
        known.add(r["record_id"])  # the same id twice in one batch is sealed once
        entry = AuditEntry(id=r["record_id"], **{k: r[k] for k in _FIELDS})
        rec = seal(entry.to_record(tenant_id, (prev.seq if prev else 0) + 1), prev)
        sealed.append(rec)
        prev = rec
    with conn.cursor() as cur:
        # One row at a time: the link trigger checks each against the head the previous one set.
        for rec in sealed:
            cur.execute(
                "insert into audit_log (tenant_id, seq, id, " + ", ".join(_FIELDS) + ", prev_hash, hash)"
                " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [tenant_id, rec.seq, rec.id, rec.occurred_at, rec.actor, rec.role, rec.action, rec.resource_type,
                 rec.resource_id, rec.outcome.value, rec.request_id, rec.trace_id, json.dumps(rec.details),
                 rec.prev_hash, rec.hash],
            )
    conn.execute("delete from audit_intake where tenant_id = %s and id = any(%s)",
                 [tenant_id, [r["intake_id"] for r in rows]])
    return len(rows)


def iter_chain(conn: Conn, tenant_id: str, page: int = 2000) -> Iterator[StoredAuditRecord]:
    """The whole chain in seq order, read in pages (keyset on seq)."""
    after = 0
    while True:
        rows = conn.execute(
            f"select {LOG_COLS} from audit_log where tenant_id = %s and seq > %s order by seq limit %s",
            [tenant_id, after, page],
        ).fetchall()
        for r in rows:
            yield stored_record(tenant_id, r)
        if len(rows) < page:
            return
        after = int(rows[-1]["seq"])


def query(conn: Conn, tenant_id: str, f: AuditFilter, *, after_seq: int | None, before_seq: int | None,
          limit: int, newest_first: bool) -> list[AuditRecordOut]:
    where = ["tenant_id = %s"]
    args: list[Any] = [tenant_id]
    for column, value in (("actor", f.actor), ("action", f.action), ("resource_type", f.resource_type),
                          ("resource_id", f.resource_id)):
        if value is not None:
            where.append(f"{column} = %s")
            args.append(value)
    if f.user_id is not None:
        where.append("details->>'user_id' = %s")
        args.append(f.user_id)
    if f.since is not None:
        where.append("occurred_at >= %s")
        args.append(f.since)
    if f.until is not None:
        where.append("occurred_at < %s")
        args.append(f.until)
    if after_seq is not None:
        where.append("seq > %s")
        args.append(after_seq)
    if before_seq is not None:
        where.append("seq < %s")
        args.append(before_seq)
    order = "desc" if newest_first else "asc"
    rows = conn.execute(
        f"select {LOG_COLS} from audit_log where {' and '.join(where)} order by seq {order} limit %s",
        [*args, limit],
    ).fetchall()
    return [AuditRecordOut(**r) for r in rows]


def about_subject(
    conn: Conn, tenant_id: str, user_id: str, resources: dict[str, Sequence[str]]
) -> list[AuditRecordOut]:
    """Records about one person: those naming them (details.user_id, or the user resource)
    and those about their resources (e.g. ``{"session": [...], "memory": [...]}``)."""
    clauses = ["details->>'user_id' = %s", "(resource_type = 'user' and resource_id = %s)"]
    args: list[Any] = [tenant_id, user_id, user_id]
    for resource_type, ids in resources.items():
        if ids:
            clauses.append("(resource_type = %s and resource_id = any(%s))")
            args.extend([resource_type, list(ids)])
    rows = conn.execute(
        f"select {LOG_COLS} from audit_log where tenant_id = %s and ({' or '.join(clauses)}) order by seq",
        args,
    ).fetchall()
    return [AuditRecordOut(**r) for r in rows]
