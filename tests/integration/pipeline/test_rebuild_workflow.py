"""The real statemachines/rebuild_context.asl.json on moto's Step Functions executor, every
Task dispatched to the real ``functions/rebuild`` handler against the real database."""

from __future__ import annotations

import pytest

from context_engine.cache.keys import session_prefix
from context_engine.models.api import RebuildRequest
from context_engine.pipeline.sfn_local import LocalStepFunctions
from context_engine.services import compress, jobs, turns

from .conftest import invoke, sqs_event_for, write_turns


def _start(captured, job_id):  # type: ignore[no-untyped-def]
    """Deliver the job's ContextRebuildRequested to the compress consumer, as SQS would."""
    requested = [e for e in captured if e.detail_type == "ContextRebuildRequested"
                 and e.detail["job_id"] == str(job_id)]
    assert len(requested) == 1
    response = invoke("compress", sqs_event_for(requested, "compress"))
    assert response == {"batchItemFailures": []}


def _execution(workflows: LocalStepFunctions, job_id) -> str:  # type: ignore[no-untyped-def]
    arns = [a for a in workflows.executions if a.endswith(f":{job_id}")]
    assert len(arns) == 1
    return arns[0]


def _states(workflows: LocalStepFunctions, arn: str) -> list[str]:
    return [e["stateEnteredEventDetails"]["name"] for e in workflows.history(arn) if "stateEnteredEventDetails" in e]


@pytest.mark.parametrize("strategy", ["summarize", "truncate", "importance"])
def test_rebuild_runs_the_asl_to_succeeded(runtime, admin, workflows, captured, strategy) -> None:
    written = write_turns(runtime, admin, "s1", 40)
    before = turns.get_session(runtime, admin, "s1").window
    key = session_prefix(admin.tenant_id, "a1", "u1", "s1") + "somequery"
    runtime.cache.set(key, b"stale context", 60)

    accepted = compress.request_rebuild(runtime, admin, "s1", RebuildRequest(strategy=strategy, target_tokens=300))
    assert jobs.get_job(runtime, admin, accepted.job_id).status == "queued"
    _start(captured, accepted.job_id)
    desc = workflows.wait(_execution(workflows, accepted.job_id))

    assert desc["status"] == "SUCCEEDED", desc
    job = jobs.get_job(runtime, admin, accepted.job_id)
    assert job.status == "succeeded"
    assert job.result["compressed"] is True and job.result["strategy"] == strategy
    assert job.result["covers_seq"] == 40 and job.result["turns_covered"] == 40
    window = turns.get_session(runtime, admin, "s1").window
    assert window.strategy == strategy and window.summary
    assert 0 < window.summary_tokens <= 300
    assert window.summary_covers_seq == 40 and window.summary_seqs == list(range(1, 41))
    assert window.version == before.version + 1
    assert runtime.cache.get(key) is None
    compressed = [e for e in captured if e.detail_type == "ContextCompressed"]
    assert len(compressed) == 1 and compressed[0].detail["window_version"] == window.version
    # Compression changes only the window: the raw turns are all still there.
    page = turns.list_turns(runtime, admin, "s1", 0, 100)
    assert [t.id for t in page.items] == [w.turn_id for w in written]
    states = _states(workflows, _execution(workflows, accepted.job_id))
    assert states == ["LoadWindow", "ChooseStrategy", strategy.capitalize(), "StoreSummary", "InvalidateCache",
                      "EmitCompressed", "Done"]


def test_failing_task_reaches_the_catch_path_and_the_job_says_why(runtime, admin, workflows, captured) -> None:
    write_turns(runtime, admin, "s1", 5)
    accepted = compress.request_rebuild(runtime, admin, "s1", RebuildRequest(strategy="summarize"))
    turns.delete_session(runtime, admin, "s1")  # LoadWindow will not find it: a non-retryable error

    _start(captured, accepted.job_id)
    arn = _execution(workflows, accepted.job_id)
    desc = workflows.wait(arn)

    assert desc["status"] == "FAILED"
    assert desc["error"] == "RebuildFailed"
    assert _states(workflows, arn) == ["LoadWindow", "MarkFailed", "Failed"]
    job = jobs.get_job(runtime, admin, accepted.job_id)
    assert job.status == "failed"
    assert job.error == {"code": "SessionGone", "message": "session s1 was deleted"}


def test_transient_task_error_is_retried_by_the_state_machine(runtime, admin, aws, captured) -> None:
    from context_engine.pipeline.sfn_local import invoke_handler
    from context_engine.pipeline.workflows import set_workflow_starter

    failures = []

    def flaky(name, payload):  # type: ignore[no-untyped-def]
        if payload.get("action") == "store_summary" and not failures:
            failures.append(payload)
            raise compress.TransientError("database failover")
        return invoke_handler(name, payload)

    engine = LocalStepFunctions(manage_mock=False, invoker=flaky).open()
    set_workflow_starter(engine)
    try:
        write_turns(runtime, admin, "s1", 8)
        accepted = compress.request_rebuild(runtime, admin, "s1", RebuildRequest(strategy="importance"))
        _start(captured, accepted.job_id)
        arn = _execution(engine, accepted.job_id)
        assert engine.wait(arn)["status"] == "SUCCEEDED"
        history = engine.history(arn)
    finally:
        set_workflow_starter(None)
        engine.close()
    assert len(failures) == 1
    assert [e["type"] for e in history].count("LambdaFunctionFailed") == 1
    assert jobs.get_job(runtime, admin, accepted.job_id).status == "succeeded"
    assert turns.get_session(runtime, admin, "s1").window.summary_covers_seq == 8


def test_redelivered_rebuild_request_starts_one_execution(runtime, admin, workflows, captured) -> None:
    write_turns(runtime, admin, "s1", 3)
    accepted = compress.request_rebuild(runtime, admin, "s1", RebuildRequest(strategy="truncate"))
    requested = [e for e in captured if e.detail_type == "ContextRebuildRequested"]
    for _ in range(3):
        assert invoke("compress", sqs_event_for(requested, "compress")) == {"batchItemFailures": []}
    assert len(workflows.executions) == 1
    assert workflows.wait(workflows.executions[0])["status"] == "SUCCEEDED"
    assert jobs.get_job(runtime, admin, accepted.job_id).status == "succeeded"
