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
        # 1769 MB is one full vCPU; 768 MB of it keep users' search indexes warm (search/user_index.py:
        # a 10k-turn user with 1024-d Titan vectors is ~140 MB, and a user may take a quarter).
        FunctionSpec("query", "QueryContext, session reads, memory search, jobs, health", needs_cache=True,
                     memory_mb=1769, needs_bedrock=True, extra={"CONTEXT_ENGINE_USER_INDEX_MB": "768"}),
        # --- event pipeline (see QUEUES, EVENT_RULES, WORKFLOWS, SCHEDULES below) -----------
        FunctionSpec("index", "Index consumer: embeds and indexes turns and memories, prepares contexts",
                     memory_mb=1024, timeout_s=60, needs_cache=True, needs_bedrock=True),
        FunctionSpec("compress", "Compress consumer: threshold checks, starts the rebuild_context workflow",
                     timeout_s=30, needs_events=True),
        FunctionSpec("rebuild", "Tasks of the rebuild_context workflow: load, run strategy, store, invalidate, emit",
                     memory_mb=1024, timeout_s=120, needs_events=True, needs_cache=True, needs_bedrock=True),
        FunctionSpec("audit_intake", "Audit consumer: takes every domain event into the audit intake",
                     timeout_s=30),
        FunctionSpec("relay", "Scheduled outbox relay: republishes events not marked published",
                     timeout_s=60, needs_events=True),
        # --- audit and governance (docs/governance.md) ---------------------------------------
        FunctionSpec("audit", "Audit appender: seals each tenant's pending audit intake into its hash chain",
                     timeout_s=120),
        # HTTP (audit, GDPR, tenant settings), export/erase jobs from its queue, the scheduled
        # retention run. Erase rebuilds summaries (Bedrock) and announces UserErased.
        FunctionSpec("governance", "Audit query/verify, GDPR export and erase jobs, tenant settings, retention",
                     memory_mb=1024, timeout_s=300, needs_events=True, needs_cache=True, needs_bedrock=True),
        # --- sandbox (docs/sandbox.md) ---------------------------------------------------------
        # The /v1/sandbox routes and the tasks of the sandbox_run workflow (mark running, collect
        # the result, record a failure); the sandbox construct adds its S3 and Step Functions grants.
        FunctionSpec("sandbox", "Sandbox runs: start and read runs, tasks of the sandbox_run workflow",
                     timeout_s=30, needs_events=True),
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
    "POST /v1/sessions/{session_id}/rebuild": "write",
    "GET /v1/jobs/{job_id}": "query",
    "GET /v1/health": "query",
    "GET /v1/openapi.json": "query",
    "GET /v1/audit": "governance",
    "GET /v1/audit/verify": "governance",
    "POST /v1/users/{user_id}/export": "governance",
    "DELETE /v1/users/{user_id}": "governance",
    "GET /v1/tenant": "governance",
    "PUT /v1/tenant": "governance",
    "POST /v1/sandbox/runs": "sandbox",
    "GET /v1/sandbox/runs/{run_id}": "sandbox",
}

# Routes that need no API key (the authorizer is not attached to them).
PUBLIC_ROUTES: frozenset[str] = frozenset({"GET /v1/health", "GET /v1/openapi.json"})


def routes_of(function: str) -> list[str]:
    return [r for r, f in HTTP_ROUTES.items() if f == function]


# --- event pipeline -------------------------------------------------------------------
# Events → rules → queues → consumer functions; workflows → task functions; schedules.
# The CDK pipeline construct builds exactly this, and the local dispatcher
# (context_engine.pipeline.local) runs the same routes in process.

EVENT_SOURCE = "context-engine"

DOMAIN_EVENTS: tuple[str, ...] = (
    "TurnWritten", "ToolCallUpdated", "ContextRebuildRequested", "ContextCompressed",
    "ContextDeleted", "MemoryWritten", "UserErased", "SandboxRunFinished",
)


@dataclass(frozen=True)
class QueueSpec:
    """An SQS queue with its DLQ and the function that consumes it (ReportBatchItemFailures)."""

    name: str
    consumer: str
    batch_size: int = 10
    max_batching_window_s: int = 1
    # SQS redelivers a message this many times, then moves it to the DLQ.
    max_receive_count: int = 5
    # AWS guidance: at least 6x the consumer's timeout, so a slow batch is not redelivered mid-flight.
    visibility_timeout_s: int = 360
    retention_days: int = 4
    dlq_retention_days: int = 14
    max_concurrency: int = 5


@dataclass(frozen=True)
class EventRule:
    """An EventBridge rule: these detail types from EVENT_SOURCE go to one queue."""

    name: str
    detail_types: tuple[str, ...]
    queue: str


@dataclass(frozen=True)
class WorkflowSpec:
    """A Step Functions state machine from an ASL file; ``${Placeholder}`` in the file is
    replaced by the ARN of the function named here (CDK definition substitutions locally too)."""

    name: str
    definition: str
    substitutions: dict[str, str]
    started_by: tuple[str, ...]
    timeout_s: int = 900

    @property
    def task_functions(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.substitutions.values()))


@dataclass(frozen=True)
class ScheduleSpec:
    """A function run on a timer (EventBridge Scheduler rule in AWS, a thread locally)."""

    name: str
    function: str
    rate_minutes: int
    local_interval_s: float


QUEUES: dict[str, QueueSpec] = {
    q.name: q
    for q in [
        QueueSpec("index", consumer="index", batch_size=10, visibility_timeout_s=360),
        QueueSpec("compress", consumer="compress", batch_size=10, visibility_timeout_s=180),
        QueueSpec("audit", consumer="audit_intake", batch_size=25, max_batching_window_s=2,
                  visibility_timeout_s=180, max_concurrency=2),
    ]
}

EVENT_RULES: dict[str, EventRule] = {
    r.name: r
    for r in [
        EventRule("index", ("TurnWritten", "MemoryWritten", "ToolCallUpdated", "ContextDeleted"), queue="index"),
        EventRule("compress", ("TurnWritten", "ContextRebuildRequested", "ContextDeleted"), queue="compress"),
        EventRule("audit", DOMAIN_EVENTS, queue="audit"),
    ]
}

WORKFLOWS: dict[str, WorkflowSpec] = {
    w.name: w
    for w in [
        WorkflowSpec("rebuild_context", "statemachines/rebuild_context.asl.json",
                     substitutions={"RebuildFunctionArn": "rebuild"}, started_by=("compress",), timeout_s=900),
        # The Fargate cluster, task definition and network come from the MarkRunning task (the
        # sandbox function's configuration), so the file needs only the function's ARN.
        WorkflowSpec("sandbox_run", "statemachines/sandbox_run.asl.json",
                     substitutions={"SandboxFunctionArn": "sandbox"}, started_by=("sandbox",), timeout_s=1800),
    ]
}

SCHEDULES: dict[str, ScheduleSpec] = {
    s.name: s
    for s in [
        ScheduleSpec("outbox_relay", function="relay", rate_minutes=1, local_interval_s=5.0),
        # Access and request records wait in the audit intake until appended.
        ScheduleSpec("audit_append", function="audit", rate_minutes=1, local_interval_s=2.0),
        # Retention purges and resuming governance jobs whose runner died.
        ScheduleSpec("governance", function="governance", rate_minutes=60, local_interval_s=300.0),
    ]
}


def rules_for(detail_type: str) -> list[EventRule]:
    return [r for r in EVENT_RULES.values() if detail_type in r.detail_types]
