"""The sandbox_run workflow: the real ASL on moto's Step Functions executor, its Lambda tasks
dispatched to the real sandbox handler, its ``ecs:runTask.sync`` state running the real runner
on the local sandbox host; the result stored on the run, on its tool call and in QueryContext."""

from __future__ import annotations

import json
from typing import Any

import pytest
from moto.core.exceptions import JsonRESTError
from moto.ecs.models import EC2ContainerServiceBackend
from tests.integration.sandbox_api.conftest import register_call, state_names, wait_for

from context_engine.errors import NotFound
from context_engine.events.models import SandboxRunFinished, ToolCallUpdated
from context_engine.models.api import QueryContextRequest, SandboxRunRequest
from context_engine.pipeline import ecs_local
from context_engine.repos import tool_calls
from context_engine.services import context, sandbox


def start(rt: Any, who: Any, **body: Any) -> Any:
    return sandbox.start_run(rt, who, SandboxRunRequest.model_validate(body))


def call_of(rt: Any, tenant: str, session: str, call_id: str) -> Any:
    with rt.db.tenant(tenant) as conn:
        return tool_calls.get(conn, tenant, session, call_id)


def outbox_events(rt: Any, tenant: str) -> list[tuple[str, dict[str, Any]]]:
    with rt.db.tenant(tenant) as conn:
        rows = conn.execute("select event_id, detail_type, detail from outbox where tenant_id = %s order by id",
                            [tenant]).fetchall()
    # The detail as consumers see it: the envelope's event and tenant ids are part of it.
    return [(r["detail_type"], {**r["detail"], "event_id": r["event_id"], "tenant_id": tenant}) for r in rows]


def objects_left(workflows: Any, run_id: Any) -> list[str]:
    backend = sandbox.sandbox_backend()
    listing = backend.objects.s3.list_objects_v2(Bucket=backend.objects.bucket)
    return [o["Key"] for o in listing.get("Contents", []) if str(run_id) in o["Key"]]


def test_run_reaches_succeeded_and_becomes_the_tool_calls_result(runtime, admin, workflows, sandbox_settings) -> None:
    tenant = admin.tenant_id
    register_call(runtime, admin, "s1", "c1")
    accepted = start(runtime, admin, code="import sys\nprint(sys.stdin.read().upper())", stdin="hello sandbox",
                     session_id="s1", call_id="c1")
    assert accepted.status == "queued"

    desc = wait_for(workflows, accepted.run_id)
    assert desc["status"] == "SUCCEEDED", desc
    assert state_names(workflows, accepted.run_id) == [
        "MarkRunning", "RunSandboxTask", "CollectResult", "RestartOrFinish", "Done"]
    # Only ids travel in the execution: no code, no stdin.
    assert json.loads(desc["input"]) == {"run_id": str(accepted.run_id), "tenant_id": tenant}

    run = sandbox.get_run(runtime, admin, accepted.run_id)
    assert (run.status, run.stdout, run.stderr, run.exit_code) == ("succeeded", "HELLO SANDBOX\n", "", 0)
    assert run.isolation in ("bwrap", "seccomp") and run.duration_ms and run.duration_ms > 0
    assert run.started_at and run.finished_at and run.created_at <= run.started_at <= run.finished_at

    call = call_of(runtime, tenant, "s1", "c1")
    assert call.status == "succeeded" and call.error is None
    assert call.result["stdout"] == "HELLO SANDBOX\n" and call.result["exit_code"] == 0
    assert call.result["run_id"] == str(accepted.run_id)

    events = outbox_events(runtime, tenant)
    updates = [d for t, d in events if t == "ToolCallUpdated" and d["call_id"] == "c1"]
    assert [u["status"] for u in updates] == ["pending", "running", "succeeded"]
    finished = [d for t, d in events if t == "SandboxRunFinished"]
    assert len(finished) == 1
    detail = SandboxRunFinished.model_validate(finished[0])
    assert (detail.run_id, detail.status, detail.call_id, detail.exit_code) == (accepted.run_id, "succeeded", "c1", 0)
    assert finished[0]["actor"] == {"key_id": admin.key_id, "role": "admin"}
    ToolCallUpdated.model_validate(updates[-1])
    # Both objects are deleted once the result is stored (the lifecycle rule is the backstop).
    assert objects_left(workflows, accepted.run_id) == []

    # The result shows in QueryContext's tool section.
    res = context.query_context(runtime, admin, QueryContextRequest(
        agent_id="agent-1", user_id="user-1", session_id="s1", query="what did the computation print?",
        token_budget=2000, include=["tool"]))
    tool_snippets = [s for s in res.snippets if s.type == "tool"]
    assert tool_snippets and "HELLO SANDBOX" in tool_snippets[0].content
    assert "HELLO SANDBOX" in res.context


def test_failing_code_is_a_result_not_a_workflow_failure(runtime, admin, workflows, sandbox_settings) -> None:
    register_call(runtime, admin, "s2", "c2")
    accepted = start(runtime, admin, code="print('before')\n1/0", session_id="s2", call_id="c2")
    assert wait_for(workflows, accepted.run_id)["status"] == "SUCCEEDED"
    run = sandbox.get_run(runtime, admin, accepted.run_id)
    assert (run.status, run.exit_code, run.stdout) == ("failed", 1, "before\n")
    assert "ZeroDivisionError" in (run.stderr or "")
    call = call_of(runtime, admin.tenant_id, "s2", "c2")
    # A failed run is the call's error (QueryContext renders the error), with the traceback in it.
    assert call.status == "failed" and call.result is None
    assert "ZeroDivisionError" in call.error["stderr"] and call.error["stdout"] == "before\n"


def test_timeout_marks_run_and_call_timed_out(runtime, admin, workflows, sandbox_settings) -> None:
    register_call(runtime, admin, "s3", "c3")
    accepted = start(runtime, admin, code="import time\nprint('start', flush=True)\ntime.sleep(30)",
                     session_id="s3", call_id="c3", limits={"timeout_s": 0.5})
    assert wait_for(workflows, accepted.run_id)["status"] == "SUCCEEDED"
    run = sandbox.get_run(runtime, admin, accepted.run_id)
    assert run.status == "timed_out" and run.exit_code is None and run.stdout == "start\n"
    assert "timeout" in (run.reason or "")
    assert run.limits.timeout_s == 0.5
    assert call_of(runtime, admin.tenant_id, "s3", "c3").status == "timed_out"


def test_output_truncation_flags_are_kept(runtime, admin, workflows, sandbox_settings) -> None:
    accepted = start(runtime, admin, code="print('x' * 100000)", limits={"output_kb": 1})
    assert wait_for(workflows, accepted.run_id)["status"] == "SUCCEEDED"
    run = sandbox.get_run(runtime, admin, accepted.run_id)
    assert run.status == "failed" and run.stdout_truncated and len(run.stdout or "") == 1024
    assert run.reason == "output limit"


def test_crashing_task_takes_the_catch_path(runtime, admin, workflows, sandbox_settings, monkeypatch) -> None:
    """The container dies without a result: Step Functions reports States.TaskFailed, the run and
    the tool call are marked failed with the reason, and the execution ends in its Fail state."""
    def crash(environ: dict[str, str], s3: Any) -> int:
        raise RuntimeError("entrypoint killed")

    monkeypatch.setattr(ecs_local, "run_container", crash)
    register_call(runtime, admin, "s4", "c4")
    accepted = start(runtime, admin, code="print(1)", session_id="s4", call_id="c4")
    desc = wait_for(workflows, accepted.run_id)
    assert desc["status"] == "FAILED" and desc["error"] == "SandboxRunFailed"
    assert state_names(workflows, accepted.run_id) == [
        "MarkRunning", "RunSandboxTask", "CollectAfterTaskFailure", "RestartOrFinish", "Failed"]
    run = sandbox.get_run(runtime, admin, accepted.run_id)
    assert run.status == "failed" and run.isolation is None and run.stdout is None
    assert "entrypoint killed" in (run.reason or "") and "exit code 1" in (run.reason or "")
    call = call_of(runtime, admin.tenant_id, "s4", "c4")
    assert call.status == "failed" and "entrypoint killed" in call.error["reason"]
    assert [t for t, _ in outbox_events(runtime, admin.tenant_id)].count("SandboxRunFinished") == 1
    assert objects_left(workflows, accepted.run_id) == []


class _EcsError(JsonRESTError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)


def test_ecs_api_error_is_final_after_the_retries(runtime, admin, workflows, sandbox_settings, monkeypatch) -> None:
    """A RunTask error that is not a capacity error is not retried. In a Catch, States.TaskFailed
    matches every task error but States.Timeout, so it reaches CollectAfterTaskFailure, which
    finds no result object and records the error as the reason."""
    def refuse(backend: Any, *args: Any, **kwargs: Any) -> Any:
        raise _EcsError("AccessDeniedException", "not authorized to perform ecs:RunTask")

    monkeypatch.setattr(EC2ContainerServiceBackend, "run_task", refuse)
    register_call(runtime, admin, "s5", "c5")
    accepted = start(runtime, admin, code="print(1)", session_id="s5", call_id="c5")
    desc = wait_for(workflows, accepted.run_id)
    assert desc["status"] == "FAILED" and desc["error"] == "SandboxRunFailed"
    assert state_names(workflows, accepted.run_id) == [
        "MarkRunning", "RunSandboxTask", "CollectAfterTaskFailure", "RestartOrFinish", "Failed"]
    run = sandbox.get_run(runtime, admin, accepted.run_id)
    assert run.status == "failed"
    assert (run.reason or "").startswith("ECS.AccessDeniedException: not authorized")
    assert call_of(runtime, admin.tenant_id, "s5", "c5").status == "failed"


def test_failing_task_function_goes_through_record_failure(runtime, admin, workflows, sandbox_settings,
                                                          monkeypatch) -> None:
    def broken(rt: Any, tenant_id: str, run_id: Any) -> Any:
        raise RuntimeError("cannot load the run")

    monkeypatch.setattr(sandbox, "mark_running", broken)
    register_call(runtime, admin, "s7", "c7")
    accepted = start(runtime, admin, code="print(1)", session_id="s7", call_id="c7")
    desc = wait_for(workflows, accepted.run_id)
    assert desc["status"] == "FAILED" and desc["error"] == "SandboxRunFailed"
    assert state_names(workflows, accepted.run_id) == ["MarkRunning", "RecordFailure", "Failed"]
    run = sandbox.get_run(runtime, admin, accepted.run_id)
    assert run.status == "failed" and run.reason == "RuntimeError: cannot load the run"
    call = call_of(runtime, admin.tenant_id, "s7", "c7")
    assert call.status == "failed" and call.error["reason"] == "RuntimeError: cannot load the run"


def test_capacity_error_is_retried(runtime, admin, workflows, sandbox_settings, monkeypatch) -> None:
    """Fargate capacity shortage (ECS.AmazonECSException) is retried by the state's Retry."""
    original = EC2ContainerServiceBackend.run_task
    calls: list[int] = []

    def short_of_capacity_once(backend: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise _EcsError("AmazonECSException", "Capacity is unavailable at this time.")
        return original(backend, *args, **kwargs)

    monkeypatch.setattr(EC2ContainerServiceBackend, "run_task", short_of_capacity_once)
    accepted = start(runtime, admin, code="print(42)")
    assert wait_for(workflows, accepted.run_id, timeout_s=90)["status"] == "SUCCEEDED"
    assert len(calls) == 2
    assert sandbox.get_run(runtime, admin, accepted.run_id).stdout == "42\n"


def test_task_that_failed_to_start_is_started_again(runtime, admin, workflows, sandbox_settings,
                                                    monkeypatch) -> None:
    real = ecs_local.run_container
    attempts: list[int] = []

    def flaky_start(environ: dict[str, str], s3: Any) -> int:
        attempts.append(1)
        if len(attempts) == 1:
            raise ecs_local.TaskStartFailure("ResourceInitializationError: failed to configure ENI")
        return real(environ, s3)

    monkeypatch.setattr(ecs_local, "run_container", flaky_start)
    accepted = start(runtime, admin, code="print('second time')")
    assert wait_for(workflows, accepted.run_id)["status"] == "SUCCEEDED"
    assert state_names(workflows, accepted.run_id) == [
        "MarkRunning", "RunSandboxTask", "CollectAfterTaskFailure", "RestartOrFinish", "WaitBeforeRestart",
        "RunSandboxTask", "CollectResult", "RestartOrFinish", "Done"]
    run = sandbox.get_run(runtime, admin, accepted.run_id)
    assert (run.status, run.stdout) == ("succeeded", "second time\n")


def test_start_failures_are_bounded(runtime, admin, workflows, sandbox_settings, monkeypatch) -> None:
    def never_starts(environ: dict[str, str], s3: Any) -> int:
        raise ecs_local.TaskStartFailure("CannotPullContainerError: pull access denied")

    monkeypatch.setattr(ecs_local, "run_container", never_starts)
    register_call(runtime, admin, "s6", "c6")
    accepted = start(runtime, admin, code="print(1)", session_id="s6", call_id="c6")
    desc = wait_for(workflows, accepted.run_id)
    assert desc["status"] == "FAILED"
    assert state_names(workflows, accepted.run_id).count("RunSandboxTask") == sandbox_settings.max_start_attempts
    run = sandbox.get_run(runtime, admin, accepted.run_id)
    assert run.status == "failed" and "CannotPullContainerError" in (run.reason or "")
    assert f"({sandbox_settings.max_start_attempts} attempts)" in (run.reason or "")
    assert call_of(runtime, admin.tenant_id, "s6", "c6").status == "failed"


def test_invalid_request_object_fails_the_run_with_the_containers_error(runtime, admin, workflows,
                                                                         sandbox_settings, monkeypatch) -> None:
    """The container's error object (exit 2) becomes the reason; nothing is retried."""
    def corrupt(self: sandbox.SandboxObjects, run_id: Any, request: Any) -> None:
        # Not what the API writes: a request object damaged in the bucket.
        self.s3.put_object(Bucket=self.bucket, Key=self.request_key(run_id), Body=b'{"code": ""}')

    monkeypatch.setattr(sandbox.SandboxObjects, "put_request", corrupt)
    accepted = start(runtime, admin, code="print(2)")
    desc = wait_for(workflows, accepted.run_id)
    assert desc["status"] == "FAILED"
    assert "WaitBeforeRestart" not in state_names(workflows, accepted.run_id)
    run = sandbox.get_run(runtime, admin, accepted.run_id)
    assert run.status == "failed" and (run.reason or "").startswith("sandbox invalid_request: code")


@pytest.mark.parametrize("status", ["succeeded", "failed"])
def test_collect_is_idempotent(runtime, admin, workflows, sandbox_settings, status) -> None:
    """A retried CollectResult invocation finds the stored run and changes nothing."""
    accepted = start(runtime, admin, code="print(1)" if status == "succeeded" else "raise SystemExit(4)")
    assert wait_for(workflows, accepted.run_id)["status"] == "SUCCEEDED"
    before = outbox_events(runtime, admin.tenant_id)
    again = sandbox.collect_result(runtime, admin.tenant_id, accepted.run_id, None)
    assert again == {"retry": False, "retry_after_s": 0, "status": status, "infra_failure": False}
    assert outbox_events(runtime, admin.tenant_id) == before
    assert sandbox.get_run(runtime, admin, accepted.run_id).status == status


def test_run_deleted_with_its_session_while_running(runtime, admin, workflows, sandbox_settings,
                                                    monkeypatch) -> None:
    """DeleteContext during a run: the run goes with the session, the workflow ends quietly and
    leaves no objects behind."""
    from context_engine.services import turns

    real = ecs_local.run_container

    def delete_session_meanwhile(environ: dict[str, str], s3: Any) -> int:
        turns.delete_session(runtime, admin, "s8")
        return real(environ, s3)

    monkeypatch.setattr(ecs_local, "run_container", delete_session_meanwhile)
    register_call(runtime, admin, "s8", "c8")
    accepted = start(runtime, admin, code="print(1)", session_id="s8", call_id="c8")
    assert wait_for(workflows, accepted.run_id)["status"] == "SUCCEEDED"
    with pytest.raises(NotFound):
        sandbox.get_run(runtime, admin, accepted.run_id)
    assert objects_left(workflows, accepted.run_id) == []
    assert not [d for t, d in outbox_events(runtime, admin.tenant_id) if t == "SandboxRunFinished"]
