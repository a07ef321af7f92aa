"""The one source of truth for how the pieces connect.

Read by the CDK constructs (``infra_cdk``) and by the local runtime (``local``): which
function serves which HTTP route, which functions exist and where their handlers
live. The event pipeline (events → rules → queues → functions; workflows → task
functions) is declared here too as it grows, so AWS and the embedded default can
never drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    description: str
    memory_mb: int = 512
    timeout_s: int = 15
    # What the function may touch; the CDK grants exactly these (least privilege).
    needs_db: bool = True
    needs_events: bool = False
    needs_cache: bool = False
    needs_bedrock: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def code_dir(self) -> str:
        return f"functions/{self.name}"

    @property
    def handler(self) -> str:
        return "handler.handler"


FUNCTIONS: dict[str, FunctionSpec] = {
    f.name: f
    for f in [
        FunctionSpec("authorizer", "Resolves an API key to tenant, role and agent scope", memory_mb=256, timeout_s=5),
        FunctionSpec("write", "WriteQA, tool calls, memories, agents, DeleteContext", needs_events=True,
                     needs_cache=True),
        FunctionSpec("query", "QueryContext, session reads, memory search, jobs, health", needs_cache=True,
                     memory_mb=1024, needs_bedrock=True),
    ]
}

# "METHOD /path/{param}" → function name. Paths use API Gateway's {param} syntax.
HTTP_ROUTES: dict[str, str] = {
    "POST /v1/sessions/{session_id}/turns": "write",
    "GET /v1/sessions/{session_id}": "query",
    "GET /v1/sessions/{session_id}/turns": "query",
    "DELETE /v1/sessions/{session_id}": "write",
    "DELETE /v1/sessions/{session_id}/turns/{turn_id}": "write",
    "POST /v1/sessions/{session_id}/tool-calls": "write",
    "PATCH /v1/sessions/{session_id}/tool-calls/{call_id}": "write",
    "POST /v1/context/query": "query",
    "POST /v1/memories": "write",
    "POST /v1/memories/search": "query",
    "GET /v1/memories/{memory_id}": "query",
    "DELETE /v1/memories/{memory_id}": "write",
    "PUT /v1/agents/{agent_id}": "write",
    "GET /v1/agents/{agent_id}": "query",
    "GET /v1/jobs/{job_id}": "query",
    "GET /v1/health": "query",
    "GET /v1/openapi.json": "query",
}

# Routes that need no API key (the authorizer is not attached to them).
PUBLIC_ROUTES: frozenset[str] = frozenset({"GET /v1/health", "GET /v1/openapi.json"})


def routes_of(function: str) -> list[str]:
    return [r for r, f in HTTP_ROUTES.items() if f == function]
