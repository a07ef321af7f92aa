"""Governance over HTTP against `context-engine serve`: privacy policy on write, GDPR export
and erase as jobs, the audit log (query, verify) and who may use them."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def call(server, method: str, path: str, body: Any = None, *, key: str) -> tuple[int, Any]:  # type: ignore[no-untyped-def]
    status, _, payload = server.call(method, path, body, key=key)
    return status, payload


def poll(fn: Callable[[], Any], ok: Callable[[Any], bool], timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = fn()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; last value: {str(value)[:500]}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def tenant(server):  # type: ignore[no-untyped-def]
    name = f"gov-{uuid.uuid4().hex[:8]}"
    return {role: server.create_key(name, role) for role in ("admin", "writer", "reader", "auditor")}


def job_done(server, key: str, job_id: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return poll(lambda: call(server, "GET", f"/v1/jobs/{job_id}", key=key)[1],
                lambda job: job and job.get("status") in ("succeeded", "failed"))


def test_policy_export_erase_and_audit(server, tenant) -> None:  # type: ignore[no-untyped-def]
    admin, writer, auditor = tenant["admin"], tenant["writer"], tenant["auditor"]
    status, settings = call(server, "PUT", "/v1/tenant", {
        "classification": "confidential",
        "privacy_policy": {"default": "keep", "actions": {"email": "mask", "payment_card": "redact"}},
        "retention": {"turns_days": 365}}, key=admin)
    assert status == 200 and settings["retention"] == {"turns_days": 365, "tool_results_days": None,
                                                       "memories_days": None}
    status, _ = call(server, "POST", "/v1/sessions/gov-s1/turns", {
        "agent_id": "bot", "user_id": "alice", "question": "Mail alice@example.com, card 4111 1111 1111 1111",
        "answer": "Stored."}, key=writer)
    assert status == 201
    call(server, "POST", "/v1/sessions/gov-s2/turns", {"agent_id": "bot", "user_id": "bob", "question": "Hi from bob",
                                                      "answer": "Hello bob"}, key=writer)
    _, page = call(server, "GET", "/v1/sessions/gov-s1/turns", key=writer)
    stored = page["items"][0]["question"]
    assert "alice@example.com" not in stored and "a***@example.com" in stored and "[CARD]" in stored

    # Export: a job; its result names the file in the server's data dir.
    status, accepted = call(server, "POST", "/v1/users/alice/export", key=admin)
    assert status == 202 and accepted["status"] == "queued"
    job = job_done(server, admin, accepted["job_id"])
    assert job["status"] == "succeeded", job
    path = Path(job["result"]["location"]["path"])
    assert path.is_relative_to(server.data_dir.resolve())
    doc = json.loads(path.read_text())
    assert doc["user_id"] == "alice" and doc["counts"]["turns"] == 1
    assert doc["classification"]["tenant"] == "confidential"
    assert "bob" not in json.dumps(doc["sessions"])

    # Erase: a job; afterwards alice's session is gone, bob's is not, the export file too.
    status, erase = call(server, "DELETE", "/v1/users/alice", key=admin)
    assert status == 202
    job = job_done(server, admin, erase["job_id"])
    assert job["status"] == "succeeded", job
    assert job["result"]["steps"]["sessions"]["turns"] == 1
    assert call(server, "GET", "/v1/sessions/gov-s1", key=writer)[0] == 404
    assert call(server, "GET", "/v1/sessions/gov-s2", key=writer)[0] == 200
    assert not path.exists()

    # The audit log: request records with their callers, the erasure with counts, the domain
    # events from the pipeline; and the chain verifies.
    def actions() -> set[str]:
        status, page = call(server, "GET", "/v1/audit?limit=500", key=auditor)
        assert status == 200
        return {r["action"] for r in page["items"]}

    wanted = {"tenant.update", "turn.write", "turns.list", "user.export", "user.exported", "user.erase",
              "user.erased", "event.TurnWritten", "event.UserErased"}
    poll(actions, lambda seen: wanted <= seen)
    _, erased = call(server, "GET", "/v1/audit?action=user.erased", key=auditor)
    assert erased["items"][0]["resource_id"] == "alice"
    assert "alice@example.com" not in json.dumps(erased) and "4111" not in json.dumps(erased)
    status, report = call(server, "GET", "/v1/audit/verify", key=auditor)
    assert status == 200 and report["ok"] and report["first_broken"] is None and report["head"]["seq"] >= 9

    # Newest first, one record per page, following the cursor.
    _, first = call(server, "GET", "/v1/audit?order=desc&limit=1", key=auditor)
    _, second = call(server, "GET", f"/v1/audit?order=desc&limit=1&cursor={first['next_cursor']}", key=auditor)
    assert second["items"][0]["seq"] == first["items"][0]["seq"] - 1


@pytest.mark.parametrize(("role", "method", "path"), [
    ("writer", "GET", "/v1/audit"), ("reader", "GET", "/v1/audit/verify"),
    ("auditor", "POST", "/v1/users/alice/export"), ("auditor", "DELETE", "/v1/users/alice"),
    ("writer", "DELETE", "/v1/users/alice"), ("reader", "PUT", "/v1/tenant")])
def test_refusals(server, tenant, role, method, path) -> None:  # type: ignore[no-untyped-def]
    body = {"classification": "public"} if method == "PUT" else None
    status, error = call(server, method, path, body, key=tenant[role])
    assert status == 403 and error["error"]["code"] == "forbidden"


def test_another_tenants_admin_sees_nothing_of_this_tenant(server, tenant) -> None:  # type: ignore[no-untyped-def]
    other = server.create_key(f"gov-other-{uuid.uuid4().hex[:6]}", "admin")
    status, page = call(server, "GET", "/v1/audit?limit=500", key=other)
    assert status == 200
    assert all(r["actor"] != "system" or r["action"] != "user.erased" for r in page["items"])
    mine = call(server, "GET", "/v1/audit?limit=500", key=tenant["auditor"])[1]["items"]
    assert not {r["id"] for r in mine} & {r["id"] for r in page["items"]}
