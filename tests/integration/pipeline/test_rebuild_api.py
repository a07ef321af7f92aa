"""RebuildContext over HTTP (the local API Gateway stand-in, the deployed handler modules):
202 with a job, then GET /v1/jobs/{id} follows it to succeeded; errors like every route."""

from __future__ import annotations

import json
from typing import Any

import pytest

from context_engine.auth import create_key
from context_engine.local.gateway import LocalGateway
from context_engine.models.domain import Role
from context_engine.pipeline.local import LocalDispatcher

from .conftest import write_turns


@pytest.fixture
def http(runtime, tenant_id):  # type: ignore[no-untyped-def]
    gateway = LocalGateway()
    keys = {role: create_key(runtime.db, tenant_id, role)[1] for role in (Role.admin, Role.reader)}

    def call(method: str, path: str, body: Any = None, role: Role = Role.admin) -> tuple[int, Any]:
        resp = gateway.handle(method, path, {"authorization": f"Bearer {keys[role]}",
                                             "content-type": "application/json"},
                              json.dumps(body).encode() if body is not None else b"")
        return resp.status, json.loads(resp.body) if resp.body else None

    return call


def test_rebuild_answers_202_and_the_job_reaches_succeeded(runtime, admin, http) -> None:
    write_turns(runtime, admin, "s1", 6)
    with LocalDispatcher(runtime, run_relay=False) as dispatcher:
        status, body = http("POST", "/v1/sessions/s1/rebuild", {"strategy": "importance", "target_tokens": 120})
        assert status == 202 and set(body) == {"job_id"}
        assert dispatcher.drain(60)
    status, job = http("GET", f"/v1/jobs/{body['job_id']}")
    assert status == 200
    assert job["status"] == "succeeded" and job["kind"] == "compress"
    assert job["resource"]["strategy"] == "importance" and job["resource"]["trigger"] == "api"
    assert job["result"]["compressed"] is True and job["result"]["summary_tokens"] <= 120
    status, session = http("GET", "/v1/sessions/s1")
    assert session["window"]["strategy"] == "importance"
    assert session["window"]["summary_seqs"] == [1, 2, 3, 4, 5, 6]


def test_the_job_is_queued_until_the_pipeline_runs(runtime, admin, http) -> None:
    write_turns(runtime, admin, "s1", 2)
    status, body = http("POST", "/v1/sessions/s1/rebuild", {})
    assert status == 202
    status, job = http("GET", f"/v1/jobs/{body['job_id']}")
    assert (status, job["status"], job["resource"]["strategy"]) == (200, "queued", "summarize")


@pytest.mark.parametrize("body,field", [({"strategy": "magic"}, "strategy"), ({"target_tokens": 5}, "target_tokens"),
                                        ({"strategy": "truncate", "extra": 1}, "extra")])
def test_invalid_rebuild_requests_are_422_with_the_field(runtime, admin, http, body, field) -> None:
    write_turns(runtime, admin, "s1", 1)
    status, err = http("POST", "/v1/sessions/s1/rebuild", body)
    assert status == 422
    assert field in json.dumps(err["error"]["details"])


def test_unknown_session_is_404_and_readers_may_not_rebuild(runtime, admin, http) -> None:
    assert http("POST", "/v1/sessions/nope/rebuild", {})[0] == 404
    write_turns(runtime, admin, "s1", 1)
    assert http("POST", "/v1/sessions/s1/rebuild", {}, role=Role.reader)[0] == 403
    with runtime.db.tenant(admin.tenant_id) as conn:
        assert conn.execute("select count(*) as n from jobs").fetchone()["n"] == 0
