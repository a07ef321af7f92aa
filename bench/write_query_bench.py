"""Issue 2 benchmark: WriteQA and QueryContext latency in process on embedded PostgreSQL.

Drives the real Lambda handlers with API Gateway v2 events (validation, auth context,
service, PostgreSQL), 10k turns in one tenant spread over 100 sessions. Prints
p50/p95/p99 and throughput; not a test. Usage: make bench-write [N=10000]
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")
os.environ.setdefault("CONTEXT_ENGINE_EMBEDDER", "hashing")


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def report(name: str, ms: list[float]) -> None:
    print(f"{name:<28} n={len(ms):>6}  p50={pct(ms, 50):7.2f} ms  p95={pct(ms, 95):7.2f} ms  "
          f"p99={pct(ms, 99):7.2f} ms  mean={statistics.mean(ms):6.2f} ms  ({1000 / statistics.mean(ms):,.0f}/s)")


def main() -> None:
    n = int(os.environ.get("N", "10000"))
    data_dir = Path(os.environ.get("BENCH_DATA_DIR") or tempfile.mkdtemp(prefix="ce-bench-"))
    os.environ["CONTEXT_ENGINE_DATA_DIR"] = str(data_dir)
    from context_engine.local.gateway import LocalGateway, LocalLambdaContext, load_function
    from context_engine.runtime import build_runtime, set_runtime

    rt = build_runtime()
    set_runtime(rt)
    gateway = LocalGateway()
    write, query = load_function("write").handler, load_function("query").handler
    auth = {"lambda": {"tenant_id": "bench", "key_id": "k", "role": "admin", "agent_id": ""}}
    with rt.db.owner() as conn:
        conn.execute("insert into tenants (id, name) values ('bench', 'bench') on conflict do nothing")

    def event(method: str, path: str, body: dict) -> dict:
        route, params = gateway.match(method, path)  # type: ignore[misc]
        ev = gateway._event(route, method, path, "", {"content-type": "application/json"},
                            json.dumps(body).encode(), params, "127.0.0.1")
        ev["requestContext"]["authorizer"] = auth
        return ev

    sessions = 100
    write_ms: list[float] = []
    tracemalloc.start()
    t0 = time.perf_counter()
    for i in range(n):
        s = f"s{i % sessions}"
        ev = event("POST", f"/v1/sessions/{s}/turns", {
            "agent_id": "agent", "user_id": f"u{i % 10}", "question": f"Question {i}: what about topic {i % 97}?",
            "answer": f"Answer {i}: a reasonably long answer about topic {i % 97} " * 3})
        start = time.perf_counter()
        res = write(ev, LocalLambdaContext("write"))
        write_ms.append((time.perf_counter() - start) * 1000)
        assert res["statusCode"] == 201, res
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    query_ms: list[float] = []
    for i in range(2000):
        s = f"s{i % sessions}"
        ev = event("POST", "/v1/context/query", {"agent_id": "agent", "user_id": f"u{i % 10}", "session_id": s,
                                                  "query": f"topic {i % 97}", "token_budget": 2000})
        start = time.perf_counter()
        res = query(ev, LocalLambdaContext("query"))
        query_ms.append((time.perf_counter() - start) * 1000)
        assert res["statusCode"] == 200, res
        assert json.loads(res["body"])["token_count"] <= 2000

    print(f"\nIssue 2 benchmark — {n} turns, 1 tenant, {sessions} sessions, embedded PostgreSQL 16, "
          f"{os.cpu_count()} cores, in process through the Lambda handlers")
    report("WriteQA (handler)", write_ms)
    report("QueryContext (handler)", query_ms)
    print(f"write throughput: {n / elapsed:,.0f} turns/s sequential; peak traced Python memory while writing: "
          f"{peak / 1e6:.1f} MB")
    rt.flush_marks()  # outbox marks are batched; settle them before the pool closes
    rt.db.close()
    if not os.environ.get("BENCH_DATA_DIR"):
        from context_engine.db.embedded import stop_embedded

        stop_embedded(data_dir)


if __name__ == "__main__":
    sys.exit(main())
