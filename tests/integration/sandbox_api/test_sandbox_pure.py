"""The sandbox service's pure pieces: how a stopped task is judged, what the tool call gets,
what is stored of the code's output (no database, no moto)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from uuid import uuid4

from context_engine.repos.sandbox_runs import SandboxRun
from context_engine.sandbox.models import Isolation, SandboxResult, SandboxStatus
from context_engine.services import sandbox


def task_error(stop_code: str, reason: str, exit_code: int | None) -> dict[str, str]:
    container = {"Name": "sandbox"} | ({"ExitCode": exit_code} if exit_code is not None else {})
    return {"Error": "States.TaskFailed",
            "Cause": json.dumps({"StopCode": stop_code, "StoppedReason": reason, "Containers": [container]})}


def test_only_tasks_whose_container_never_ran_are_started_again() -> None:
    assert sandbox.describe_task_failure(task_error("TaskFailedToStart", "CannotPullContainerError: x", None))[0]
    assert sandbox.describe_task_failure(task_error("", "ResourceInitializationError: ENI", None))[0]
    # The container ran (an exit code): restarting would run the code twice.
    retry, reason = sandbox.describe_task_failure(task_error("EssentialContainerExited", "exited", 137))
    assert not retry and reason == "sandbox task stopped: EssentialContainerExited: exited (exit code 137)"
    assert not sandbox.describe_task_failure(task_error("UserInitiated", "stopped by an operator", None))[0]
    assert sandbox.describe_task_failure(None) == (False, "the sandbox task exited without writing a result")
    retry, reason = sandbox.describe_task_failure({"Error": "ECS.AccessDeniedException", "Cause": "denied"})
    assert not retry and reason == "ECS.AccessDeniedException: denied"


def run(status: str, stdout: str, stderr: str, reason: str | None = None) -> SandboxRun:
    now = datetime.now(UTC)
    return SandboxRun(id=uuid4(), status=status, language="python", limits={}, code_bytes=1, code_sha256="0",
                      stdin_bytes=0, agent_id=None, session_id="s", call_id="c", created_by="k", created_role="admin",
                      stdout=stdout, stderr=stderr, exit_code=1, duration_ms=12.4, stdout_truncated=False,
                      stderr_truncated=False, reason=reason, isolation="bwrap", start_failures=0, created_at=now,
                      started_at=now, finished_at=now, updated_at=now)


def test_tool_call_gets_the_result_or_the_error_within_the_payload_limit() -> None:
    result, error = sandbox.tool_call_payload(run("succeeded", "ok\n", ""), 64 * 1024)
    assert error is None and result is not None
    assert result["stdout"] == "ok\n" and result["duration_ms"] == 12 and not result["stdout_truncated"]

    long_out, long_err = "o" * 50_000 + "END-OF-STDOUT", "Traceback (most recent call last):\n" + "e" * 50_000 + "Boom"
    result, error = sandbox.tool_call_payload(run("failed", long_out, long_err, "memory limit"), 16 * 1024)
    assert result is None and error is not None
    assert len(json.dumps(error).encode()) <= 16 * 1024
    # The beginning of stdout and the end of stderr (where the exception is) are kept.
    assert error["stdout"].startswith("ooo") and error["stderr"].endswith("Boom")
    assert error["stdout_truncated"] and error["stderr_truncated"] and error["reason"] == "memory limit"


def test_output_cut_respects_utf8_boundaries() -> None:
    result, _ = sandbox.tool_call_payload(run("succeeded", "é" * 10_000, ""), 4 * 1024)
    assert result is not None and set(result["stdout"]) == {"é"} and result["stdout_truncated"]


def test_nul_bytes_from_the_code_can_be_stored() -> None:
    outcome = sandbox.Outcome.of(SandboxResult(status=SandboxStatus.SUCCEEDED, stdout="a\x00b", stderr="\x00",
                                               exit_code=0, duration_ms=1, isolation=Isolation.BWRAP))
    assert outcome.stdout == "a\ufffdb" and outcome.stderr == "\ufffd" and outcome.isolation == "bwrap"
