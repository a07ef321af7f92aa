"""Local sandbox latency and throughput (not a test: prints numbers, asserts nothing).

    .venv/bin/python bench/sandbox_bench.py [--runs 50] [--concurrency 8] [--concurrent-runs 48]

For each available isolation mode: ``print(1)`` start-to-result latency (p50/p95/p99 over
sequential runs), then throughput with N runs in flight. Needs root for the seccomp fallback's
uid drop (or Landlock) and bubblewrap for the bwrap mode.
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from context_engine.sandbox import Isolation, SandboxHost, SandboxRequest, SandboxStatus, SandboxUnavailableError, run
from context_engine.sandbox.local import local_host

REQUEST = SandboxRequest(code="print(1)")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def timed_run(host: SandboxHost) -> float:
    started = time.perf_counter()
    result = run(REQUEST, host=host)
    elapsed = (time.perf_counter() - started) * 1000
    if result.status is not SandboxStatus.SUCCEEDED or result.stdout != "1\n":
        raise RuntimeError(f"benchmark run failed: {result}")
    return elapsed


def bench(host: SandboxHost, runs: int, concurrency: int, concurrent_runs: int) -> None:
    for _ in range(3):  # warm the page cache and our own imports
        timed_run(host)
    latencies = [timed_run(host) for _ in range(runs)]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        concurrent = list(pool.map(lambda _: timed_run(host), range(concurrent_runs)))
    wall = time.perf_counter() - started
    print(
        f"{host.isolation.value:8} sequential n={runs}: p50={percentile(latencies, 0.50):.1f} ms "
        f"p95={percentile(latencies, 0.95):.1f} ms p99={percentile(latencies, 0.99):.1f} ms "
        f"mean={statistics.fmean(latencies):.1f} ms"
    )
    print(
        f"{'':8} {concurrency} in flight, n={concurrent_runs}: {concurrent_runs / wall:.1f} runs/s, "
        f"latency p50={percentile(concurrent, 0.50):.1f} ms p95={percentile(concurrent, 0.95):.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--concurrent-runs", type=int, default=48)
    args = parser.parse_args()
    for isolation in (Isolation.BWRAP, Isolation.SECCOMP):
        try:
            host = local_host(isolation)
        except SandboxUnavailableError as exc:
            print(f"{isolation.value:8} unavailable: {exc}")
            continue
        bench(host, args.runs, args.concurrency, args.concurrent_runs)


if __name__ == "__main__":
    main()
