"""Event models, their generated JSON Schemas and samples, and the one wiring source that
CDK and the local runtime both read (rules → queues → functions, workflow → tasks)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import jsonschema
import pytest
from pydantic import ValidationError

from context_engine.events import samples, schemas
from context_engine.events.models import (
    EVENT_MODELS,
    ContextRebuildRequested,
    EventBridgeEvent,
    UnknownEvent,
    new_event,
    parse_detail,
)
from context_engine.pipeline import asl
from context_engine.pipeline.consumer import parse_record
from context_engine.pipeline.consumers import CONSUMERS
from context_engine.pipeline.tasks import run_rebuild_task
from context_engine.wiring import (
    DOMAIN_EVENTS,
    EVENT_RULES,
    FUNCTIONS,
    HTTP_ROUTES,
    QUEUES,
    SCHEDULES,
    WORKFLOWS,
)

REPO = Path(__file__).resolve().parents[3]


def test_every_design_event_has_a_model() -> None:
    assert set(EVENT_MODELS) == {"TurnWritten", "ToolCallUpdated", "ContextRebuildRequested", "ContextCompressed",
                                 "ContextDeleted", "MemoryWritten", "UserErased", "SandboxRunFinished"}
    assert tuple(EVENT_MODELS) == DOMAIN_EVENTS


def test_schema_files_are_up_to_date() -> None:
    assert schemas.stale_files() == [], "run: python -m context_engine.events.schemas --write"


def test_sample_files_are_up_to_date() -> None:
    assert samples.stale_files() == [], "run: python -m context_engine.events.samples --write"


def test_stale_detection_notices_an_edited_schema(tmp_path: Path) -> None:
    schemas.write(tmp_path)
    assert schemas.stale_files(tmp_path) == []
    (tmp_path / "TurnWritten.json").write_text("{}")
    (tmp_path / "Removed.json").write_text("{}")
    assert schemas.stale_files(tmp_path) == ["Removed.json", "TurnWritten.json"]


@pytest.mark.parametrize("detail_type", sorted(EVENT_MODELS))
def test_eventbridge_samples_validate_against_their_schema(detail_type: str) -> None:
    schema = json.loads((REPO / "events" / "schemas" / f"{detail_type}.json").read_text())
    sample = json.loads((REPO / "events" / "samples" / "eventbridge" / f"{detail_type}.json").read_text())
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(sample)
    wrong = {**sample, "detail": {**sample["detail"], "event_id": "not-a-uuid"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(wrong)


def test_sqs_samples_carry_eventbridge_events_the_consumers_parse() -> None:
    for path in (REPO / "events" / "samples" / "sqs").glob("*.json"):
        for record in json.loads(path.read_text())["Records"]:
            envelope, detail = parse_record(record["body"])
            assert detail.event_id == envelope.event_id and detail.tenant_id == envelope.tenant_id


def test_eventbridge_envelope_round_trip() -> None:
    env = new_event(ContextRebuildRequested, "t1", job_id=uuid.uuid4(), session_id="s", agent_id="a", user_id="u",
                    strategy="truncate", trigger="api", keep_tail=3)
    eb = EventBridgeEvent.of(env, "context-engine")
    back = EventBridgeEvent.model_validate_json(eb.model_dump_json(by_alias=True)).envelope()
    assert (back.event_id, back.tenant_id, back.detail_type, back.detail) == (
        env.event_id, "t1", "ContextRebuildRequested", env.detail)
    parsed = parse_detail(back.detail_type, {**back.detail, "event_id": str(back.event_id), "tenant_id": "t1"})
    assert isinstance(parsed, ContextRebuildRequested) and parsed.keep_tail == 3


def test_producers_cannot_emit_an_invalid_event() -> None:
    with pytest.raises(ValidationError):
        new_event(ContextRebuildRequested, "t1", job_id=uuid.uuid4(), session_id="s", agent_id="a", user_id="u",
                  strategy="shrink", trigger="api")


def test_unknown_detail_types_and_extra_fields() -> None:
    with pytest.raises(UnknownEvent):
        parse_detail("Nope", {})
    detail = json.loads((REPO / "events/samples/eventbridge/TurnWritten.json").read_text())["detail"]
    assert parse_detail("TurnWritten", {**detail, "added_later": 1}).seq == 1  # consumers tolerate new fields


# --- wiring --------------------------------------------------------------------------
def test_rules_queues_and_consumers_connect() -> None:
    for rule in EVENT_RULES.values():
        assert rule.queue in QUEUES
        assert set(rule.detail_types) <= set(DOMAIN_EVENTS)
    for queue in QUEUES.values():
        assert queue.consumer in FUNCTIONS
        assert (REPO / FUNCTIONS[queue.consumer].code_dir / "handler.py").is_file()
        # AWS: the visibility timeout must cover a whole batch, at least 6x the function timeout.
        assert queue.visibility_timeout_s >= 6 * FUNCTIONS[queue.consumer].timeout_s
    for rule in ("index", "compress", "audit"):
        assert QUEUES[EVENT_RULES[rule].queue].consumer in CONSUMERS
    audited = {t for r in EVENT_RULES.values() if r.queue == "audit" for t in r.detail_types}
    assert audited == set(DOMAIN_EVENTS)
    for schedule in SCHEDULES.values():
        assert (REPO / FUNCTIONS[schedule.function].code_dir / "handler.py").is_file()
    assert HTTP_ROUTES["POST /v1/sessions/{session_id}/rebuild"] == "write"


def _definition(name: str) -> dict:  # type: ignore[type-arg]
    return asl.load(name, lambda fn: f"arn:aws:lambda:us-east-1:123456789012:function:{fn}")


@pytest.mark.parametrize("name", sorted(WORKFLOWS))
def test_workflow_files_match_the_wiring(name: str) -> None:
    spec = WORKFLOWS[name]
    text = asl.definition_text(spec)
    assert asl.placeholders(text) == set(spec.substitutions)
    assert all(f in FUNCTIONS for f in (*spec.task_functions, *spec.started_by))
    states = _definition(name)["States"]
    targets = {s.get("Next") for s in states.values()} | {c["Next"] for s in states.values()
                                                          for c in s.get("Choices", []) + s.get("Catch", [])}
    targets |= {s["Default"] for s in states.values() if "Default" in s}
    targets.discard(None)
    assert targets <= set(states), "every transition names a state"
    assert set(states) - targets == {_definition(name)["StartAt"]}, "every state is reachable"


def test_rebuild_tasks_retry_transient_errors_and_catch_everything() -> None:
    states = _definition("rebuild_context")["States"]
    tasks = {n: s for n, s in states.items() if s["Type"] == "Task"}
    assert {t["Parameters"]["action"] for t in tasks.values()} == {
        "load_window", "run_strategy", "store_summary", "invalidate_cache", "emit_compressed", "finish_noop",
        "mark_failed"}
    for name, task in tasks.items():
        assert "TransientError" in task["Retry"][0]["ErrorEquals"], name
        if name != "MarkFailed":
            assert task["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "MarkFailed"}]
    assert states["MarkFailed"]["Next"] == "Failed" and states["Failed"]["Type"] == "Fail"
    choices = {c["StringEquals"]: c["Next"] for c in states["ChooseStrategy"]["Choices"] if "StringEquals" in c}
    assert choices == {"summarize": "Summarize", "truncate": "Truncate", "importance": "Importance"}


def test_a_placeholder_without_wiring_is_an_error(monkeypatch, tmp_path: Path) -> None:
    (tmp_path / "statemachines").mkdir()
    text = asl.definition_text(WORKFLOWS["rebuild_context"]).replace("${RebuildFunctionArn}", "${Unknown}", 1)
    (tmp_path / "statemachines" / "rebuild_context.asl.json").write_text(text)
    monkeypatch.setenv("CONTEXT_ENGINE_REPO_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="placeholders"):
        _definition("rebuild_context")


def test_an_unknown_task_action_is_rejected() -> None:
    with pytest.raises(ValidationError):
        run_rebuild_task(None, {"action": "drop_tables"})  # type: ignore[arg-type]
