"""RegisterToolChain and UpdateToolResult."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from context_engine.db.database import Conn
from context_engine.errors import Conflict, NotFound, ValidationFailed, too_large
from context_engine.events.envelope import EventEnvelope
from context_engine.models.api import RegisterToolChainRequest, ToolCallsResponse, UpdateToolResultRequest
from context_engine.models.domain import TERMINAL_TOOL_STATUSES, TOOL_TRANSITIONS, Principal, ToolCall
from context_engine.repos import outbox, sessions, tool_calls
from context_engine.runtime import Runtime
from context_engine.services import tenants
from context_engine.services.authz import Action, require, require_agent
from context_engine.services.turns import load_session
from context_engine.text.tokens import count_tokens

TOOL_CALL_UPDATED = "ToolCallUpdated"


def _event(tenant: str, call: ToolCall, version: int) -> EventEnvelope:
    return EventEnvelope(detail_type=TOOL_CALL_UPDATED, tenant_id=tenant, detail={
        "session_id": call.session_id, "call_id": call.call_id, "name": call.name, "status": call.status,
        "agent_id": call.agent_id, "user_id": call.user_id, "window_version": version})


def register_chain(
    rt: Runtime, principal: Principal, session_id: str, req: RegisterToolChainRequest
) -> ToolCallsResponse:
    require(principal, Action.write)
    require_agent(principal, req.agent_id)
    if len(req.calls) > rt.settings.max_batch_items:
        raise too_large("calls", rt.settings.max_batch_items, len(req.calls), "items")
    for i, spec in enumerate(req.calls):
        size = len(json.dumps(spec.arguments, default=str))
        if size > rt.settings.max_tool_payload_bytes:
            raise too_large(f"calls.{i}.arguments", rt.settings.max_tool_payload_bytes, size, "bytes")
    ids = [c.call_id for c in req.calls]
    if len(set(ids)) != len(ids):
        raise ValidationFailed("call_id values must be unique", details=[{"loc": ["body", "calls"]}])
    tenant = principal.tenant_id
    created: list[ToolCall] = []
    with rt.db.tenant(tenant) as conn:
        session = sessions.ensure(conn, tenant, session_id, req.agent_id, req.user_id)
        if (session.agent_id, session.user_id) != (req.agent_id, req.user_id):
            if not principal.can_access_agent(session.agent_id):
                raise NotFound("session not found")
            raise Conflict("session belongs to another agent or user")
        chain_seq = tool_calls.next_chain_seq(conn, tenant, session_id)
        known = set(ids)
        for offset, spec in enumerate(req.calls):
            if spec.parent_call_id and spec.parent_call_id not in known and not tool_calls.get(
                    conn, tenant, session_id, spec.parent_call_id):
                raise ValidationFailed("parent_call_id does not name a call of this session",
                                       details=[{"loc": ["body", "calls", offset, "parent_call_id"]}])
            call = tool_calls.insert(
                conn, tenant, session_id=session_id, agent_id=req.agent_id, user_id=req.user_id,
                call_id=spec.call_id, name=spec.name, arguments=protect_json(rt, conn, tenant, spec.arguments),
                turn_id=spec.turn_id,
                parent_call_id=spec.parent_call_id, status=spec.status, chain_seq=chain_seq + offset)
            if call is None:
                raise Conflict(f"tool call {spec.call_id} already exists",
                               details=[{"loc": ["body", "calls", offset, "call_id"]}])
            created.append(call)
        version = sessions.bump_window(conn, tenant, session_id)
        events = [_event(tenant, c, version) for c in created]
        for e in events:
            outbox.add(conn, tenant, e.event_id, e.detail_type, e.detail)
    rt.publish_committed(tenant, events)
    return ToolCallsResponse(items=created)


def update_result(
    rt: Runtime, principal: Principal, session_id: str, call_id: str, req: UpdateToolResultRequest
) -> ToolCall:
    require(principal, Action.write)
    payload = len(json.dumps([req.result, req.error], default=str))
    if payload > rt.settings.max_tool_payload_bytes:
        raise too_large("result", rt.settings.max_tool_payload_bytes, payload, "bytes")
    tenant = principal.tenant_id
    with rt.db.tenant(tenant) as conn:
        load_session(conn, principal, session_id)
        current = tool_calls.get(conn, tenant, session_id, call_id, for_update=True)
        if current is None:
            raise NotFound("tool call not found", details={"call_id": call_id})
        if req.status != current.status and req.status not in TOOL_TRANSITIONS[current.status]:
            raise Conflict(f"cannot move a {current.status} call to {req.status}",
                           details=[{"loc": ["body", "status"]}])
        if req.status == current.status and current.status in TERMINAL_TOOL_STATUSES:
            raise Conflict(f"call is already {current.status}", details=[{"loc": ["body", "status"]}])
        result, error = protect_json(rt, conn, tenant, [req.result, req.error])
        text = render_tool_output(result, error)
        call = tool_calls.update_result(
            conn, tenant, session_id, call_id, status=req.status, result=result, error=error,
            token_count=count_tokens(text), terminal=req.status in TERMINAL_TOOL_STATUSES)
        version = sessions.bump_window(conn, tenant, session_id)
        event = _event(tenant, call, version)
        outbox.add(conn, tenant, event.event_id, event.detail_type, event.detail)
    rt.publish_committed(tenant, [event])
    return call


def protect_json(rt: Runtime, conn: Conn, tenant_id: str, value: Any) -> Any:
    """The tenant's privacy policy on every string inside a JSON value (tool arguments,
    results and errors carry user data as much as turns do), in one policy pass."""
    leaves: dict[str, str] = {}

    def collect(v: Any) -> Any:
        if isinstance(v, str):
            name = str(len(leaves))
            leaves[name] = v
            return _Leaf(name)
        if isinstance(v, dict):
            return {k: collect(x) for k, x in v.items()}
        if isinstance(v, list):
            return [collect(x) for x in v]
        return v

    shape = collect(value)
    if not leaves:
        return value
    texts = tenants.protect(rt, conn, tenant_id, leaves).texts

    def rebuild(v: Any) -> Any:
        if isinstance(v, _Leaf):
            return texts[v.name]
        if isinstance(v, dict):
            return {k: rebuild(x) for k, x in v.items()}
        if isinstance(v, list):
            return [rebuild(x) for x in v]
        return v

    return rebuild(shape)


@dataclass(frozen=True)
class _Leaf:
    name: str


def render_tool_output(result: object, error: object) -> str:
    if error is not None:
        return error if isinstance(error, str) else json.dumps(error, default=str)
    if result is None:
        return ""
    return result if isinstance(result, str) else json.dumps(result, default=str)
