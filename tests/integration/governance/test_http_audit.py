"""The API over the local gateway (authorizer + the deployed handlers): every mutating call and
every private read leaves an audit record with the caller and the outcome; private reads fail
closed when their record cannot be stored; only auditors and admins read the log; logs never
carry turn content or keys."""

from __future__ import annotations

import io
import json
import logging
from contextlib import redirect_stderr, redirect_stdout
from typing import Any

import pytest

from context_engine.auth import create_key
from context_engine.local.gateway import LocalGateway
from context_engine.models.domain import Role
from context_engine.services import audit

PII_EMAIL = "jane.roe@example.org"
PII_CARD = "4111 1111 1111 1111"


class Api:
    def __init__(self, gateway: LocalGateway, key: str) -> None:
        self.gateway, self.key = gateway, key

    def __call__(self, method: str, path: str, body: Any = None, key: str | None = None) -> tuple[int, Any]:
        raw = json.dumps(body).encode() if body is not None else b""
        resp = self.gateway.handle(method, path, {"authorization": f"Bearer {key or self.key}",
                                                  "content-type": "application/json"}, raw)
        return resp.status, (json.loads(resp.body) if resp.body else None)


@pytest.fixture
def keys(gov_runtime, tenant_id) -> dict[str, tuple[str, str]]:  # type: ignore[no-untyped-def]
    return {role.value: create_key(gov_runtime.db, tenant_id, role) for role in Role}


@pytest.fixture
def api(gov_runtime, keys) -> Api:  # type: ignore[no-untyped-def]
    return Api(LocalGateway(), keys["admin"][1])


def audit_log(api: Api) -> list[dict[str, Any]]:
    status, page = api("GET", "/v1/audit?limit=500")
    assert status == 200, page
    return page["items"]


def test_calls_and_private_reads_are_audited_with_caller_and_outcome(api, keys) -> None:  # type: ignore[no-untyped-def]
    writer_id, writer_key = keys["writer"]
    reader_id, reader_key = keys["reader"]
    status, turn = api("POST", "/v1/sessions/s1/turns", {"agent_id": "a1", "user_id": "u1", "question": "Hi?",
                                                         "answer": "Hello."}, key=writer_key)
    assert status == 201
    assert api("GET", "/v1/sessions/s1/turns", key=reader_key)[0] == 200
    assert api("GET", "/v1/sessions/nope/turns", key=reader_key)[0] == 404
    assert api("DELETE", "/v1/sessions/s1", key=reader_key)[0] == 403
    assert api("POST", "/v1/context/query", {"agent_id": "a1", "user_id": "u1", "session_id": "s1", "query": "hi",
                                             "token_budget": 100}, key=reader_key)[0] == 200
    records = audit_log(api)
    by_action = {(r["action"], r["actor"], r["outcome"]) for r in records}
    assert ("turn.write", writer_id, "success") in by_action
    assert ("turns.list", reader_id, "success") in by_action
    assert ("turns.list", reader_id, "not_found") in by_action
    assert ("session.delete", reader_id, "denied") in by_action
    assert ("context.query", reader_id, "success") in by_action
    write = next(r for r in records if r["action"] == "turn.write")
    assert write["resource_type"] == "turn" and write["resource_id"] == turn["turn_id"]
    assert write["details"]["user_id"] == "u1" and write["details"]["session_id"] == "s1"
    assert write["request_id"] and write["role"] == "writer"
    assert "Hello." not in json.dumps(records) and "Hi?" not in json.dumps(records)
    # The verify endpoint recomputes the chain of everything above.
    status, report = api("GET", "/v1/audit/verify")
    assert status == 200 and report["ok"] and report["checked"] >= len(records)


def test_private_reads_fail_closed_when_the_audit_trail_is_down(api, keys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    api("POST", "/v1/sessions/s1/turns", {"agent_id": "a1", "user_id": "u1", "question": "secret plan",
                                          "answer": "ok"})

    def broken(*args: object, **kwargs: object) -> int:
        raise ConnectionError("audit intake unavailable")

    monkeypatch.setattr(audit, "record", broken)
    status, body = api("GET", "/v1/sessions/s1/turns", key=keys["reader"][1])
    assert status == 503 and "secret plan" not in json.dumps(body)
    # A write has committed before its record is written: it still succeeds (its event is audited).
    status, _ = api("POST", "/v1/sessions/s1/turns", {"agent_id": "a1", "user_id": "u1", "question": "more",
                                                      "answer": "ok"})
    assert status == 201


@pytest.mark.parametrize("role", ["writer", "reader"])
def test_only_auditors_and_admins_read_the_audit_log(api, keys, role) -> None:  # type: ignore[no-untyped-def]
    key = keys[role][1]
    assert api("GET", "/v1/audit", key=key)[0] == 403
    assert api("GET", "/v1/audit/verify", key=key)[0] == 403
    assert api("GET", "/v1/tenant", key=key)[0] == 403
    assert api("GET", "/v1/audit", key=keys["auditor"][1])[0] == 200
    assert api("GET", "/v1/audit/verify", key=keys["auditor"][1])[0] == 200
    denied = [r for r in audit_log(api) if r["actor"] == keys[role][0]]
    assert {(r["action"], r["outcome"]) for r in denied} == {("audit.query", "denied"), ("audit.verify", "denied"),
                                                             ("tenant.read", "denied")}


@pytest.mark.parametrize("role", ["writer", "reader", "auditor"])
def test_only_admins_export_erase_and_change_tenant_settings(api, keys, role) -> None:  # type: ignore[no-untyped-def]
    key = keys[role][1]
    assert api("POST", "/v1/users/u1/export", key=key)[0] == 403
    assert api("DELETE", "/v1/users/u1", key=key)[0] == 403
    assert api("PUT", "/v1/tenant", {"classification": "public"}, key=key)[0] == 403


def test_audit_query_validates_its_parameters(api) -> None:  # type: ignore[no-untyped-def]
    assert api("GET", "/v1/audit?limit=0")[0] == 422
    assert api("GET", "/v1/audit?since=yesterday")[0] == 422
    assert api("GET", "/v1/audit?cursor=d:5&order=asc")[0] == 422


def test_logs_carry_no_content_keys_or_secrets(api, keys, caplog) -> None:  # type: ignore[no-untyped-def]
    from context_engine.observability.powertools import logger

    admin_key = keys["admin"][1]
    status, _ = api("PUT", "/v1/tenant", {"privacy_policy": {"default": "keep", "actions": {"email": "hash"}}})
    assert status == 200
    out, err = io.StringIO(), io.StringIO()
    previous = logger.log_level
    logger.setLevel("DEBUG")
    # Our loggers at DEBUG (the powertools Logger and every context_engine module). Library
    # loggers keep their level: powertools' own DEBUG records echo request bodies (reported).
    caplog.set_level(logging.DEBUG, logger="context_engine")
    try:
        with redirect_stdout(out), redirect_stderr(err):
            question = f"Mail {PII_EMAIL}, card {PII_CARD}, key {admin_key}"
            assert api("POST", "/v1/sessions/s9/turns", {"agent_id": "a1", "user_id": "u1", "question": question,
                                                         "answer": "sure"})[0] == 201
            assert api("POST", "/v1/memories", {"agent_id": "a1", "user_id": "u1", "content": question})[0] == 201
            assert api("POST", "/v1/context/query", {"agent_id": "a1", "user_id": "u1", "session_id": "s9",
                                                     "query": question, "token_budget": 200})[0] == 200
            # Failures log too: a validation error quoting the body, a job that fails.
            assert api("POST", "/v1/sessions/s9/turns", {"agent_id": "a1", "user_id": "u1", "question": question,
                                                         "answer": 5})[0] == 422
            assert api("POST", "/v1/users/u1/export")[0] == 202
            from context_engine.governance import jobs as job_runner

            job_runner.wait_local(30)
    finally:
        logger.setLevel(previous)
    captured = out.getvalue() + err.getvalue() + "\n".join(
        f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "privacy policy applied" in captured, "our DEBUG records were not captured: the test would prove nothing"
    for secret in (PII_EMAIL, "4111 1111", admin_key, "Mail "):
        assert secret not in captured, f"{secret[:8]}... leaked into logs"


def test_async_commit_access_records_are_recorded_too(api, keys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from context_engine.governance.settings import get_governance_settings

    monkeypatch.setenv("CONTEXT_ENGINE_AUDIT_ACCESS_COMMIT", "async")
    get_governance_settings.cache_clear()
    assert api("GET", "/v1/sessions/s1/turns", key=keys["reader"][1])[0] == 404
    assert ("turns.list", keys["reader"][0]) in {(r["action"], r["actor"]) for r in audit_log(api)}


def test_a_write_commits_its_audit_record_with_it_and_a_failed_write_leaves_only_a_failure(  # type: ignore[no-untyped-def]
        api, keys, gov_runtime, tenant_id, monkeypatch) -> None:
    """The write's success record is taken into the write's own transaction (one commit):
    exactly one record per call, replays included; a write that rolls back leaves no success
    record and no turn, only its failure record."""
    from context_engine.audit import http as audit_http

    body = {"agent_id": "a1", "user_id": "u1", "question": "Hi?", "answer": "Hello."}
    status, turn = api("POST", "/v1/sessions/s9/turns", body)
    assert status == 201
    headers = {"authorization": f"Bearer {keys['admin'][1]}", "content-type": "application/json",
               "idempotency-key": "k1"}
    for _ in range(2):  # first use, then a replay
        resp = api.gateway.handle("POST", "/v1/sessions/s9/turns", headers, json.dumps(body).encode())
        assert resp.status == 201
    # The session belongs to u1: a write for u2 is a conflict and writes nothing.
    assert api("POST", "/v1/sessions/s9/turns", {**body, "user_id": "u2"})[0] == 409

    real = audit_http.record_in_transaction

    def then_fail(*args: Any, **kwargs: Any) -> bool:
        real(*args, **kwargs)
        raise RuntimeError("the database went away before the commit")

    monkeypatch.setattr(audit_http, "record_in_transaction", then_fail)
    assert api("POST", "/v1/sessions/s9/turns", body)[0] == 500
    monkeypatch.undo()

    writes = [r for r in audit_log(api) if r["action"] == "turn.write" and r["details"].get("session_id") == "s9"]
    outcomes = sorted((r["outcome"], r["details"]["status"]) for r in writes)
    assert outcomes == [("failed", 409), ("failed", 500), ("success", 201), ("success", 201), ("success", 201)]
    assert turn["turn_id"] in {r["resource_id"] for r in writes}
    with gov_runtime.db.tenant(tenant_id) as conn:
        n = conn.execute("select count(*) n from turns where tenant_id = %s and session_id = 's9'", [tenant_id])
        assert n.fetchone()["n"] == 2  # the plain write and the keyed one; the replay, conflict and failure wrote none
