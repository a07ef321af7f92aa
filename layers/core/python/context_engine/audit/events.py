"""Domain events as audit entries: what changed in the system, one record per event.

The entry id is the event id, so a redelivered event is audited once. The resource is the
thing the event is about; the details are the event's identifiers and counts (events carry
no content by design, and anything that looks like content is dropped here anyway).
When a producer stamps the acting principal into the event (``actor``: key id, role,
request id, trace id), the record names it; otherwise the actor is the system.
"""

from __future__ import annotations

from typing import Any

from context_engine.audit.chain import MAX_DETAIL_STRING
from context_engine.audit.models import SYSTEM_ACTOR, SYSTEM_ROLE, AuditEntry
from context_engine.events.envelope import EventEnvelope
from context_engine.privacy.sensitive import is_sensitive_key

# detail type → (resource type, the detail field holding the resource id)
_RESOURCE: dict[str, tuple[str, str]] = {
    "TurnWritten": ("turn", "turn_id"),
    "ToolCallUpdated": ("tool_call", "call_id"),
    "ContextRebuildRequested": ("job", "job_id"),
    "ContextCompressed": ("session", "session_id"),
    "MemoryWritten": ("memory", "memory_id"),
    "UserErased": ("user", "user_id"),
    "SandboxRunFinished": ("sandbox_run", "run_id"),
}
_DELETED_SCOPE: dict[str, tuple[str, str]] = {
    "session": ("session", "session_id"),
    "turn": ("turn", "turn_id"),
    "memory": ("memory", "memory_id"),
}


def _resource(detail_type: str, detail: dict[str, Any]) -> tuple[str, str | None]:
    if detail_type == "ContextDeleted":
        rtype, field = _DELETED_SCOPE.get(str(detail.get("scope")), ("context", "session_id"))
    else:
        rtype, field = _RESOURCE.get(detail_type, ("event", "event_id"))
    value = detail.get(field)
    return rtype, (str(value) if value is not None else None)


def _scalar_details(detail: dict[str, Any]) -> dict[str, Any]:
    """Identifiers and counts only: content-named fields are dropped, floats become text
    (the canonical form has no floats), long strings are cut, nested values keep only ints."""
    out: dict[str, Any] = {}
    for key, value in detail.items():
        if key == "actor" or is_sensitive_key(key):
            continue
        if value is None or isinstance(value, bool | int):
            out[key] = value
        elif isinstance(value, float):
            out[key] = repr(value)
        elif isinstance(value, str):
            out[key] = value[:MAX_DETAIL_STRING]
        elif isinstance(value, dict):  # e.g. UserErased.counts
            nested = {str(k): v for k, v in value.items()
                      if isinstance(v, int) and not isinstance(v, bool) and not is_sensitive_key(str(k))}
            if nested:
                out[key] = nested
    return out


def entry_for_event(envelope: EventEnvelope) -> AuditEntry:
    detail = envelope.detail
    resource_type, resource_id = _resource(envelope.detail_type, detail)
    raw_actor = detail.get("actor")
    actor: dict[str, Any] = raw_actor if isinstance(raw_actor, dict) else {}
    return AuditEntry(
        id=str(envelope.event_id),
        occurred_at=envelope.time,
        actor=str(actor.get("key_id") or SYSTEM_ACTOR),
        role=str(actor.get("role") or SYSTEM_ROLE),
        action=f"event.{envelope.detail_type}",
        resource_type=resource_type,
        resource_id=resource_id,
        request_id=actor.get("request_id"),
        trace_id=actor.get("trace_id"),
        details=_scalar_details(detail),
    )
