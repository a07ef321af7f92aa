"""Sandbox runs over HTTP against `context-engine serve`: 202 at once, then poll the run; the run
executes through the sandbox_run ASL on the local workflow engine and the local sandbox host."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

TERMINAL = {"succeeded", "failed", "timed_out"}


def new_session() -> str:
    return f"s-{uuid.uuid4().hex[:10]}"


def wait_run(server: Any, run_id: str, *, key: str = "default", timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        status, _, body = server.call("GET", f"/v1/sandbox/runs/{run_id}", key=key)
        assert status == 200, body
        if body["status"] in TERMINAL or time.monotonic() > deadline:
            return dict(body)
        time.sleep(0.05)


def test_run_with_a_tool_call_over_http(server) -> None:
    session = new_session()
    status, _, _ = server.call("POST", f"/v1/sessions/{session}/tool-calls", {
        "agent_id": "agent-1", "user_id": "user-1", "calls": [{"call_id": "calc-1", "name": "python"}]})
    assert status == 201
    code = "import sys, statistics\nprint(statistics.mean(map(int, sys.stdin.read().split())))"
    status, _, accepted = server.call("POST", "/v1/sandbox/runs", {
        "language": "python", "code": code, "stdin": "3 4 8", "session_id": session, "call_id": "calc-1",
        "limits": {"timeout_s": 10}})
    assert status == 202 and accepted["status"] == "queued", accepted
    run = wait_run(server, accepted["run_id"])
    assert run["status"] == "succeeded", run
    assert (run["stdout"], run["stderr"], run["exit_code"]) == ("5\n", "", 0)
    assert run["isolation"] in ("bwrap", "seccomp") and run["duration_ms"] > 0
    assert not run["stdout_truncated"] and not run["stderr_truncated"]
    assert run["limits"] == {"timeout_s": 10.0, "memory_mb": 256, "output_kb": 64}

    status, _, ctx = server.call("POST", "/v1/context/query", {
        "agent_id": "agent-1", "user_id": "user-1", "session_id": session, "query": "what was the mean?",
        "token_budget": 1000, "include": ["tool"]})
    assert status == 200
    [tool] = [s for s in ctx["snippets"] if s["type"] == "tool"]
    assert "[tool python succeeded]" in tool["content"] and '"stdout":"5\\n"' in tool["content"].replace(" ", "")
    # A second run for the same call is refused.
    status, _, body = server.call("POST", "/v1/sandbox/runs", {"code": "print(2)", "session_id": session,
                                                               "call_id": "calc-1"})
    assert status == 409 and body["error"]["details"] == [{"loc": ["body", "call_id"]}]


def test_failed_and_timed_out_runs(server) -> None:
    _, _, failing = server.call("POST", "/v1/sandbox/runs", {"code": "import sys\nprint('x')\nsys.exit(3)"})
    _, _, sleeping = server.call("POST", "/v1/sandbox/runs", {"code": "import time\ntime.sleep(20)",
                                                              "limits": {"timeout_s": 0.5}})
    failed = wait_run(server, failing["run_id"])
    assert (failed["status"], failed["exit_code"], failed["stdout"]) == ("failed", 3, "x\n")
    timed_out = wait_run(server, sleeping["run_id"])
    assert timed_out["status"] == "timed_out" and timed_out["exit_code"] is None and "timeout" in timed_out["reason"]


def test_validation_sizes_roles_and_isolation(server) -> None:
    status, _, body = server.call("POST", "/v1/sandbox/runs", {"code": "print(1)", "limits": {"timeout_s": 61}})
    assert status == 422 and body["error"]["code"] == "validation_error"
    assert [d["loc"] for d in body["error"]["details"]] == [["body", "limits", "timeout_s"]]
    status, _, body = server.call("POST", "/v1/sandbox/runs", {"code": "print(1)", "call_id": "c"})
    assert status == 422 and body["error"]["details"][0]["loc"] == ["body", "call_id"]
    status, _, body = server.call("POST", "/v1/sandbox/runs", {"code": "#" * (64 * 1024 + 1)})
    assert status == 413 and body["error"]["details"][0]["loc"] == ["code"]
    status, _, body = server.call("POST", "/v1/sandbox/runs", {"code": "print(1)", "session_id": new_session()})
    assert status == 404

    status, _, accepted = server.call("POST", "/v1/sandbox/runs", {"code": "print('mine')"})
    assert status == 202
    run_id = accepted["run_id"]
    reader = server.create_key("dev", "reader")
    assert wait_run(server, run_id, key=reader)["stdout"] == "mine\n"
    status, _, body = server.call("POST", "/v1/sandbox/runs", {"code": "print(1)"}, key=reader)
    assert status == 403
    other = server.create_key(f"t-{uuid.uuid4().hex[:8]}", "admin")
    status, _, body = server.call("GET", f"/v1/sandbox/runs/{run_id}", key=other)
    assert status == 404 and "mine" not in json.dumps(body)
    assert server.call("GET", f"/v1/sandbox/runs/{uuid.uuid4()}")[0] == 404


def test_tenant_maxima_over_http(server) -> None:
    from context_engine.db.embedded import start_embedded

    tenant = f"t-{uuid.uuid4().hex[:8]}"
    key = server.create_key(tenant, "writer")
    import psycopg

    with psycopg.connect(start_embedded(server.data_dir)) as conn:  # the server's own database
        conn.execute("update tenants set limits = %s where id = %s",
                     [json.dumps({"sandbox": {"timeout_s": 2, "output_kb": 4}}), tenant])
    status, _, body = server.call("POST", "/v1/sandbox/runs", {"code": "print(1)", "limits": {"timeout_s": 5,
                                                                                              "output_kb": 8}}, key=key)
    assert status == 422
    assert [d["loc"] for d in body["error"]["details"]] == [["body", "limits", "timeout_s"],
                                                            ["body", "limits", "output_kb"]]
    status, _, accepted = server.call("POST", "/v1/sandbox/runs", {"code": "print(1)"}, key=key)
    assert status == 202
    assert wait_run(server, accepted["run_id"], key=key)["limits"] == {"timeout_s": 2.0, "memory_mb": 256,
                                                                       "output_kb": 4}
