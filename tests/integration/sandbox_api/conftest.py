"""Sandbox API fixtures: moto (Step Functions executing the real sandbox_run ASL, S3, ECS) with
the Lambda tasks dispatched to the real sandbox handler and the ECS task run by the real runner
on the local sandbox host (context_engine.pipeline.ecs_local)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest
from moto import mock_aws

from context_engine.models.api import RegisterToolChainRequest
from context_engine.models.domain import Principal, Role
from context_engine.pipeline.sfn_local import LocalStepFunctions
from context_engine.pipeline.workflows import execution_arn, set_workflow_starter
from context_engine.services import sandbox, tools

MOTO_TEST_CONFIG: Any = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}


@pytest.fixture
def workflows() -> Iterator[LocalStepFunctions]:
    with mock_aws(config=MOTO_TEST_CONFIG):
        engine = LocalStepFunctions(manage_mock=False).open()
        set_workflow_starter(engine)
        yield engine
        set_workflow_starter(None)
        engine.close()


@pytest.fixture
def sandbox_settings(monkeypatch: pytest.MonkeyPatch) -> sandbox.SandboxSettings:
    """Local backend (no AWS configuration) and no wait between Fargate start attempts."""
    settings = sandbox.SandboxSettings(start_retry_wait_s=0)
    assert not settings.in_aws
    monkeypatch.setattr(sandbox, "get_sandbox_settings", lambda: settings)
    return settings


def principal(runtime: Any, tenant_id: str, role: Role, agent_id: str | None = None) -> Principal:
    from context_engine.auth import create_key

    key_id, _ = create_key(runtime.db, tenant_id, role, agent_id=agent_id)
    return Principal(tenant_id=tenant_id, key_id=key_id, role=role, agent_id=agent_id)


def register_call(runtime: Any, who: Principal, session_id: str, call_id: str, *, agent_id: str = "agent-1",
                  user_id: str = "user-1", name: str = "python") -> None:
    tools.register_chain(runtime, who, session_id, RegisterToolChainRequest.model_validate(
        {"agent_id": agent_id, "user_id": user_id, "calls": [{"call_id": call_id, "name": name,
                                                               "arguments": {"purpose": "compute"}}]}))


def wait_for(engine: LocalStepFunctions, run_id: UUID, timeout_s: float = 60) -> dict[str, Any]:
    """The execution's final description (its name is the run id)."""
    arn = execution_arn(engine.state_machines[sandbox.WORKFLOW], str(run_id))
    deadline = time.monotonic() + timeout_s
    while True:
        desc = engine.describe(arn)
        if desc["status"] != "RUNNING" or time.monotonic() > deadline:
            return desc
        time.sleep(0.02)


def state_names(engine: LocalStepFunctions, run_id: UUID) -> list[str]:
    arn = execution_arn(engine.state_machines[sandbox.WORKFLOW], str(run_id))
    return [e["stateEnteredEventDetails"]["name"] for e in engine.history(arn) if "stateEnteredEventDetails" in e]
