"""The tasks of the rebuild_context workflow: the state machine passes ``{"action": ...}``
plus the state it needs; this parses it (pydantic) and calls the core in
``services.compress``. Errors propagate: their class name is the ASL error name that the
state machine's Retry/Catch match on."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field, TypeAdapter

from context_engine.runtime import Runtime
from context_engine.services import compress


class _LoadWindow(BaseModel):
    action: Literal["load_window"]
    job_id: UUID
    tenant_id: str


class _WithPlan(BaseModel):
    plan: compress.Plan


class _RunStrategy(_WithPlan):
    action: Literal["run_strategy"]
    strategy: str | None = None


class _StoreSummary(_WithPlan):
    action: Literal["store_summary"]


class _InvalidateCache(_WithPlan):
    action: Literal["invalidate_cache"]


class _EmitCompressed(_WithPlan):
    action: Literal["emit_compressed"]
    stored: dict[str, Any]


class _FinishNoop(_WithPlan):
    action: Literal["finish_noop"]


class _MarkFailed(BaseModel):
    action: Literal["mark_failed"]
    job_id: UUID
    tenant_id: str
    error: dict[str, Any] = Field(default_factory=dict)


TaskInput = Annotated[
    _LoadWindow | _RunStrategy | _StoreSummary | _InvalidateCache | _EmitCompressed | _FinishNoop | _MarkFailed,
    Field(discriminator="action"),
]
_adapter: TypeAdapter[Any] = TypeAdapter(TaskInput)


def run_rebuild_task(rt: Runtime, event: dict[str, Any]) -> dict[str, Any]:
    task = _adapter.validate_python(event)
    match task:
        case _LoadWindow():
            return compress.load_window(rt, task.tenant_id, task.job_id).model_dump(mode="json")
        case _RunStrategy():
            if task.strategy and task.strategy != task.plan.strategy:
                raise ValueError(f"state {task.strategy!r} ran for a {task.plan.strategy!r} plan")
            return compress.run_strategy(rt, task.plan)
        case _StoreSummary():
            return compress.store_summary(rt, task.plan)
        case _InvalidateCache():
            return compress.invalidate_cache(rt, task.plan)
        case _EmitCompressed():
            return compress.emit_compressed(rt, task.plan, task.stored)
        case _FinishNoop():
            return compress.finish_noop(rt, task.plan)
        case _MarkFailed():
            return compress.mark_failed(rt, task.tenant_id, task.job_id, task.error)
    raise AssertionError("unreachable: the discriminator covers every action")
