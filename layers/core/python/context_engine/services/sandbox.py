"""Sandbox runs: ``POST/GET /v1/sandbox/runs`` and the tasks of the ``sandbox_run`` workflow.

Flow (statemachines/sandbox_run.asl.json):

1. ``start_run`` (HTTP, 202): checks the caller, the sizes (413) and the limits against the
   tenant's maxima (422), and the tool call when one is named; stores a ``queued`` run, puts the
   ``SandboxRequest`` (code, stdin, limits) into the sandbox bucket as ``requests/<run_id>.json``
   and starts the execution named by the run id with ``{run_id, tenant_id}`` as its only input.
   Code never travels in the workflow state, on a command line or in the database.
2. ``mark_running``: the run (and its tool call) become ``running``; returns where the task runs
   (cluster, task definition, subnets, security groups) and the two object keys.
3. The ``ecs:runTask.sync`` state runs the Fargate task (``context_engine.sandbox.container``),
   which reads the request object and writes ``results/<run_id>.json``. Locally moto runs that
   state and ``pipeline.ecs_local`` runs the same runner on the local sandbox host.
4. ``collect_result``: reads the result object, stores it on the run, makes it the tool call's
   result, emits ``SandboxRunFinished`` (and ``ToolCallUpdated``) through the outbox, deletes
   both objects. A task that never started (capacity, network or image pull) is retried.
5. ``record_failure`` (the Catch path): the run and its tool call fail with the reason.

Every task is idempotent: a finished run is never finished twice, so Lambda retries are safe.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any, Literal, Protocol
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from context_engine.db.database import Conn
from context_engine.errors import Conflict, DependencyUnavailable, NotFound, ValidationFailed, too_large
from context_engine.events.envelope import EventEnvelope
from context_engine.events.models import SandboxRunFinished, ToolCallUpdated, new_event
from context_engine.models.api import (
    SandboxLimitsRequest,
    SandboxRunAccepted,
    SandboxRunLimits,
    SandboxRunRequest,
    SandboxRunResponse,
)
from context_engine.models.domain import TERMINAL_TOOL_STATUSES, Principal, Tenant, ToolCall
from context_engine.pipeline.workflows import get_workflow_starter
from context_engine.repos import outbox, sessions, tenants, tool_calls
from context_engine.repos import sandbox_runs as runs
from context_engine.repos.sandbox_runs import SandboxRun
from context_engine.runtime import Runtime
from context_engine.sandbox.models import (
    MAX_CODE_BYTES,
    MAX_MEMORY_MB,
    MAX_OUTPUT_KB,
    MAX_STDIN_BYTES,
    MAX_TIMEOUT_S,
    MIN_MEMORY_MB,
    SandboxLimits,
    SandboxRequest,
    SandboxResult,
)
from context_engine.services.authz import Action, require
from context_engine.services.tools import render_tool_output
from context_engine.services.turns import load_session
from context_engine.text.tokens import count_tokens

log = logging.getLogger(__name__)

WORKFLOW = "sandbox_run"
LIMIT_FIELDS = ("timeout_s", "memory_mb", "output_kb")
HARD_MAXIMA: dict[str, float] = {"timeout_s": MAX_TIMEOUT_S, "memory_mb": MAX_MEMORY_MB, "output_kb": MAX_OUTPUT_KB}
# Two streams of at most MAX_OUTPUT_KB each, JSON-escaped (control characters take 6 bytes).
MAX_RESULT_OBJECT_BYTES = 16 * 1024 * 1024
# ECS stop codes / stopped reasons of a task whose container never started: the code did not
# run, so starting the task again is safe. Anything else is final (the code may have run).
RETRYABLE_STOP_CODES = frozenset({"TaskFailedToStart"})
RETRYABLE_STOP_REASONS = (
    "ResourceInitializationError",  # ENI, secrets or log setup on the Fargate host
    "CannotPullContainerError",  # transient ECR/S3 trouble
    "CannotStartContainerError",
    "Timeout waiting for network interface provisioning",
)


# --- settings and adapters ------------------------------------------------------------
class SandboxSettings(BaseSettings):
    """Where runs execute in AWS (set by the CDK sandbox construct). Unset: the local emulation
    of the same task on moto (``pipeline.ecs_local``), which needs the local dispatcher."""

    model_config = SettingsConfigDict(env_prefix="CONTEXT_ENGINE_SANDBOX_", extra="ignore")

    bucket: str | None = None
    cluster_arn: str | None = None
    task_definition_arn: str | None = None
    container_name: str = "sandbox"
    subnets: str = Field(default="", description="comma-separated subnet ids")
    security_groups: str = Field(default="", description="comma-separated security group ids")
    request_prefix: str = "requests/"
    result_prefix: str = "results/"
    # Starts of a Fargate task that failed before the code ran, before the run fails.
    max_start_attempts: int = Field(default=3, ge=1, le=10)
    start_retry_wait_s: int = Field(default=15, ge=0, le=600)

    @property
    def in_aws(self) -> bool:
        return bool(self.bucket and self.cluster_arn and self.task_definition_arn)


@lru_cache(maxsize=1)
def get_sandbox_settings() -> SandboxSettings:
    return SandboxSettings()


class TaskTarget(BaseModel):
    """What the RunSandboxTask state needs: where the task runs and the two object keys. It is
    the only thing about a run that the workflow state carries besides its ids."""

    cluster: str
    task_definition: str
    container: str
    subnets: list[str]
    security_groups: list[str]
    bucket: str
    request_key: str
    result_key: str


class SandboxObjects:
    """The request and result objects of runs in the sandbox bucket."""

    def __init__(self, s3: Any, bucket: str, request_prefix: str = "requests/", result_prefix: str = "results/"):
        self.s3, self.bucket = s3, bucket
        self.request_prefix, self.result_prefix = request_prefix, result_prefix

    def request_key(self, run_id: UUID) -> str:
        return f"{self.request_prefix}{run_id}.json"

    def result_key(self, run_id: UUID) -> str:
        return f"{self.result_prefix}{run_id}.json"

    def put_request(self, run_id: UUID, request: SandboxRequest) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=self.request_key(run_id), Body=request.model_dump_json().encode(),
                           ContentType="application/json")

    def read_result(self, run_id: UUID) -> dict[str, Any] | None:
        """The result object, or None when the task wrote none."""
        try:
            obj = self.s3.get_object(Bucket=self.bucket, Key=self.result_key(run_id))
        except self.s3.exceptions.NoSuchKey:
            return None
        body = obj["Body"].read(MAX_RESULT_OBJECT_BYTES + 1)
        if len(body) > MAX_RESULT_OBJECT_BYTES:
            raise ValueError(f"result object of run {run_id} is larger than {MAX_RESULT_OBJECT_BYTES} bytes")
        payload = json.loads(body)
        if not isinstance(payload, dict):
            raise ValueError(f"result object of run {run_id} is not a JSON object")
        return payload

    def discard(self, run_id: UUID) -> None:
        """Delete both objects now (the bucket's one-day lifecycle is only the backstop)."""
        for key in (self.request_key(run_id), self.result_key(run_id)):
            try:
                self.s3.delete_object(Bucket=self.bucket, Key=key)
            except Exception:  # the lifecycle rule removes it within a day anyway
                log.warning("could not delete a sandbox object", extra={"key": key}, exc_info=True)


class SandboxBackend(Protocol):
    objects: SandboxObjects

    def target(self, run_id: UUID) -> TaskTarget: ...


@dataclass
class AwsSandboxBackend:
    """The Fargate task of the CDK sandbox construct."""

    objects: SandboxObjects
    settings: SandboxSettings

    def target(self, run_id: UUID) -> TaskTarget:
        s = self.settings
        assert s.cluster_arn and s.task_definition_arn
        return TaskTarget(cluster=s.cluster_arn, task_definition=s.task_definition_arn, container=s.container_name,
                          subnets=_csv(s.subnets), security_groups=_csv(s.security_groups),
                          bucket=self.objects.bucket, request_key=self.objects.request_key(run_id),
                          result_key=self.objects.result_key(run_id))


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


@lru_cache(maxsize=1)
def _aws_backend() -> AwsSandboxBackend:
    import boto3

    s = get_sandbox_settings()
    assert s.bucket
    return AwsSandboxBackend(SandboxObjects(boto3.client("s3"), s.bucket, s.request_prefix, s.result_prefix), s)


def sandbox_backend() -> SandboxBackend:
    """Fargate when the CDK configured it; else the local emulation on moto."""
    if get_sandbox_settings().in_aws:
        return _aws_backend()
    from context_engine.pipeline.ecs_local import local_backend

    return local_backend(get_sandbox_settings())


# --- limits -----------------------------------------------------------------------------
class TenantSandboxLimits(BaseModel):
    """``tenants.limits["sandbox"]``: per-tenant maxima, each at most the sandbox's hard maximum."""

    model_config = ConfigDict(extra="ignore")

    timeout_s: float = Field(default=MAX_TIMEOUT_S, gt=0)
    memory_mb: int = Field(default=MAX_MEMORY_MB, ge=MIN_MEMORY_MB)
    output_kb: int = Field(default=MAX_OUTPUT_KB, ge=1)


def tenant_maxima(tenant: Tenant | None) -> dict[str, float]:
    raw = (tenant.limits if tenant else {}).get("sandbox") or {}
    try:
        configured = TenantSandboxLimits.model_validate(raw)
    except ValidationError:
        # A broken configuration must not open the hard maxima: it fails closed to the defaults.
        log.error("invalid tenants.limits.sandbox; using the sandbox defaults as maxima",
                  extra={"tenant_id": tenant.id if tenant else None})
        configured = TenantSandboxLimits.model_validate(SandboxLimits().model_dump())
    return {name: min(getattr(configured, name), HARD_MAXIMA[name]) for name in LIMIT_FIELDS}


def resolve_limits(requested: SandboxLimitsRequest, maxima: dict[str, float]) -> SandboxLimits:
    """The run's limits: what was asked for (422 above the tenant's maximum, every offending
    field named), else the sandbox default lowered to the tenant's maximum."""
    defaults = SandboxLimits()
    values: dict[str, float] = {}
    problems: list[dict[str, Any]] = []
    for name in LIMIT_FIELDS:
        asked = getattr(requested, name)
        if asked is None:
            values[name] = min(getattr(defaults, name), maxima[name])
        elif asked > maxima[name]:
            problems.append({"loc": ["body", "limits", name], "type": "less_than_equal", "limit": maxima[name],
                             "msg": f"must be at most {maxima[name]:g} for this tenant"})
        else:
            values[name] = asked
    if problems:
        fields = ", ".join(".".join(p["loc"]) for p in problems)
        raise ValidationFailed(f"invalid request: {fields}", details=problems)
    return SandboxLimits.model_validate(values)


# --- API ----------------------------------------------------------------------------------
def start_run(rt: Runtime, principal: Principal, req: SandboxRunRequest) -> SandboxRunAccepted:
    """Queue a run and start its workflow; returns at once (202)."""
    require(principal, Action.write)
    code = req.code.encode("utf-8", "surrogatepass")
    stdin = (req.stdin or "").encode("utf-8", "surrogatepass")
    if len(code) > MAX_CODE_BYTES:
        raise too_large("code", MAX_CODE_BYTES, len(code), "bytes")
    if len(stdin) > MAX_STDIN_BYTES:
        raise too_large("stdin", MAX_STDIN_BYTES, len(stdin), "bytes")
    tenant = principal.tenant_id
    run_id = uuid4()
    with rt.db.tenant(tenant) as conn:
        limits = resolve_limits(req.limits, tenant_maxima(tenants.get_tenant(conn, tenant)))
        agent_id = principal.agent_id
        if req.session_id is not None:
            agent_id = load_session(conn, principal, req.session_id).agent_id
            if req.call_id is not None:
                _check_tool_call(conn, tenant, req.session_id, req.call_id)
        request = SandboxRequest(language=req.language, code=req.code, stdin=req.stdin, limits=limits)
        run = runs.insert(conn, tenant, run_id=run_id, language=req.language, limits=limits.model_dump(),
                          code_bytes=len(code), code_sha256=hashlib.sha256(code).hexdigest(), stdin_bytes=len(stdin),
                          agent_id=agent_id, session_id=req.session_id, call_id=req.call_id,
                          created_by=principal.key_id, created_role=principal.role.value)
        if run is None:
            raise Conflict("the tool call already has a sandbox run", details=[{"loc": ["body", "call_id"]}])
    backend: SandboxBackend | None = None
    try:
        backend = sandbox_backend()
        backend.objects.put_request(run_id, request)
        get_workflow_starter().start(WORKFLOW, str(run_id), {"run_id": str(run_id), "tenant_id": tenant})
    except Exception as err:
        # Nothing half-written: without a workflow the run would stay queued forever.
        log.exception("sandbox run could not be started", extra={"run_id": str(run_id)})
        with rt.db.tenant(tenant) as conn:
            runs.delete(conn, tenant, run_id)
        if backend is not None:
            backend.objects.discard(run_id)
        raise DependencyUnavailable("the sandbox is unavailable; nothing was run") from err
    log.info("sandbox run queued", extra={"run_id": str(run_id), "call_id": req.call_id})
    return SandboxRunAccepted(run_id=run_id, status="queued")


def _check_tool_call(conn: Conn, tenant: str, session_id: str, call_id: str) -> ToolCall:
    call = tool_calls.get(conn, tenant, session_id, call_id, for_update=True)
    if call is None:
        raise NotFound("tool call not found", details={"call_id": call_id})
    if call.status in TERMINAL_TOOL_STATUSES:
        raise Conflict(f"the tool call is already {call.status}", details=[{"loc": ["body", "call_id"]}])
    return call


def get_run(rt: Runtime, principal: Principal, run_id: UUID) -> SandboxRunResponse:
    require(principal, Action.read)
    with rt.db.tenant(principal.tenant_id) as conn:
        run = runs.get(conn, principal.tenant_id, run_id)
    # Agent-scoped keys see their agent's runs only; like other tenants' runs, the rest are 404.
    if run is None or (principal.agent_id is not None and run.agent_id != principal.agent_id):
        raise NotFound("sandbox run not found", details={"run_id": str(run_id)})
    return to_response(run)


def to_response(run: SandboxRun) -> SandboxRunResponse:
    return SandboxRunResponse(
        run_id=run.id, status=run.status, language=run.language, session_id=run.session_id, call_id=run.call_id,
        limits=SandboxRunLimits.model_validate(run.limits), stdout=run.stdout, stderr=run.stderr,
        exit_code=run.exit_code, duration_ms=run.duration_ms, stdout_truncated=run.stdout_truncated,
        stderr_truncated=run.stderr_truncated, reason=run.reason, isolation=run.isolation, created_at=run.created_at,
        started_at=run.started_at, finished_at=run.finished_at)


# --- workflow tasks -------------------------------------------------------------------------
class RunGone(Exception):
    """The run does not exist (deleted with its session, or never committed): not retried."""


class RunAlreadyFinished(Exception):
    """MarkRunning found a finished run: nothing may run again."""


@dataclass(frozen=True)
class Outcome:
    status: Literal["succeeded", "failed", "timed_out"]
    stdout: str | None = None
    stderr: str | None = None
    exit_code: int | None = None
    duration_ms: float | None = None
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    reason: str | None = None
    isolation: str | None = None

    @classmethod
    def of(cls, result: SandboxResult) -> Outcome:
        return cls(status=result.status.value, stdout=_text(result.stdout), stderr=_text(result.stderr),
                   exit_code=result.exit_code, duration_ms=result.duration_ms,
                   stdout_truncated=result.stdout_truncated, stderr_truncated=result.stderr_truncated,
                   reason=result.reason, isolation=result.isolation.value)

    @classmethod
    def failure(cls, reason: str) -> Outcome:
        return cls(status="failed", reason=reason[:2000])


def _text(value: str) -> str:
    # PostgreSQL text and jsonb cannot hold NUL; the code may well print one.
    return value.replace("\x00", "\ufffd")


def _actor(run: SandboxRun) -> dict[str, str]:
    """The key that started the run: the audit log names it for what the run caused later."""
    return {"key_id": run.created_by, "role": run.created_role}


def mark_running(rt: Runtime, tenant_id: str, run_id: UUID) -> dict[str, Any]:
    events: list[EventEnvelope] = []
    with rt.db.tenant(tenant_id) as conn:
        run = runs.get(conn, tenant_id, run_id, for_update=True)
        if run is None:
            raise RunGone(f"sandbox run {run_id} not found")
        if run.terminal:
            raise RunAlreadyFinished(f"sandbox run {run_id} already {run.status}")
        if run.status == "queued":
            run = runs.mark_running(conn, tenant_id, run_id)
            if run.call_id and run.session_id:
                call = tool_calls.get(conn, tenant_id, run.session_id, run.call_id, for_update=True)
                if call is not None and call.status == "pending":
                    events.append(_update_call(conn, tenant_id, run, call, "running", None, None))
    rt.publish_committed(tenant_id, events)
    return sandbox_backend().target(run_id).model_dump()


def collect_result(rt: Runtime, tenant_id: str, run_id: UUID, task_error: dict[str, Any] | None) -> dict[str, Any]:
    """After the task stopped (``task_error`` set when Step Functions reported it failed)."""
    with rt.db.tenant(tenant_id) as conn:
        current = runs.get(conn, tenant_id, run_id)
    if current is None:
        # Deleted with its session while it ran (DeleteContext, erase, retention): nothing to
        # store and nothing failed; only the objects are left to remove.
        sandbox_backend().objects.discard(run_id)
        return {"retry": False, "retry_after_s": 0, "status": "gone", "infra_failure": False}
    if current.terminal:  # a retried invocation: the result is stored and its objects are gone
        return _collected(current)
    backend = sandbox_backend()
    payload = backend.objects.read_result(run_id)
    if payload is None:
        retryable, reason = describe_task_failure(task_error)
        if retryable:
            with rt.db.tenant(tenant_id) as conn:
                failures = runs.count_start_failure(conn, tenant_id, run_id)
            settings = get_sandbox_settings()
            if failures < settings.max_start_attempts:
                log.warning("sandbox task did not start; retrying", extra={"run_id": str(run_id), "reason": reason})
                return {"retry": True, "retry_after_s": settings.start_retry_wait_s * failures, "status": "running",
                        "infra_failure": False}
            reason = f"{reason} ({failures} attempts)"
        outcome = Outcome.failure(reason)
    elif "error" in payload:
        error = payload["error"] if isinstance(payload["error"], dict) else {}
        outcome = Outcome.failure(f"sandbox {error.get('code', 'error')}: {error.get('message', '')}")
    else:
        outcome = Outcome.of(SandboxResult.model_validate(payload))
    run = finish(rt, tenant_id, run_id, outcome)
    backend.objects.discard(run_id)
    return _collected(run)


def _collected(run: SandboxRun) -> dict[str, Any]:
    # Every result of the runner records its isolation: a run without one never got a result,
    # so the sandbox failed (the execution ends in its Fail state), not the code.
    return {"retry": False, "retry_after_s": 0, "status": run.status, "infra_failure": run.isolation is None}


def record_failure(rt: Runtime, tenant_id: str, run_id: UUID, error: dict[str, Any]) -> dict[str, Any]:
    """The Catch path: whatever went wrong, the run and its tool call end as failed."""
    name = str(error.get("Error") or "error")
    cause = str(error.get("Cause") or "")
    try:
        cause_message = json.loads(cause).get("errorMessage", cause) if cause.startswith("{") else cause
    except (ValueError, AttributeError):
        cause_message = cause
    try:
        run = finish(rt, tenant_id, run_id, Outcome.failure(f"{name}: {cause_message}".strip(": ")))
    except RunGone:
        return {"status": "gone"}
    try:
        sandbox_backend().objects.discard(run_id)
    except Exception:  # the run is recorded; the lifecycle rule removes the objects
        log.warning("sandbox objects left to the lifecycle rule", extra={"run_id": str(run_id)}, exc_info=True)
    return {"status": run.status}


def describe_task_failure(task_error: dict[str, Any] | None) -> tuple[bool, str]:
    """(retryable, reason) for a task that left no result object. Step Functions reports a failed
    ``runTask.sync`` as ``States.TaskFailed`` whose cause is the ECS task description (JSON)."""
    if not task_error:
        return False, "the sandbox task exited without writing a result"
    cause: Any = task_error.get("Cause")
    try:
        task = json.loads(cause) if isinstance(cause, str) else None
    except ValueError:
        task = None
    if not isinstance(task, dict):
        return False, f"{task_error.get('Error', 'error')}: {cause or 'no cause'}"[:2000]
    stop_code = str(task.get("StopCode") or "")
    stopped_reason = str(task.get("StoppedReason") or "")
    containers = task.get("Containers") or [{}]
    exit_code = containers[0].get("ExitCode")
    reason = f"sandbox task stopped: {stop_code or 'unknown'}: {stopped_reason or 'no reason'}"
    if exit_code is not None:
        reason += f" (exit code {exit_code})"
    never_ran = exit_code is None and (stop_code in RETRYABLE_STOP_CODES
                                       or stopped_reason.startswith(RETRYABLE_STOP_REASONS))
    return never_ran, reason


def finish(rt: Runtime, tenant_id: str, run_id: UUID, outcome: Outcome) -> SandboxRun:
    """Store the outcome on the run and make it the tool call's result, with the events, in one
    transaction. A run that already ended is returned as it is (no second effect)."""
    events: list[EventEnvelope] = []
    with rt.db.tenant(tenant_id) as conn:
        run = runs.get(conn, tenant_id, run_id, for_update=True)
        if run is None:
            raise RunGone(f"sandbox run {run_id} not found")
        if run.terminal:
            return run
        run = runs.finish(conn, tenant_id, run_id, status=outcome.status, stdout=outcome.stdout,
                          stderr=outcome.stderr, exit_code=outcome.exit_code, duration_ms=outcome.duration_ms,
                          stdout_truncated=outcome.stdout_truncated, stderr_truncated=outcome.stderr_truncated,
                          reason=outcome.reason, isolation=outcome.isolation)
        if run.call_id and run.session_id:
            call = tool_calls.get(conn, tenant_id, run.session_id, run.call_id, for_update=True)
            if call is not None and call.status not in TERMINAL_TOOL_STATUSES:
                result, error = tool_call_payload(run, rt.settings.max_tool_payload_bytes)
                events.append(_update_call(conn, tenant_id, run, call, run.status, result, error))
            elif call is not None:
                log.warning("tool call was finished by someone else; the run's result is not copied",
                            extra={"run_id": str(run_id), "call_id": run.call_id, "call_status": call.status})
        events.append(new_event(
            SandboxRunFinished, tenant_id, run_id=run.id, status=run.status, session_id=run.session_id,
            call_id=run.call_id, exit_code=run.exit_code,
            duration_ms=round(run.duration_ms) if run.duration_ms is not None else None, actor=_actor(run)))
        _outbox(conn, tenant_id, events[-1:])
    rt.publish_committed(tenant_id, events)
    log.info("sandbox run finished", extra={"run_id": str(run_id), "status": run.status, "reason": run.reason})
    return run


def _update_call(conn: Conn, tenant_id: str, run: SandboxRun, call: ToolCall, status: str, result: Any,
                 error: Any) -> EventEnvelope:
    """The tool call's new status and result, with the window bump and ToolCallUpdated (what
    UpdateToolResult does, on behalf of the key that started the run)."""
    terminal = status in TERMINAL_TOOL_STATUSES
    updated = tool_calls.update_result(conn, tenant_id, call.session_id, call.call_id, status=status, result=result,
                                       error=error, token_count=count_tokens(render_tool_output(result, error)),
                                       terminal=terminal)
    version = sessions.bump_window(conn, tenant_id, call.session_id)
    event = new_event(ToolCallUpdated, tenant_id, session_id=updated.session_id, call_id=updated.call_id,
                      name=updated.name, status=updated.status, agent_id=updated.agent_id, user_id=updated.user_id,
                      window_version=version, actor=_actor(run))
    _outbox(conn, tenant_id, [event])
    return event


def _outbox(conn: Conn, tenant_id: str, events: Iterable[EventEnvelope]) -> None:
    for e in events:
        outbox.add(conn, tenant_id, e.event_id, e.detail_type, e.detail)


def tool_call_payload(run: SandboxRun, budget_bytes: int) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(result, error) for the tool call: a succeeded run is its result, any other its error, so
    QueryContext's tool section shows the output either way. The streams are cut to fit the
    tool-payload limit (the beginning of stdout, the end of stderr, where a traceback ends);
    the full output stays on the run."""
    stdout, stderr = run.stdout or "", run.stderr or ""
    room = max(0, budget_bytes - 1024)  # the fields around the streams
    out_room = max(room // 2, room - len(stderr.encode()))
    stdout_cut = _head(stdout, out_room)
    stderr_cut = _tail(stderr, room - len(stdout_cut.encode()))
    body: dict[str, Any] = {
        "run_id": str(run.id), "status": run.status, "exit_code": run.exit_code,
        "duration_ms": round(run.duration_ms) if run.duration_ms is not None else None,
        "stdout": stdout_cut, "stderr": stderr_cut,
        "stdout_truncated": run.stdout_truncated or len(stdout_cut) < len(stdout),
        "stderr_truncated": run.stderr_truncated or len(stderr_cut) < len(stderr),
    }
    if run.reason:
        body["reason"] = run.reason
    return (body, None) if run.status == "succeeded" else (None, body)


def _head(text: str, max_bytes: int) -> str:
    data = text.encode()
    return text if len(data) <= max_bytes else data[:max(0, max_bytes)].decode("utf-8", "ignore")


def _tail(text: str, max_bytes: int) -> str:
    data = text.encode()
    if len(data) <= max_bytes:
        return text
    return data[len(data) - max(0, max_bytes):].decode("utf-8", "ignore") if max_bytes > 0 else ""


# --- task dispatch (the sandbox function's workflow entry) ---------------------------------
class _MarkRunning(BaseModel):
    action: Literal["mark_running"]
    run_id: UUID
    tenant_id: str


class _CollectResult(BaseModel):
    action: Literal["collect_result"]
    run_id: UUID
    tenant_id: str
    task_error: dict[str, Any] | None = None


class _RecordFailure(BaseModel):
    action: Literal["record_failure"]
    run_id: UUID
    tenant_id: str
    error: dict[str, Any] = Field(default_factory=dict)


TaskInput = Annotated[_MarkRunning | _CollectResult | _RecordFailure, Field(discriminator="action")]
_tasks: TypeAdapter[Any] = TypeAdapter(TaskInput)


def run_task(rt: Runtime, event: dict[str, Any]) -> dict[str, Any]:
    """One Task state of sandbox_run.asl.json. Exceptions propagate: their class name is the
    ASL error name the state machine's Retry and Catch match."""
    task = _tasks.validate_python(event)
    match task:
        case _MarkRunning():
            return mark_running(rt, task.tenant_id, task.run_id)
        case _CollectResult():
            return collect_result(rt, task.tenant_id, task.run_id, task.task_error)
        case _RecordFailure():
            return record_failure(rt, task.tenant_id, task.run_id, task.error)
    raise AssertionError("unreachable: the discriminator covers every action")
