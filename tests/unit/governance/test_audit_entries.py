"""Pure parts of the audit trail: domain events and API requests as audit entries, which
routes are audited, cursors, and the governance function's event dispatch."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import pytest

from context_engine.audit.chain import AuditOutcome
from context_engine.audit.events import entry_for_event
from context_engine.audit.http import NOT_AUDITED, ROUTES, RequestInfo, audited, build_entry, outcome_of, spec_for
from context_engine.errors import Conflict, Forbidden, NotFound, Unauthorized, ValidationFailed
from context_engine.events.samples import DETAILS, envelope
from context_engine.models.api import WriteTurnRequest
from context_engine.models.domain import Principal, Role
from context_engine.privacy.sensitive import is_sensitive_key
from context_engine.services.audit import _cursor
from context_engine.services.governance import event_kind
from context_engine.wiring import DOMAIN_EVENTS, HTTP_ROUTES

PRINCIPAL = Principal(tenant_id="t1", key_id="key_1", role=Role.writer)


@pytest.mark.parametrize("detail_type", DOMAIN_EVENTS)
def test_every_domain_event_becomes_a_valid_entry_without_content(detail_type: str) -> None:
    env = envelope(detail_type)
    entry = entry_for_event(env)
    record = entry.to_record("t1", 1)  # would raise on content-named details, floats, long strings
    assert record.id == str(env.event_id) and record.action == f"event.{detail_type}"
    assert record.resource_type != "event", "every domain event names the resource it is about"
    assert not any(is_sensitive_key(k) for k in record.details)
    if "user_id" in DETAILS[detail_type]:
        assert record.details["user_id"] == DETAILS[detail_type]["user_id"]


def test_an_event_that_names_its_actor_is_attributed() -> None:
    env = envelope("TurnWritten")
    env.detail = {**env.detail, "actor": {"key_id": "key_9", "role": "writer", "request_id": "r-1"},
                  "question": "must not be audited", "ratio": 0.5}
    entry = entry_for_event(env)
    assert (entry.actor, entry.role, entry.request_id) == ("key_9", "writer", "r-1")
    assert "question" not in entry.details and "actor" not in entry.details
    assert entry.details["ratio"] == "0.5"


def test_every_mutating_route_is_audited_and_reads_are_declared() -> None:
    for key in HTTP_ROUTES:
        method = key.split(" ", 1)[0]
        spec = spec_for(key)
        if method != "GET":
            assert spec is not None, f"{key} changes data but is not audited"
        else:
            assert spec is not None or key in NOT_AUDITED, f"{key}: declare it in audit.http (private or not)"
    assert all(k.startswith("GET ") for k in NOT_AUDITED)
    assert spec_for("POST /v1/brand/new") is not None  # mutating routes nobody declared yet: audited anyway
    assert spec_for("GET /v1/brand/new") is None
    assert ROUTES["POST /v1/context/query"].private_read


@pytest.mark.parametrize(("exc", "outcome"), [
    (Forbidden("x"), AuditOutcome.DENIED), (Unauthorized("x"), AuditOutcome.DENIED),
    (NotFound("x"), AuditOutcome.NOT_FOUND), (Conflict("x"), AuditOutcome.FAILED),
    (RuntimeError("x"), AuditOutcome.FAILED)])
def test_outcomes(exc: Exception, outcome: AuditOutcome) -> None:
    assert outcome_of(exc) is outcome


def test_request_entries_carry_identifiers_never_content() -> None:
    body = WriteTurnRequest(agent_id="a1", user_id="u1", question="my secret", answer="your secret")
    response = SimpleNamespace(status_code=201, body=SimpleNamespace(turn_id=uuid.UUID(int=7)))
    entry = build_entry(ROUTES["POST /v1/sessions/{session_id}/turns"], PRINCIPAL,
                        RequestInfo("req-1", "Root=1-abc", {"session_id": "s1"}), {"body": body, "session_id": "s1"},
                        outcome=AuditOutcome.SUCCESS, status=201, response=response)
    assert entry.resource_id == str(uuid.UUID(int=7)) and entry.request_id == "req-1" and entry.trace_id
    assert entry.details == {"agent_id": "a1", "user_id": "u1", "session_id": "s1", "status": 201,
                             "turn_id": str(uuid.UUID(int=7))}
    assert "secret" not in entry.model_dump_json()


def test_the_wrapper_records_success_and_failure_and_keeps_the_signature() -> None:
    records: list[Any] = []

    def view(session_id: str, flag: bool = False) -> Any:
        if flag:
            raise ValidationFailed("bad")
        return SimpleNamespace(status_code=200, body=None)

    wrapped = audited("GET /v1/sessions/{session_id}/turns", view, caller=lambda: PRINCIPAL,
                      current_event=lambda: None, sink=lambda t, e: records.append((t, e)))
    import inspect

    assert list(inspect.signature(wrapped).parameters) == ["session_id", "flag"]
    wrapped(session_id="s1")
    with pytest.raises(ValidationFailed):
        wrapped(session_id="s1", flag=True)
    assert [(t, e.action, e.outcome, e.details.get("status")) for t, e in records] == [
        ("t1", "turns.list", AuditOutcome.SUCCESS, 200), ("t1", "turns.list", AuditOutcome.FAILED, 422)]


def test_unaudited_reads_are_not_wrapped() -> None:
    def view() -> None:
        return None

    assert audited("GET /v1/health", view, caller=lambda: PRINCIPAL, current_event=lambda: None) is view


def test_cursors_belong_to_one_order() -> None:
    assert _cursor(None, True) is None
    assert _cursor("d:42", True) == 42 and _cursor("a:7", False) == 7
    for bad, newest in (("a:7", True), ("d:x", True), ("42", False)):
        with pytest.raises(ValidationFailed):
            _cursor(bad, newest)


def test_the_governance_function_tells_its_events_apart() -> None:
    assert event_kind({"requestContext": {}, "routeKey": "GET /v1/audit"}) == "http"
    assert event_kind({"Records": [{"eventSource": "aws:sqs", "body": "{}"}]}) == "jobs"
    assert event_kind({"source": "aws.events", "detail-type": "Scheduled Event"}) == "schedule"
    with pytest.raises(ValueError):
        event_kind({"Records": [{"eventSource": "aws:s3"}]})
