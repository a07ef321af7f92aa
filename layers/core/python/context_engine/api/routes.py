"""Every HTTP route of API v1, registered once; ``api.app.build_api`` mounts the ones that
``wiring.HTTP_ROUTES`` assigns to a function. Views are thin: parse → core → response."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Header, Query

from context_engine import __version__
from context_engine.api.context import json_response, principal_of
from context_engine.audit.http import audited
from context_engine.audit.models import AuditFilter, AuditPage, VerifyReport
from context_engine.governance.models import GovernanceJobAccepted, PutTenantRequest, TenantSettings
from context_engine.models.api import (
    AgentResponse,
    CreateMemoryRequest,
    DeletedResponse,
    Health,
    JobAccepted,
    PutAgentRequest,
    QueryContextRequest,
    QueryContextResponse,
    RebuildRequest,
    RegisterToolChainRequest,
    SandboxRunAccepted,
    SandboxRunRequest,
    SandboxRunResponse,
    SearchMemoriesRequest,
    SearchMemoriesResponse,
    SessionInfo,
    ToolCallsResponse,
    TurnsPage,
    UpdateToolResultRequest,
    WriteTurnRequest,
    WriteTurnResponse,
)
from context_engine.models.domain import Job, Memory, Principal, ToolCall
from context_engine.runtime import get_runtime
from context_engine.services import agents, audit, compress, context, governance, jobs, memories, tenants, tools, turns
from context_engine.services import sandbox as sandbox_runs


@dataclass(frozen=True)
class RouteDef:
    method: str
    path: str  # API Gateway syntax: /v1/sessions/{session_id}
    view: Callable[..., Any]
    summary: str

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def resolver_rule(self) -> str:  # powertools syntax: /v1/sessions/<session_id>
        return self.path.replace("{", "<").replace("}", ">")


REGISTRY: list[RouteDef] = []


def route(method: str, path: str, summary: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(view: Callable[..., Any]) -> Callable[..., Any]:
        # Every mutating call and every read of private data leaves an audit record (audit.http).
        wrapped = audited(f"{method} {path}", view, caller=lambda: _caller(), current_event=_current_event)
        REGISTRY.append(RouteDef(method, path, wrapped, summary))
        return view

    return register


# The resolver serving the current request, set per request by a middleware: several
# resolvers can live in one process (the local server hosts every function).
current_app: ContextVar[APIGatewayHttpResolver] = ContextVar("current_app")


def _caller() -> Principal:
    return principal_of(current_app.get())


def _current_event() -> Any:
    app = current_app.get(None)
    return app.current_event if app is not None else None


def _request_id() -> str | None:
    event = _current_event()
    return event.request_context.request_id if event is not None else None


IdempotencyKey = Annotated[str | None, Header(alias="idempotency-key", max_length=200)]
ID_PATH_MAX = 128


# --- turns and sessions ------------------------------------------------------------
@route("POST", "/v1/sessions/{session_id}/turns", "WriteQA: store one question/answer turn")
def write_turn(
    session_id: str, body: WriteTurnRequest, idempotency_key: IdempotencyKey = None
) -> Response[WriteTurnResponse]:
    result, replayed = turns.write_turn(get_runtime(), _caller(), _session_id(session_id), body, idempotency_key)
    return json_response(result, 201, {"Idempotent-Replayed": "true"} if replayed else None)


@route("GET", "/v1/sessions/{session_id}", "Session info and window statistics")
def get_session(session_id: str) -> Response[SessionInfo]:
    return json_response(turns.get_session(get_runtime(), _caller(), _session_id(session_id)))


@route("GET", "/v1/sessions/{session_id}/turns", "Turns of a session, paged by seq")
def list_turns(
    session_id: str,
    after_seq: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Response[TurnsPage]:
    return json_response(turns.list_turns(get_runtime(), _caller(), _session_id(session_id), after_seq, limit))


@route("DELETE", "/v1/sessions/{session_id}", "DeleteContext: a whole session")
def delete_session(session_id: str) -> Response[DeletedResponse]:
    return json_response(turns.delete_session(get_runtime(), _caller(), _session_id(session_id)))


@route("DELETE", "/v1/sessions/{session_id}/turns/{turn_id}", "DeleteContext: one turn")
def delete_turn(session_id: str, turn_id: UUID) -> Response[DeletedResponse]:
    return json_response(turns.delete_turn(get_runtime(), _caller(), _session_id(session_id), turn_id))


# --- tool calls --------------------------------------------------------------------
@route("POST", "/v1/sessions/{session_id}/tool-calls", "RegisterToolChain")
def register_tool_chain(session_id: str, body: RegisterToolChainRequest) -> Response[ToolCallsResponse]:
    return json_response(tools.register_chain(get_runtime(), _caller(), _session_id(session_id), body), 201)


@route("PATCH", "/v1/sessions/{session_id}/tool-calls/{call_id}", "UpdateToolResult")
def update_tool_result(session_id: str, call_id: str, body: UpdateToolResultRequest) -> Response[ToolCall]:
    return json_response(tools.update_result(get_runtime(), _caller(), _session_id(session_id), call_id, body))


# --- context -----------------------------------------------------------------------
@route("POST", "/v1/context/query", "QueryContext: the best context for a query within a token budget")
def query_context(body: QueryContextRequest) -> Response[QueryContextResponse]:
    return json_response(context.query_context(get_runtime(), _caller(), body))


# --- memories ----------------------------------------------------------------------
@route("POST", "/v1/memories", "Add a long-term memory")
def create_memory(body: CreateMemoryRequest) -> Response[Memory]:
    return json_response(memories.create(get_runtime(), _caller(), body), 201)


@route("POST", "/v1/memories/search", "Search long-term memories")
def search_memories(body: SearchMemoriesRequest) -> Response[SearchMemoriesResponse]:
    return json_response(memories.search(get_runtime(), _caller(), body))


@route("GET", "/v1/memories/{memory_id}", "Get a memory")
def get_memory(memory_id: UUID) -> Response[Memory]:
    return json_response(memories.get(get_runtime(), _caller(), memory_id))


@route("DELETE", "/v1/memories/{memory_id}", "Delete a memory")
def delete_memory(memory_id: UUID) -> Response[DeletedResponse]:
    memories.delete(get_runtime(), _caller(), memory_id)
    return json_response(DeletedResponse(deleted=True, counts={"memories": 1}))


# --- agents and jobs ---------------------------------------------------------------
@route("PUT", "/v1/agents/{agent_id}", "Create or replace an agent profile and its model-call templates")
def put_agent(agent_id: str, body: PutAgentRequest) -> Response[AgentResponse]:
    return json_response(agents.put_agent(get_runtime(), _caller(), _id(agent_id, "agent_id"), body))


@route("GET", "/v1/agents/{agent_id}", "Get an agent profile")
def get_agent(agent_id: str) -> Response[AgentResponse]:
    return json_response(agents.get_agent(get_runtime(), _caller(), _id(agent_id, "agent_id")))


@route("POST", "/v1/sessions/{session_id}/rebuild", "RebuildContext: compress the session's window (a job)")
def rebuild_context(session_id: str, body: RebuildRequest) -> Response[JobAccepted]:
    return json_response(compress.request_rebuild(get_runtime(), _caller(), _session_id(session_id), body), 202)


@route("GET", "/v1/jobs/{job_id}", "Job status")
def get_job(job_id: UUID) -> Response[Job]:
    return json_response(jobs.get_job(get_runtime(), _caller(), job_id))


# --- audit and governance -------------------------------------------------------------
AuditText = Annotated[str | None, Query(min_length=1, max_length=256)]


@route("GET", "/v1/audit", "Audit records (auditor, admin), filtered and paged by cursor")
def query_audit(
    actor: AuditText = None,
    action: AuditText = None,
    resource_type: AuditText = None,
    resource_id: AuditText = None,
    user_id: AuditText = None,
    since: Annotated[datetime | None, Query(description="occurred_at >= since (ISO 8601)")] = None,
    until: Annotated[datetime | None, Query(description="occurred_at < until (ISO 8601)")] = None,
    order: Annotated[Literal["asc", "desc"], Query()] = "asc",
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Response[AuditPage]:
    f = AuditFilter(actor=actor, action=action, resource_type=resource_type, resource_id=resource_id,
                    user_id=user_id, since=since, until=until)
    return json_response(audit.query(get_runtime(), _caller(), f, cursor=cursor, limit=limit,
                                     newest_first=order == "desc"))


@route("GET", "/v1/audit/verify", "Recompute the audit hash chain; names the first broken link")
def verify_audit() -> Response[VerifyReport]:
    return json_response(audit.verify(get_runtime(), _caller()))


@route("POST", "/v1/users/{user_id}/export", "GDPR export of everything about one user (a job)")
def export_user(user_id: str) -> Response[GovernanceJobAccepted]:
    return json_response(governance.request_export(get_runtime(), _caller(), _id(user_id, "user_id"),
                                                   request_id=_request_id()), 202)


@route("DELETE", "/v1/users/{user_id}", "GDPR erase of one user: database, search index, cache (a job)")
def erase_user(user_id: str) -> Response[GovernanceJobAccepted]:
    return json_response(governance.request_erase(get_runtime(), _caller(), _id(user_id, "user_id"),
                                                  request_id=_request_id()), 202)


@route("GET", "/v1/tenant", "The tenant's classification, privacy policy and retention (admin, auditor)")
def get_tenant() -> Response[TenantSettings]:
    return json_response(tenants.get_settings(get_runtime(), _caller()))


@route("PUT", "/v1/tenant", "Set the tenant's classification, privacy policy and retention (admin)")
def put_tenant(body: PutTenantRequest) -> Response[TenantSettings]:
    return json_response(tenants.put_settings(get_runtime(), _caller(), body))


# --- sandbox -----------------------------------------------------------------------
@route("POST", "/v1/sandbox/runs", "Run code in the sandbox (asynchronously; poll the run)")
def start_sandbox_run(body: SandboxRunRequest) -> Response[SandboxRunAccepted]:
    return json_response(sandbox_runs.start_run(get_runtime(), _caller(), body), 202)


@route("GET", "/v1/sandbox/runs/{run_id}", "A sandbox run: status, and output once finished")
def get_sandbox_run(run_id: UUID) -> Response[SandboxRunResponse]:
    return json_response(sandbox_runs.get_run(get_runtime(), _caller(), run_id))


# --- meta --------------------------------------------------------------------------
@route("GET", "/v1/health", "Health")
def health() -> Response[Health]:
    checks: dict[str, str] = {}
    try:
        with get_runtime().db.unscoped() as conn:
            conn.execute("select 1")
        checks["database"] = "ok"
    except Exception:  # health reports, never raises
        checks["database"] = "unavailable"
    status: Literal["ok", "degraded"] = "ok" if all(v == "ok" for v in checks.values()) else "degraded"
    return json_response(Health(status=status, version=__version__, checks=checks), 200 if status == "ok" else 503)


@route("GET", "/v1/openapi.json", "This API's OpenAPI document")
def openapi() -> Response[dict[str, Any]]:
    from context_engine.api.app import openapi_document

    return json_response(openapi_document())


def _id(value: str, name: str) -> str:
    from context_engine.errors import ValidationFailed

    if not value or len(value) > ID_PATH_MAX:
        raise ValidationFailed(f"{name} must be 1..{ID_PATH_MAX} characters", details=[{"loc": ["path", name]}])
    return value


def _session_id(value: str) -> str:
    return _id(value, "session_id")
