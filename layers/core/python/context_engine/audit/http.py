"""Request audit: one record per mutating call and per read of private data, with the caller,
the outcome (success, denied, not_found, failed), the request id and the trace id.

``audited`` wraps a route's view (``api.routes.route`` applies it to every route), so a
route added later is covered without anyone remembering to: mutating methods are audited
by default, reads only when ``ROUTES`` declares them private.

Failure policy: a private read whose access record cannot be stored answers 503 and
releases no data (no access without a record). A mutation has already committed when its
record is written; a failure there is logged and counted, and the change itself is still
audited through its domain event (outbox → audit queue).

A mutation whose effect is one transaction can take its success record into that very
transaction (``record_in_transaction``, called by the service just before it commits): the
record then commits or rolls back with the change, and the request pays one commit instead
of two. The wrapper sees that and writes nothing more; a request that fails (rolled back, or
denied before any transaction) still gets its own denied/failed record afterwards.

Cost on the read path: one INSERT into ``audit_intake`` and its commit on a pooled connection
(no chain work: the appender seals records later, in order). The commit's WAL flush dominates
(≈3.5 ms p50 on the embedded default, ≈0.1 ms for the transaction without it); deployments that
accept losing the last fraction of a second of access records in a database-server crash can
set ``CONTEXT_ENGINE_AUDIT_ACCESS_COMMIT=async`` (≈0.3 ms). A read inside its own transaction
would pay the same flush: a read-only transaction commits without one, a writing one cannot.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import UUID

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel

from context_engine.audit import store
from context_engine.audit.chain import AuditOutcome
from context_engine.audit.models import AuditEntry
from context_engine.errors import DependencyUnavailable, DomainError, Forbidden, NotFound, Unauthorized
from context_engine.models.domain import Principal

if TYPE_CHECKING:
    from context_engine.db.database import Conn

log = logging.getLogger(__name__)

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Identifier fields copied from a request body into the record's details (never content).
BODY_FIELDS = ("agent_id", "user_id", "session_id", "visibility", "model_call_id", "strategy", "language")
# Identifier fields of a response body that name what a call created.
RESPONSE_ID_FIELDS = ("turn_id", "job_id", "run_id", "id", "call_id")


@dataclass(frozen=True)
class RouteAudit:
    action: str
    resource_type: str
    # Where the resource id comes from: a path parameter, or a field of the response body.
    resource_id: str | None = None
    # A read of private data: audited, and fails closed.
    private_read: bool = False


ROUTES: dict[str, RouteAudit] = {
    "POST /v1/sessions/{session_id}/turns": RouteAudit("turn.write", "turn", "turn_id"),
    "GET /v1/sessions/{session_id}": RouteAudit("session.read", "session", "session_id", private_read=True),
    "GET /v1/sessions/{session_id}/turns": RouteAudit("turns.list", "session", "session_id", private_read=True),
    "DELETE /v1/sessions/{session_id}": RouteAudit("session.delete", "session", "session_id"),
    "DELETE /v1/sessions/{session_id}/turns/{turn_id}": RouteAudit("turn.delete", "turn", "turn_id"),
    "POST /v1/sessions/{session_id}/tool-calls": RouteAudit("tool_calls.register", "session", "session_id"),
    "PATCH /v1/sessions/{session_id}/tool-calls/{call_id}": RouteAudit("tool_call.update", "tool_call", "call_id"),
    "POST /v1/sessions/{session_id}/rebuild": RouteAudit("session.rebuild", "session", "session_id"),
    "POST /v1/context/query": RouteAudit("context.query", "context", "session_id", private_read=True),
    "POST /v1/memories": RouteAudit("memory.create", "memory", "id"),
    "POST /v1/memories/search": RouteAudit("memory.search", "memory", None, private_read=True),
    "GET /v1/memories/{memory_id}": RouteAudit("memory.read", "memory", "memory_id", private_read=True),
    "DELETE /v1/memories/{memory_id}": RouteAudit("memory.delete", "memory", "memory_id"),
    "PUT /v1/agents/{agent_id}": RouteAudit("agent.put", "agent", "agent_id"),
    "GET /v1/jobs/{job_id}": RouteAudit("job.read", "job", "job_id", private_read=True),
    "POST /v1/sandbox/runs": RouteAudit("sandbox.run", "sandbox_run", "run_id"),
    "GET /v1/sandbox/runs/{run_id}": RouteAudit("sandbox_run.read", "sandbox_run", "run_id", private_read=True),
    "GET /v1/audit": RouteAudit("audit.query", "audit_log", None, private_read=True),
    "GET /v1/audit/verify": RouteAudit("audit.verify", "audit_log", None, private_read=True),
    "POST /v1/users/{user_id}/export": RouteAudit("user.export", "user", "user_id"),
    "DELETE /v1/users/{user_id}": RouteAudit("user.erase", "user", "user_id"),
    "GET /v1/tenant": RouteAudit("tenant.read", "tenant", None, private_read=True),
    "PUT /v1/tenant": RouteAudit("tenant.update", "tenant", None),
}
# Reads that reveal nothing private (and need no record).
NOT_AUDITED: frozenset[str] = frozenset({"GET /v1/health", "GET /v1/openapi.json", "GET /v1/agents/{agent_id}"})


def spec_for(route_key: str) -> RouteAudit | None:
    """The audit spec of a route; unknown mutating routes get a generic one."""
    spec = ROUTES.get(route_key)
    if spec is not None or route_key in NOT_AUDITED:
        return spec
    method, _, path = route_key.partition(" ")
    return RouteAudit(f"http.{method.lower()} {path}", "route") if method in MUTATING else None


def outcome_of(exc: BaseException) -> AuditOutcome:
    if isinstance(exc, Forbidden | Unauthorized):
        return AuditOutcome.DENIED
    if isinstance(exc, NotFound):
        return AuditOutcome.NOT_FOUND
    return AuditOutcome.FAILED


@dataclass(frozen=True)
class RequestInfo:
    request_id: str | None
    trace_id: str | None
    path_parameters: Mapping[str, str]


def request_info(event: Any) -> RequestInfo:
    """Request id and trace id of a powertools API Gateway v2 event."""
    if event is None:
        return RequestInfo(None, None, {})
    headers = {k.lower(): v for k, v in (event.headers or {}).items()}
    trace = os.environ.get("_X_AMZN_TRACE_ID") or headers.get("x-amzn-trace-id")
    return RequestInfo(event.request_context.request_id, trace, dict(event.path_parameters or {}))


def _details(principal: Principal, info: RequestInfo, kwargs: Mapping[str, Any], status: int | None) -> dict[str, Any]:
    details: dict[str, Any] = {}
    for value in kwargs.values():
        if isinstance(value, BaseModel):
            for name in BODY_FIELDS:
                v = getattr(value, name, None)
                if isinstance(v, str):
                    details[name] = v
    details.update({k: v for k, v in info.path_parameters.items() if isinstance(v, str)})
    if principal.agent_id:
        details["key_agent_id"] = principal.agent_id
    if status is not None:
        details["status"] = status
    return details


def _resource_id(spec: RouteAudit, principal: Principal, info: RequestInfo, response: Any) -> str | None:
    if spec.resource_type == "tenant":
        return principal.tenant_id
    if spec.resource_id is None:
        return None
    if spec.resource_id in info.path_parameters:
        return str(info.path_parameters[spec.resource_id])
    body = getattr(response, "body", None)
    value = getattr(body, spec.resource_id, None)
    return str(value) if value is not None else None


def _status(response: Any) -> int | None:
    code = getattr(response, "status_code", None)
    return int(code) if isinstance(code, int) else None


def build_entry(spec: RouteAudit, principal: Principal, info: RequestInfo, kwargs: Mapping[str, Any], *,
                outcome: AuditOutcome, status: int | None, response: Any = None) -> AuditEntry:
    details = _details(principal, info, kwargs, status)
    if response is not None:
        body = getattr(response, "body", None)
        for name in RESPONSE_ID_FIELDS:
            v = getattr(body, name, None)
            if isinstance(v, str | int | UUID) and not isinstance(v, bool):
                details.setdefault(name, str(v))
    return AuditEntry(actor=principal.key_id, role=principal.role.value, action=spec.action,
                      resource_type=spec.resource_type, resource_id=_resource_id(spec, principal, info, response),
                      outcome=outcome, request_id=info.request_id, trace_id=info.trace_id, details=details)


Sink = Callable[[str, AuditEntry], None]


@dataclass
class _InFlight:
    """The mutation being served, for ``record_in_transaction``."""

    spec: RouteAudit
    principal: Principal
    info: RequestInfo
    kwargs: Mapping[str, Any]
    # (status, body) of the success record stored in the view's transaction, if one was.
    stored: tuple[int, Any] | None = field(default=None)


_in_flight: ContextVar[_InFlight | None] = ContextVar("ce_audit_in_flight", default=None)


@dataclass(frozen=True)
class _Outcome:
    status_code: int
    body: Any


def record_in_transaction(conn: Conn, tenant_id: str, body: Any, status: int) -> bool:
    """Store the current request's success record in the caller's transaction (the one that
    makes the route's effect), so both commit together. Call it last, just before the commit,
    with the body and status the view will answer. Returns False (and stores nothing) when no
    audited mutation is being served here; the wrapper then records the call itself."""
    flight = _in_flight.get()
    if flight is None or flight.stored is not None or flight.principal.tenant_id != tenant_id:
        return False
    entry = build_entry(flight.spec, flight.principal, flight.info, flight.kwargs,
                        outcome=AuditOutcome.SUCCESS if status < 400 else AuditOutcome.FAILED, status=status,
                        response=_Outcome(status, body))
    store.add(conn, tenant_id, [entry])
    flight.stored = (status, body)
    return True


def audited(route_key: str, view: Callable[..., Any], *, caller: Callable[[], Principal],
            current_event: Callable[[], Any], sink: Sink | None = None) -> Callable[..., Any]:
    """``view`` with a request record written after it ran (see the module docstring)."""
    spec = spec_for(route_key)
    if spec is None:
        return view

    def write(tenant_id: str, entry: AuditEntry) -> None:
        if sink is not None:
            sink(tenant_id, entry)
            return
        from context_engine.governance.settings import get_governance_settings
        from context_engine.runtime import get_runtime
        from context_engine.services import audit

        durable = not spec.private_read or get_governance_settings().audit_access_commit == "durable"
        audit.record(get_runtime(), tenant_id, [entry], durable=durable)

    @functools.wraps(view)
    def wrapper(**kwargs: Any) -> Any:
        try:
            principal = caller()
        except DomainError:
            return view(**kwargs)  # no credentials: the view answers 401 and there is no tenant to audit
        info = request_info(current_event())
        # A mutation's view may take its success record into its own transaction (see
        # record_in_transaction); not with a test sink, which must see every record.
        flight = _InFlight(spec, principal, info, kwargs) if sink is None and not spec.private_read else None
        token = _in_flight.set(flight)
        try:
            response = view(**kwargs)
        except Exception as exc:
            status = exc.status if isinstance(exc, DomainError) else 500
            try:
                write(principal.tenant_id, build_entry(spec, principal, info, kwargs, outcome=outcome_of(exc),
                                                       status=status))
            except Exception:
                _lost(spec, principal)
            raise
        finally:
            _in_flight.reset(token)
        code = _status(response)
        if flight is not None and flight.stored is not None:
            status, body = flight.stored
            if status == code and body is getattr(response, "body", None):
                return response  # committed with the change
        outcome = AuditOutcome.SUCCESS if code is None or code < 400 else AuditOutcome.FAILED
        try:
            write(principal.tenant_id, build_entry(spec, principal, info, kwargs, outcome=outcome, status=code,
                                                   response=response))
        except Exception as exc:
            _lost(spec, principal)
            if spec.private_read:
                raise DependencyUnavailable("the audit trail is unavailable; try again") from exc
        return response

    # powertools reads the signature to validate and document parameters; resolve the view's
    # (string) annotations here, in the view's own module, so the wrapper's module never has to.
    wrapper.__signature__ = inspect.signature(view, eval_str=True)  # type: ignore[attr-defined]
    return wrapper


def _lost(spec: RouteAudit, principal: Principal) -> None:
    from context_engine.observability.powertools import metrics

    metrics.add_metric(name="AuditRecordsLost", unit=MetricUnit.Count, value=1)
    log.exception("audit record not stored", extra={"action": spec.action, "tenant_id": principal.tenant_id})
