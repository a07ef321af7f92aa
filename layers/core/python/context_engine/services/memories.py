"""Long-term memories for (agent, user): private to one user or shared by the agent."""

from __future__ import annotations

import json
from uuid import UUID, uuid4

from context_engine.errors import NotFound, ValidationFailed, too_large
from context_engine.events.envelope import EventEnvelope
from context_engine.models.api import (
    CreateMemoryRequest,
    MemoryHit,
    SearchMemoriesRequest,
    SearchMemoriesResponse,
)
from context_engine.models.domain import Memory, Principal
from context_engine.repos import memories, outbox
from context_engine.runtime import Runtime
from context_engine.services import tenants
from context_engine.services.authz import Action, require, require_agent
from context_engine.text.tokens import count_tokens

MEMORY_WRITTEN = "MemoryWritten"


def _visible(principal: Principal, memory: Memory | None, user_id: str | None = None) -> bool:
    if memory is None or not principal.can_access_agent(memory.agent_id):
        return False
    return memory.visibility == "agent" or user_id is None or memory.user_id == user_id


def create(rt: Runtime, principal: Principal, req: CreateMemoryRequest) -> Memory:
    require(principal, Action.write)
    require_agent(principal, req.agent_id)
    if req.visibility == "private" and not req.user_id:
        raise ValidationFailed("a private memory needs user_id", details=[{"loc": ["body", "user_id"]}])
    if len(req.content) > rt.settings.max_memory_chars:
        raise too_large("content", rt.settings.max_memory_chars, len(req.content))
    if len(json.dumps(req.metadata, default=str)) > rt.settings.max_metadata_bytes:
        raise too_large("metadata", rt.settings.max_metadata_bytes, len(json.dumps(req.metadata, default=str)), "bytes")
    tenant = principal.tenant_id
    with rt.db.tenant(tenant) as conn:
        # The tenant's privacy policy runs before the memory is stored, counted or indexed.
        content = tenants.protect(rt, conn, tenant, {"content": req.content}).texts["content"]
        memory = memories.insert(
            conn, tenant, memory_id=uuid4(), agent_id=req.agent_id,
            user_id=req.user_id if req.visibility == "private" else req.user_id,
            visibility=req.visibility, content=content, importance=req.importance,
            source_turn_ids=req.source_turn_ids, metadata=req.metadata, token_count=count_tokens(content))
        event = EventEnvelope(detail_type=MEMORY_WRITTEN, tenant_id=tenant, detail={
            "memory_id": str(memory.id), "agent_id": memory.agent_id, "user_id": memory.user_id,
            "visibility": memory.visibility})
        outbox.add(conn, tenant, event.event_id, event.detail_type, event.detail)
    rt.publish_committed(tenant, [event])
    return memory


def get(rt: Runtime, principal: Principal, memory_id: UUID) -> Memory:
    require(principal, Action.read)
    with rt.db.tenant(principal.tenant_id) as conn:
        memory = memories.get(conn, principal.tenant_id, memory_id)
    if not _visible(principal, memory) or memory is None:
        raise NotFound("memory not found", details={"memory_id": str(memory_id)})
    return memory


def delete(rt: Runtime, principal: Principal, memory_id: UUID) -> None:
    require(principal, Action.write)
    tenant = principal.tenant_id
    with rt.db.tenant(tenant) as conn:
        memory = memories.get(conn, tenant, memory_id)
        if not _visible(principal, memory) or memory is None:
            raise NotFound("memory not found", details={"memory_id": str(memory_id)})
        memories.delete(conn, tenant, memory_id)
        event = EventEnvelope(detail_type="ContextDeleted", tenant_id=tenant, detail={
            "memory_id": str(memory_id), "agent_id": memory.agent_id, "user_id": memory.user_id, "scope": "memory"})
        outbox.add(conn, tenant, event.event_id, event.detail_type, event.detail)
    rt.publish_committed(tenant, [event])


def search(rt: Runtime, principal: Principal, req: SearchMemoriesRequest) -> SearchMemoriesResponse:
    """The same hybrid retrieval QueryContext uses for its memory section (full text + vector,
    fused by reciprocal rank), over the memories visible to the user."""
    from context_engine.search import search_backend
    from context_engine.search.base import Scope, SearchQuery
    from context_engine.services.context import query_vectors

    require(principal, Action.read)
    require_agent(principal, req.agent_id)
    query = SearchQuery.build(req.query, query_vectors.get(rt, req.query))
    scope = Scope(tenant_id=principal.tenant_id, agent_id=req.agent_id, user_id=req.user_id)
    hits = search_backend(rt).search_memories(scope, query, k=req.k)
    return SearchMemoriesResponse(items=[MemoryHit(memory=h.memory, score=h.score) for h in hits])
