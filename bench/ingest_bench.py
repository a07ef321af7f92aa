"""Local ingest: write acknowledged → searchable, through the real pipeline in one process.

What ``context-engine serve`` runs: the write handler (API Gateway v2 events), the outbox
publish into the LocalDispatcher (EventBridge rules → in-memory queues → the index consumer
handler with SQS batches), indexing with the local embedder (MiniLM int8 ONNX by default)
into embedded PostgreSQL, plus the compress and audit consumers on the same events.

A turn is *searchable* when its index row is written (``indexed_at``); lag = that time −
the moment its write was acknowledged. Writers run at full speed from W threads; prints
throughput (turns/s acknowledged and indexed) and the lag distribution. Not a test.

    .venv/bin/python bench/ingest_bench.py            # N=1000 W=2, minilm
    N=300 RATE=5 .venv/bin/python bench/ingest_bench.py   # paced: lag without a backlog
    N=3000 W=4 CONTEXT_ENGINE_EMBEDDER=hashing .venv/bin/python bench/ingest_bench.py
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")
os.environ.setdefault("CONTEXT_ENGINE_EMBEDDER", "minilm")


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def locomo_turns(n: int) -> list[tuple[str, str]]:
    """Utterance pairs of the LoCoMo dev conversations (realistic lengths), repeated to n."""
    path = Path(__file__).resolve().parents[2] / "shared" / "bench" / "locomo_dev.json"
    pairs: list[tuple[str, str]] = []
    if path.exists():
        for conv in json.loads(path.read_text()):
            c = conv["conversation"]
            for key in sorted((k for k in c if k.startswith("session_") and isinstance(c[k], list)),
                              key=lambda k: int(k.split("_")[1])):
                utts = [f"{u['speaker']}: {u['text']}" for u in c[key]]
                pairs += [(utts[i], utts[i + 1] if i + 1 < len(utts) else "(no reply)") for i in range(0, len(utts), 2)]
    if not pairs:
        pairs = [(f"Question {i} about the trip to Lisbon?", f"Answer {i}: we leave on day {i}.") for i in range(500)]
    return [pairs[i % len(pairs)] for i in range(n)]


def main() -> None:
    n, writers = int(os.environ.get("N", "1000")), int(os.environ.get("W", "2"))
    data_dir = Path(os.environ.get("BENCH_DATA_DIR") or tempfile.mkdtemp(prefix="ce-ingest-"))
    os.environ["CONTEXT_ENGINE_DATA_DIR"] = str(data_dir)
    from context_engine.local.gateway import LocalGateway, LocalLambdaContext, load_function
    from context_engine.pipeline.local import LocalDispatcher
    from context_engine.runtime import build_runtime, set_runtime

    rt = build_runtime()
    set_runtime(rt)
    tenant = f"ingest-{int(time.time())}"
    with rt.db.owner() as conn:
        conn.execute("insert into tenants (id, name) values (%s, %s) on conflict do nothing", [tenant, tenant])
    rt.embedder.embed(["warm up the embedder"])  # model load is a cold start, not ingest
    gateway, write = LocalGateway(), load_function("write").handler
    auth = {"lambda": {"tenant_id": tenant, "key_id": "bench", "role": "admin", "agent_id": ""}}
    texts = locomo_turns(n)
    acked: dict[str, float] = {}
    lock = threading.Lock()

    def event(i: int) -> dict:
        session = f"s{i % 20}"
        route, params = gateway.match("POST", f"/v1/sessions/{session}/turns")  # type: ignore[misc]
        q, a = texts[i]
        ev = gateway._event(route, "POST", f"/v1/sessions/{session}/turns", "", {"content-type": "application/json"},
                            json.dumps({"agent_id": "agent", "user_id": f"u{i % 5}", "question": q,
                                        "answer": a}).encode(), params, "127.0.0.1")
        ev["requestContext"]["authorizer"] = auth
        return ev

    rate = float(os.environ.get("RATE", "0"))  # turns/s over all writers; 0: as fast as possible

    def writer(k: int) -> None:
        for i in range(k, n, writers):
            if rate:
                time.sleep(max(0.0, t0 + i / rate - time.time()))
            res = write(event(i), LocalLambdaContext("write"))
            now = time.time()
            assert res["statusCode"] == 201, res
            with lock:
                acked[json.loads(res["body"])["turn_id"]] = now

    with LocalDispatcher(rt, run_relay=False) as dispatcher:
        t0 = time.time()
        threads = [threading.Thread(target=writer, args=(k,)) for k in range(writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        t_acked = time.time()
        deadline = t_acked + 900
        while time.time() < deadline:
            with rt.db.tenant(tenant) as conn:
                left = conn.execute("select count(*) as n from turns where tenant_id = %s and indexed_at is null",
                                    [tenant]).fetchone()["n"]
            if not left:
                break
            time.sleep(0.1)
        dispatcher.drain(300)
        with rt.db.tenant(tenant) as conn:
            rows = conn.execute("select id, indexed_at from turns where tenant_id = %s", [tenant]).fetchall()
    indexed = {str(r["id"]): r["indexed_at"].timestamp() for r in rows if r["indexed_at"]}
    lags = [(indexed[t] - acked[t]) * 1000 for t in acked if t in indexed]
    t_done = max(indexed.values())
    print(f"ingest: {n} turns, {writers} writers, rate={'max' if not rate else f'{rate:g}/s'}, "
          f"embedder={rt.settings.embedder}, cores={os.cpu_count()}")
    print(f"  acknowledged: {n / (t_acked - t0):8.1f} turns/s  ({t_acked - t0:.1f} s)")
    print(f"  searchable:   {len(indexed) / (t_done - t0):8.1f} turns/s  (write start → last indexed "
          f"{t_done - t0:.1f} s; {len(indexed)}/{n} indexed)")
    print(f"  lag ack→searchable: p50={pct(lags, 50):.0f} ms  p95={pct(lags, 95):.0f} ms  "
          f"p99={pct(lags, 99):.0f} ms  max={max(lags):.0f} ms  mean={statistics.mean(lags):.0f} ms")
    dead = {q: len(dispatcher.dead_letters(q)) for q in dispatcher.queues}
    print(f"  dead letters: {dead}   (at {datetime.now(UTC):%H:%M:%S} UTC, data dir {data_dir})")
    rt.db.close()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
