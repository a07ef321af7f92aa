"""Governance fixtures: a runtime whose data dir is the test's own (exports, privacy key),
governance settings read fresh from the environment, and helpers that write a user's data
through the real services."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from context_engine.governance import jobs as job_runner
from context_engine.governance.settings import get_governance_settings
from context_engine.models.api import (
    CreateMemoryRequest,
    RegisterToolChainRequest,
    ToolCallSpec,
    UpdateToolResultRequest,
    WriteTurnRequest,
)
from context_engine.models.domain import Memory, Principal
from context_engine.runtime import Runtime
from context_engine.services import memories, tools, turns
from context_engine.settings import Settings


@pytest.fixture
def gov_runtime(runtime: Runtime, tmp_path: Path) -> Iterator[Runtime]:
    runtime.settings = Settings(data_dir=tmp_path)
    get_governance_settings.cache_clear()
    yield runtime
    job_runner.wait_local(30)
    get_governance_settings.cache_clear()


@pytest.fixture
def manual_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Jobs are queued but not started in the background: the test runs them with run_job."""
    monkeypatch.setattr(job_runner, "submit", lambda *args, **kwargs: None)


@dataclass
class Writer:
    rt: Runtime
    principal: Principal

    def turn(self, session: str, user: str, question: str, answer: str = "ok", agent: str = "agent-1") -> UUID:
        resp, _ = turns.write_turn(self.rt, self.principal, session,
                                   WriteTurnRequest(agent_id=agent, user_id=user, question=question, answer=answer),
                                   None)
        return resp.turn_id

    def tool_call(self, session: str, user: str, call_id: str, arguments: dict[str, Any], result: Any,
                  agent: str = "agent-1") -> None:
        tools.register_chain(self.rt, self.principal, session, RegisterToolChainRequest(
            agent_id=agent, user_id=user, calls=[ToolCallSpec(call_id=call_id, name="lookup", arguments=arguments)]))
        tools.update_result(self.rt, self.principal, session, call_id,
                            UpdateToolResultRequest(status="succeeded", result=result))

    def memory(self, user: str | None, content: str, *, visibility: str = "private", agent: str = "agent-1",
               sources: list[UUID] | None = None) -> Memory:
        return memories.create(self.rt, self.principal, CreateMemoryRequest(
            agent_id=agent, user_id=user, visibility=visibility, content=content,  # type: ignore[arg-type]
            source_turn_ids=sources or []))


@pytest.fixture
def writer(gov_runtime: Runtime, admin: Principal) -> Writer:
    return Writer(gov_runtime, admin)
