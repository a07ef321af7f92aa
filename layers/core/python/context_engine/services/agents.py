from __future__ import annotations

from context_engine.errors import NotFound
from context_engine.models.api import AgentResponse, PutAgentRequest
from context_engine.models.domain import AgentProfile, Principal
from context_engine.repos import agents
from context_engine.runtime import Runtime
from context_engine.services.authz import Action, require, require_agent


def put_agent(rt: Runtime, principal: Principal, agent_id: str, req: PutAgentRequest) -> AgentResponse:
    require(principal, Action.configure)
    require_agent(principal, agent_id)
    profile = AgentProfile(**req.model_dump())
    with rt.db.tenant(principal.tenant_id) as conn:
        row = agents.put(conn, principal.tenant_id, agent_id, profile)
    return AgentResponse(agent_id=agent_id, profile=profile, version=row["version"], updated_at=row["updated_at"])


def get_agent(rt: Runtime, principal: Principal, agent_id: str) -> AgentResponse:
    require(principal, Action.read)
    require_agent(principal, agent_id)
    with rt.db.tenant(principal.tenant_id) as conn:
        row = agents.get(conn, principal.tenant_id, agent_id)
    if row is None:
        raise NotFound("agent not found", details={"agent_id": agent_id})
    return AgentResponse(agent_id=agent_id, profile=AgentProfile(**row["profile"]), version=row["version"],
                         updated_at=row["updated_at"])
