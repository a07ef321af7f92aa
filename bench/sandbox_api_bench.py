"""Sandbox runs through the HTTP API, end to end (not a test: prints numbers, asserts nothing).

    .venv/bin/python bench/sandbox_api_bench.py [--runs 40] [--concurrency 8] [--concurrent-runs 32]

Starts ``context-engine serve`` on a fresh data dir, then for ``print(1)``: POST /v1/sandbox/runs
→ 202 latency, and POST → finished latency (polling GET every 5 ms), i.e. the API, the
sandbox_run ASL on the local workflow engine (moto), the local ECS emulation and the local
sandbox host together; then the same with N runs in flight.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

KEY = "ce_" + "benchKey0123456789abcdefghijklmnopqrstuv"[:40]
TERMINAL = {"succeeded", "failed", "timed_out"}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def call(url: str, method: str, path: str, body: Any = None) -> Any:
    req = urllib.request.Request(url + path, data=json.dumps(body).encode() if body is not None else None,
                                 method=method)
    req.add_header("content-type", "application/json")
    req.add_header("authorization", f"Bearer {KEY}")
    with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310 - our own local server
        return json.loads(resp.read())


def one_run(url: str, poll_s: float) -> tuple[float, float]:
    started = time.perf_counter()
    accepted = call(url, "POST", "/v1/sandbox/runs", {"code": "print(1)"})
    answered = time.perf_counter()
    while (run := call(url, "GET", f"/v1/sandbox/runs/{accepted['run_id']}"))["status"] not in TERMINAL:
        time.sleep(poll_s)
    finished = time.perf_counter()
    if run["status"] != "succeeded" or run["stdout"] != "1\n":
        raise RuntimeError(f"benchmark run failed: {run}")
    return (answered - started) * 1000, (finished - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--concurrent-runs", type=int, default=32)
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="sandbox-api-bench-"))
    port = free_port()
    cli = str(Path(sys.executable).with_name("context-engine"))
    env = {**os.environ, "CONTEXT_ENGINE_DEV_KEY": KEY, "CONTEXT_ENGINE_EMBEDDER": "hashing"}
    with open(data_dir / "serve.log", "w") as log:
        server = subprocess.Popen([cli, "serve", "--port", str(port), "--data-dir", str(data_dir)],  # noqa: S603
                                  env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(url + "/v1/health", timeout=1)  # noqa: S310
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        for _ in range(5):  # first runs load the handlers, provision moto, check bubblewrap
            one_run(url, 0.005)
        sequential = [one_run(url, 0.005) for _ in range(args.runs)]
        post = [p for p, _ in sequential]
        total = [t for _, t in sequential]
        print(f"sequential n={args.runs}: POST→202 p50={percentile(post, 0.5):.1f} ms "
              f"p95={percentile(post, 0.95):.1f} ms; POST→finished p50={percentile(total, 0.5):.1f} ms "
              f"p95={percentile(total, 0.95):.1f} ms mean={statistics.fmean(total):.1f} ms")
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
            concurrent = list(pool.map(lambda _: one_run(url, 0.02), range(args.concurrent_runs)))
        wall = time.perf_counter() - started
        finished = [t for _, t in concurrent]
        print(f"{args.concurrency} in flight, n={args.concurrent_runs}: {args.concurrent_runs / wall:.1f} runs/s, "
              f"POST→finished p50={percentile(finished, 0.5):.1f} ms p95={percentile(finished, 0.95):.1f} ms")
    finally:
        server.terminate()
        server.wait(15)
        from context_engine.db.embedded import start_embedded, stop_embedded

        start_embedded(data_dir)  # attach to the server's postgres, then stop it
        stop_embedded(data_dir)


if __name__ == "__main__":
    main()
