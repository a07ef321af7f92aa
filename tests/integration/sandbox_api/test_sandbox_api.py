"""POST/GET /v1/sandbox/runs in the core: limits and their per-tenant maxima, sizes, roles,
tenant and agent isolation, tool-call linkage, and nothing half-written on a failed start."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError
from tests.integration.sandbox_api.conftest import principal, register_call, wait_for

from context_engine.errors import (
    Conflict,
    DependencyUnavailable,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    ValidationFailed,
)
from context_engine.models.api import SandboxRunRequest, UpdateToolResultRequest
from context_engine.models.domain import Role
from context_engine.repos import tool_calls
from context_engine.sandbox.models import MAX_CODE_BYTES, MAX_STDIN_BYTES, MAX_TIMEOUT_S
from context_engine.services import sandbox, tools


def request(**body: Any) -> SandboxRunRequest:
    return SandboxRunRequest.model_validate({"code": "print(1)", **body})


def set_tenant_limits(rt: Any, tenant: str, limits: dict[str, Any]) -> None:
    with rt.db.owner() as conn:
        conn.execute("update tenants set limits = %s where id = %s", [json.dumps(limits), tenant])


def run_count(rt: Any, tenant: str) -> int:
    with rt.db.tenant(tenant) as conn:
        row = conn.execute("select count(*) as n from sandbox_runs where tenant_id = %s", [tenant]).fetchone()
    return int(row["n"])


# --- limits ---------------------------------------------------------------------------------
def test_limits_above_the_tenants_maxima_are_422_naming_each_field(runtime, admin, workflows,
                                                                    sandbox_settings) -> None:
    set_tenant_limits(runtime, admin.tenant_id, {"sandbox": {"timeout_s": 2, "memory_mb": 128}})
    with pytest.raises(ValidationFailed) as err:
        sandbox.start_run(runtime, admin, request(limits={"timeout_s": 5, "memory_mb": 256, "output_kb": 8}))
    assert [d["loc"] for d in err.value.details] == [["body", "limits", "timeout_s"], ["body", "limits", "memory_mb"]]
    assert err.value.details[0]["limit"] == 2 and "at most 2 for this tenant" in err.value.details[0]["msg"]
    assert run_count(runtime, admin.tenant_id) == 0

    # Omitted limits are the defaults lowered to the tenant's maxima; asking within them is fine.
    lowered = sandbox.start_run(runtime, admin, request())
    within = sandbox.start_run(runtime, admin, request(limits={"timeout_s": 1.5, "memory_mb": 100}))
    assert sandbox.get_run(runtime, admin, lowered.run_id).limits.model_dump() == {
        "timeout_s": 2.0, "memory_mb": 128, "output_kb": 64}
    assert sandbox.get_run(runtime, admin, within.run_id).limits.model_dump() == {
        "timeout_s": 1.5, "memory_mb": 100, "output_kb": 64}
    for accepted in (lowered, within):
        assert wait_for(workflows, accepted.run_id)["status"] == "SUCCEEDED"


def test_hard_maxima_are_checked_by_the_request_model() -> None:
    with pytest.raises(ValidationError) as err:
        request(limits={"timeout_s": MAX_TIMEOUT_S + 1, "memory_mb": 8, "surprise": 1})
    assert {e["loc"] for e in err.value.errors()} == {
        ("limits", "timeout_s"), ("limits", "memory_mb"), ("limits", "surprise")}
    with pytest.raises(ValidationError) as err:
        request(call_id="c1")
    assert [e["loc"] for e in err.value.errors()] == [("call_id",)]
    with pytest.raises(ValidationError):
        request(language="javascript")


def test_tenant_maxima_never_exceed_the_hard_maxima_and_fail_closed(runtime, admin) -> None:
    from context_engine.models.domain import Tenant

    generous = Tenant(id="t", name="t", limits={"sandbox": {"timeout_s": 3600, "output_kb": 10}})
    assert sandbox.tenant_maxima(generous) == {"timeout_s": MAX_TIMEOUT_S, "memory_mb": 2048, "output_kb": 10}
    broken = Tenant(id="t", name="t", limits={"sandbox": {"timeout_s": "forever"}})
    # Not the hard maxima: a configuration that cannot be read falls back to the defaults.
    assert sandbox.tenant_maxima(broken) == {"timeout_s": 5.0, "memory_mb": 256, "output_kb": 64}
    assert sandbox.tenant_maxima(None) == {"timeout_s": MAX_TIMEOUT_S, "memory_mb": 2048, "output_kb": 1024}


# --- sizes ----------------------------------------------------------------------------------
def test_oversized_code_and_stdin_are_413_like_other_oversized_fields(runtime, admin, workflows,
                                                                       sandbox_settings) -> None:
    with pytest.raises(PayloadTooLarge) as err:
        sandbox.start_run(runtime, admin, request(code="#" * (MAX_CODE_BYTES + 1)))
    assert err.value.details[0]["loc"] == ["code"] and err.value.details[0]["limit"] == MAX_CODE_BYTES
    # Bytes, not characters: 'é' is two bytes of UTF-8.
    with pytest.raises(PayloadTooLarge):
        sandbox.start_run(runtime, admin, request(code="#" + "é" * (MAX_CODE_BYTES // 2)))
    with pytest.raises(PayloadTooLarge) as err:
        sandbox.start_run(runtime, admin, request(stdin="x" * (MAX_STDIN_BYTES + 1)))
    assert err.value.details[0]["loc"] == ["stdin"]
    assert run_count(runtime, admin.tenant_id) == 0


# --- roles and isolation ----------------------------------------------------------------------
def test_roles_and_tenant_and_agent_isolation(runtime, admin, tenant_id, workflows, sandbox_settings) -> None:
    register_call(runtime, admin, "sess-a", "call-a", agent_id="agent-a")
    accepted = sandbox.start_run(runtime, admin, request(session_id="sess-a", call_id="call-a"))
    assert wait_for(workflows, accepted.run_id)["status"] == "SUCCEEDED"

    reader = principal(runtime, tenant_id, Role.reader)
    assert sandbox.get_run(runtime, reader, accepted.run_id).stdout == "1\n"
    with pytest.raises(Forbidden):
        sandbox.start_run(runtime, reader, request())
    with pytest.raises(Forbidden):
        sandbox.get_run(runtime, principal(runtime, tenant_id, Role.auditor), accepted.run_id)

    writer_a = principal(runtime, tenant_id, Role.writer, agent_id="agent-a")
    assert sandbox.get_run(runtime, writer_a, accepted.run_id).status == "succeeded"
    # Another agent's key and another tenant's admin do not learn that the run exists.
    writer_b = principal(runtime, tenant_id, Role.writer, agent_id="agent-b")
    other_tenant = principal(runtime, f"{tenant_id}-other", Role.admin)
    for outsider in (writer_b, other_tenant):
        with pytest.raises(NotFound):
            sandbox.get_run(runtime, outsider, accepted.run_id)
    # ...nor may they attach a run to its session or tool call.
    for outsider in (writer_b, other_tenant):
        with pytest.raises(NotFound):
            sandbox.start_run(runtime, outsider, request(session_id="sess-a"))

    # A run started by an agent-scoped key without a session belongs to that agent.
    own = sandbox.start_run(runtime, writer_b, request())
    assert sandbox.get_run(runtime, writer_b, own.run_id).session_id is None
    with pytest.raises(NotFound):
        sandbox.get_run(runtime, writer_a, own.run_id)
    assert sandbox.get_run(runtime, admin, own.run_id).run_id == own.run_id
    assert wait_for(workflows, own.run_id)["status"] == "SUCCEEDED"


# --- tool-call linkage --------------------------------------------------------------------------
def test_tool_call_must_exist_be_open_and_get_one_run(runtime, admin, workflows, sandbox_settings) -> None:
    register_call(runtime, admin, "s1", "open-call")
    register_call(runtime, admin, "s1", "done-call")
    tools.update_result(runtime, admin, "s1", "done-call", UpdateToolResultRequest(status="succeeded", result="x"))

    with pytest.raises(NotFound) as err:
        sandbox.start_run(runtime, admin, request(session_id="no-such-session", call_id="open-call"))
    assert err.value.details == {"session_id": "no-such-session"}
    with pytest.raises(NotFound) as err:
        sandbox.start_run(runtime, admin, request(session_id="s1", call_id="no-such-call"))
    assert err.value.details == {"call_id": "no-such-call"}
    with pytest.raises(Conflict):
        sandbox.start_run(runtime, admin, request(session_id="s1", call_id="done-call"))

    first = sandbox.start_run(runtime, admin, request(session_id="s1", call_id="open-call"))
    with pytest.raises(Conflict) as conflict:
        sandbox.start_run(runtime, admin, request(session_id="s1", call_id="open-call"))
    assert conflict.value.details == [{"loc": ["body", "call_id"]}]
    assert wait_for(workflows, first.run_id)["status"] == "SUCCEEDED"
    assert run_count(runtime, admin.tenant_id) == 1


def test_a_call_finished_meanwhile_keeps_its_own_result(runtime, admin, workflows, sandbox_settings,
                                                         monkeypatch) -> None:
    """If the agent finishes the call itself while the run is queued, the run does not overwrite it."""
    register_call(runtime, admin, "s2", "c2")
    real_mark_running = sandbox.mark_running

    def agent_finishes_first(rt: Any, tenant_id: str, run_id: Any) -> Any:
        tools.update_result(rt, admin, "s2", "c2", UpdateToolResultRequest(status="failed", error="cancelled"))
        return real_mark_running(rt, tenant_id, run_id)

    monkeypatch.setattr(sandbox, "mark_running", agent_finishes_first)
    accepted = sandbox.start_run(runtime, admin, request(session_id="s2", call_id="c2"))
    assert wait_for(workflows, accepted.run_id)["status"] == "SUCCEEDED"
    assert sandbox.get_run(runtime, admin, accepted.run_id).stdout == "1\n"
    with runtime.db.tenant(admin.tenant_id) as conn:
        call = tool_calls.get(conn, admin.tenant_id, "s2", "c2")
    assert (call.status, call.error, call.result) == ("failed", "cancelled", None)


# --- nothing half-written -------------------------------------------------------------------------
def test_failed_start_leaves_nothing_behind(runtime, admin, workflows, sandbox_settings, monkeypatch) -> None:
    class Down:
        def start(self, workflow: str, name: str, payload: dict[str, Any]) -> str:
            raise ConnectionError("states endpoint unreachable")

    monkeypatch.setattr(sandbox, "get_workflow_starter", lambda: Down())
    register_call(runtime, admin, "s3", "c3")
    with pytest.raises(DependencyUnavailable):
        sandbox.start_run(runtime, admin, request(session_id="s3", call_id="c3"))
    assert run_count(runtime, admin.tenant_id) == 0
    backend = sandbox.sandbox_backend()
    assert backend.objects.s3.list_objects_v2(Bucket=backend.objects.bucket).get("KeyCount", 0) == 0
    with runtime.db.tenant(admin.tenant_id) as conn:
        assert tool_calls.get(conn, admin.tenant_id, "s3", "c3").status == "pending"
    # The call is free for a run once the sandbox is back.
    monkeypatch.undo()
    monkeypatch.setattr(sandbox, "get_sandbox_settings", lambda: sandbox_settings)
    accepted = sandbox.start_run(runtime, admin, request(session_id="s3", call_id="c3"))
    assert wait_for(workflows, accepted.run_id)["status"] == "SUCCEEDED"


def test_without_a_workflow_engine_the_api_answers_503(runtime, admin, sandbox_settings) -> None:
    from context_engine.pipeline.workflows import set_workflow_starter

    set_workflow_starter(None)
    with pytest.raises(DependencyUnavailable):
        sandbox.start_run(runtime, admin, request())
    assert run_count(runtime, admin.tenant_id) == 0
