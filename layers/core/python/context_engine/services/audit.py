"""The audit trail: taking records in, appending them to each tenant's hash chain, querying
and verifying it.

Records come from three places and all go through the intake (``audit_intake``):

- domain events, from the audit queue's consumer (``ingest_event``, in the consumer's
  exactly-once transaction; the entry id is the event id);
- API requests: every mutating call and every read of private data, with the caller,
  outcome, request id and trace id (``context_engine.audit.http`` → ``record``);
- governance work (export, erase, retention purges) via ``record``.

``append_pending`` moves a tenant's intake into its chain in order. It runs after each
audit-queue batch, every minute on a schedule (the ``audit`` function; locally the
``serve`` loop), and before an audit query, so GET /v1/audit shows everything taken in.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import ValidationError

from context_engine.audit import store
from context_engine.audit.chain import ChainBreak, StoredAuditRecord, verify_chain
from context_engine.audit.events import entry_for_event
from context_engine.audit.models import (
    AuditEntry,
    AuditFilter,
    AuditPage,
    BrokenLink,
    VerifyReport,
)
from context_engine.db.database import Conn
from context_engine.errors import ValidationFailed
from context_engine.events.envelope import EventEnvelope
from context_engine.models.domain import Principal
from context_engine.runtime import Runtime
from context_engine.services.authz import Action, require

log = logging.getLogger(__name__)

MAX_APPEND_BATCHES = 200  # one call appends at most this many batches; the next call continues


def record(rt: Runtime, tenant_id: str, entries: Sequence[AuditEntry], *, durable: bool = True) -> int:
    """Take entries into the intake in their own (small) transaction. ``durable=False`` skips
    waiting for the WAL flush at commit (see GovernanceSettings.audit_access_commit)."""
    with rt.db.tenant(tenant_id) as conn:
        if not durable:
            conn.execute("set local synchronous_commit = off")
        return store.add(conn, tenant_id, entries)


def record_in(conn: Conn, tenant_id: str, entries: Sequence[AuditEntry]) -> int:
    """Take entries into the intake inside the caller's transaction: they commit (or roll
    back) together with the change they describe."""
    return store.add(conn, tenant_id, entries)


def ingest_event(conn: Conn, envelope: EventEnvelope) -> bool:
    """The audit queue's consumer calls this for every domain event, in the transaction that
    claims the event. True when the event was new to the intake."""
    return store.add(conn, envelope.tenant_id, [entry_for_event(envelope)]) > 0


def append_pending(rt: Runtime, tenant_id: str, *, max_batches: int = MAX_APPEND_BATCHES) -> int:
    """Append the tenant's intake to its chain, a batch per transaction; returns how many
    intake rows were consumed."""
    total = 0
    for _ in range(max_batches):
        with rt.db.tenant(tenant_id) as conn:
            n = store.append_batch(conn, tenant_id)
        total += n
        if n < store.APPEND_BATCH:
            break
    return total


def append_all_pending(rt: Runtime, *, max_tenants: int = 1000) -> dict[str, int]:
    """The scheduled appender: every tenant with pending intake. A failing tenant is logged
    and skipped so it cannot hold the others back; its rows stay in the intake."""
    with rt.db.unscoped() as conn:
        tenants = store.pending_tenants(conn, max_tenants)
    appended: dict[str, int] = {}
    for tenant in tenants:
        try:
            appended[tenant] = append_pending(rt, tenant)
        except Exception:
            log.exception("audit append failed", extra={"tenant_id": tenant})
    from context_engine.observability.powertools import metrics

    metrics.add_metric(name="AuditRecordsAppended", unit=MetricUnit.Count, value=sum(appended.values()))
    if len(appended) < len(tenants):
        metrics.add_metric(name="AuditAppendFailures", unit=MetricUnit.Count, value=len(tenants) - len(appended))
    return appended


# --- queries ----------------------------------------------------------------------------
def _cursor(value: str | None, newest_first: bool) -> int | None:
    if value is None:
        return None
    direction, _, seq = value.partition(":")
    if direction != ("d" if newest_first else "a") or not seq.isdigit():
        raise ValidationFailed("cursor does not belong to this query order",
                               details=[{"loc": ["query", "cursor"]}])
    return int(seq)


def query(rt: Runtime, principal: Principal, f: AuditFilter, *, cursor: str | None, limit: int,
          newest_first: bool) -> AuditPage:
    require(principal, Action.audit)
    tenant = principal.tenant_id
    after = _cursor(cursor, newest_first)
    try:
        append_pending(rt, tenant)
    except Exception:  # the stored chain is still readable; "pending" tells what is missing
        log.exception("audit append before query failed", extra={"tenant_id": tenant})
    with rt.db.tenant(tenant) as conn:
        items = store.query(conn, tenant, f, after_seq=None if newest_first else after,
                            before_seq=after if newest_first else None, limit=limit + 1, newest_first=newest_first)
        pending = store.pending_count(conn, tenant)
    more = len(items) > limit
    items = items[:limit]
    next_cursor = f"{'d' if newest_first else 'a'}:{items[-1].seq}" if more and items else None
    return AuditPage(items=items, next_cursor=next_cursor, pending=pending)


class _Unreadable(Exception):
    def __init__(self, seq: int, record_id: str | None, reason: str) -> None:
        super().__init__(reason)
        self.seq, self.record_id, self.reason = seq, record_id, reason


def _records(conn: Conn, tenant_id: str, stop: list[_Unreadable]) -> Iterator[StoredAuditRecord]:
    """The chain; a stored row that is not even a valid record (tampered into an invalid
    shape) ends the iteration and is reported as the break."""
    after = 0
    while True:
        rows = conn.execute(
            f"select {store.LOG_COLS} from audit_log where tenant_id = %s and seq > %s order by seq limit 2000",
            [tenant_id, after],
        ).fetchall()
        for r in rows:
            try:
                yield store.stored_record(tenant_id, r)
            except ValidationError as exc:
                stop.append(_Unreadable(int(r["seq"]), r.get("id"), f"not a valid audit record ({exc.error_count()} "
                                                                    "field errors)"))
                return
        if len(rows) < 2000:
            return
        after = int(rows[-1]["seq"])


def verify(rt: Runtime, principal: Principal) -> VerifyReport:
    """Recompute the tenant's whole chain and compare its end with the anchored head."""
    require(principal, Action.audit)
    tenant = principal.tenant_id
    with rt.db.tenant(tenant) as conn:
        # Holding the appenders' lock keeps the head still while the chain is read; the
        # intake keeps taking records meanwhile, so writers never wait on a verification.
        store.lock_chain(conn, tenant)
        head = store.head(conn, tenant)
        unreadable: list[_Unreadable] = []
        result = verify_chain(_records(conn, tenant, unreadable), expected_head_hash=head.hash if head else None)
    if unreadable and (result.ok or result.reason is ChainBreak.HEAD_MISMATCH):
        bad = unreadable[0]
        return VerifyReport(ok=False, checked=result.checked, head=head, last_hash=result.last_hash,
                            first_broken=BrokenLink(seq=bad.seq, id=bad.record_id, reason=ChainBreak.HASH_MISMATCH,
                                                    detail=bad.reason))
    broken = None if result.ok else BrokenLink(seq=result.first_broken_seq, id=result.first_broken_id,
                                                reason=result.reason or ChainBreak.HASH_MISMATCH,
                                                detail=result.detail)
    return VerifyReport(ok=result.ok, checked=result.checked, first_broken=broken, head=head,
                        last_hash=result.last_hash)
