"""WriteQA, session reads, paged turns and DeleteContext."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from context_engine.audit import http as audit_http
from context_engine.cache.keys import session_prefix
from context_engine.errors import Conflict, NotFound, too_large
from context_engine.events.envelope import EventEnvelope
from context_engine.models.api import (
    DeletedResponse,
    SessionInfo,
    TurnsPage,
    WriteTurnRequest,
    WriteTurnResponse,
)
from context_engine.models.domain import Principal, Session
from context_engine.repos import idempotency, outbox, sessions, turns
from context_engine.runtime import Runtime
from context_engine.search.text import turn_search_text
from context_engine.services import tenants
from context_engine.services.authz import Action, require, require_agent
from context_engine.text.tokens import count_tokens

TURN_WRITTEN = "TurnWritten"
CONTEXT_DELETED = "ContextDeleted"


def check_turn_limits(rt: Runtime, req: WriteTurnRequest) -> None:
    limit = rt.settings.max_turn_chars
    for field in ("question", "answer"):
        size = len(getattr(req, field))
        if size > limit:
            raise too_large(field, limit, size)
    meta = len(json.dumps(req.metadata, default=str))
    if meta > rt.settings.max_metadata_bytes:
        raise too_large("metadata", rt.settings.max_metadata_bytes, meta, "bytes")


def _request_hash(session_id: str, req: WriteTurnRequest) -> str:
    return hashlib.sha256(f"{session_id}\n{req.model_dump_json()}".encode()).hexdigest()


def load_session(conn, principal: Principal, session_id: str) -> Session:  # type: ignore[no-untyped-def]
    """The session if the caller may see it; otherwise 404 (other tenants, other agents)."""
    session = sessions.get(conn, principal.tenant_id, session_id)
    if session is None or not principal.can_access_agent(session.agent_id):
        raise NotFound("session not found", details={"session_id": session_id})
    return session


def write_turn(
    rt: Runtime, principal: Principal, session_id: str, req: WriteTurnRequest, idempotency_key: str | None
) -> tuple[WriteTurnResponse, bool]:
    """Store one turn. Returns (response, replayed). One transaction writes the turn, the
    session counters, the window version, the idempotency record, the outbox row and the
    request's audit record (one commit); then the event is published."""
    require(principal, Action.write)
    require_agent(principal, req.agent_id)
    check_turn_limits(rt, req)
    tenant = principal.tenant_id
    occurred_at = req.occurred_at or datetime.now(UTC)
    event = EventEnvelope(detail_type=TURN_WRITTEN, tenant_id=tenant)
    with rt.db.tenant(tenant) as conn:
        if idempotency_key:
            prior = idempotency.claim(conn, tenant, f"turn:{session_id}", idempotency_key,
                                      _request_hash(session_id, req))
            if prior is not None:
                if prior["request_hash"] != _request_hash(session_id, req):
                    raise Conflict("Idempotency-Key was already used with a different request",
                                   details={"header": "Idempotency-Key"})
                replay = WriteTurnResponse(**prior["response"])
                audit_http.record_in_transaction(conn, tenant, replay, 201)
                return replay, True
        # The tenant's privacy policy runs before anything is stored, counted or indexed.
        protected = tenants.protect(rt, conn, tenant, {"question": req.question, "answer": req.answer})
        question, answer = protected.texts["question"], protected.texts["answer"]
        token_count = count_tokens(question) + count_tokens(answer)
        turn_id = uuid4()
        detail: dict[str, Any] = {"session_id": session_id, "turn_id": str(turn_id), "agent_id": req.agent_id,
                                  "user_id": req.user_id, "token_count": token_count}
        written = turns.append(
            conn, tenant, turn_id=turn_id, session_id=session_id, agent_id=req.agent_id, user_id=req.user_id,
            question=question, answer=answer, occurred_at=occurred_at, token_count=token_count,
            metadata=req.metadata, search_text=turn_search_text(question, answer, occurred_at),
            event_id=event.event_id, detail_type=event.detail_type, detail=detail,
        )
        if written is None:  # the session exists and belongs to another agent or user
            session = sessions.get(conn, tenant, session_id)
            if session is None or not principal.can_access_agent(session.agent_id):
                raise NotFound("session not found", details={"session_id": session_id})
            raise Conflict("session belongs to another agent or user",
                           details=[{"loc": ["body", "agent_id"]}, {"loc": ["body", "user_id"]}])
        seq, version = written
        event.detail = {**detail, "seq": seq, "window_version": version}
        response = WriteTurnResponse(turn_id=turn_id, seq=seq, token_count=token_count)
        if idempotency_key:
            idempotency.store(conn, tenant, f"turn:{session_id}", idempotency_key, 201,
                              response.model_dump(mode="json"))
        audit_http.record_in_transaction(conn, tenant, response, 201)
    rt.publish_committed(tenant, [event])
    return response, False


def get_session(rt: Runtime, principal: Principal, session_id: str) -> SessionInfo:
    require(principal, Action.read)
    with rt.db.tenant(principal.tenant_id) as conn:
        session = load_session(conn, principal, session_id)
        window = sessions.get_window(conn, principal.tenant_id, session_id)
    return SessionInfo(session=session, window=window)


def list_turns(rt: Runtime, principal: Principal, session_id: str, after_seq: int, limit: int) -> TurnsPage:
    require(principal, Action.read)
    with rt.db.tenant(principal.tenant_id) as conn:
        load_session(conn, principal, session_id)
        items = turns.page(conn, principal.tenant_id, session_id, after_seq=after_seq, limit=limit + 1)
    more = len(items) > limit
    items = items[:limit]
    return TurnsPage(items=items, next_after_seq=items[-1].seq if more and items else None)


def delete_session(rt: Runtime, principal: Principal, session_id: str) -> DeletedResponse:
    require(principal, Action.write)
    tenant = principal.tenant_id
    with rt.db.tenant(tenant) as conn:
        session = load_session(conn, principal, session_id)
        counts = sessions.delete(conn, tenant, session_id)
        event = EventEnvelope(detail_type=CONTEXT_DELETED, tenant_id=tenant, detail={
            "session_id": session_id, "agent_id": session.agent_id, "user_id": session.user_id, "scope": "session"})
        outbox.add(conn, tenant, event.event_id, event.detail_type, event.detail)
        response = DeletedResponse(deleted=True, counts=counts)
        audit_http.record_in_transaction(conn, tenant, response, 200)
    rt.cache.delete_prefix(session_prefix(tenant, session.agent_id, session.user_id, session_id))
    rt.publish_committed(tenant, [event])
    return response


def delete_turn(rt: Runtime, principal: Principal, session_id: str, turn_id: UUID) -> DeletedResponse:
    require(principal, Action.write)
    tenant = principal.tenant_id
    with rt.db.tenant(tenant) as conn:
        session = load_session(conn, principal, session_id)
        turn = turns.delete(conn, tenant, session_id, turn_id)
        if turn is None:
            raise NotFound("turn not found", details={"turn_id": str(turn_id)})
        sessions.bump_window(conn, tenant, session_id)
        event = EventEnvelope(detail_type=CONTEXT_DELETED, tenant_id=tenant, detail={
            "session_id": session_id, "agent_id": session.agent_id, "user_id": session.user_id,
            "turn_id": str(turn_id), "seq": turn.seq, "scope": "turn"})
        outbox.add(conn, tenant, event.event_id, event.detail_type, event.detail)
        response = DeletedResponse(deleted=True, counts={"turns": 1})
        audit_http.record_in_transaction(conn, tenant, response, 200)
    rt.publish_committed(tenant, [event])
    return response

