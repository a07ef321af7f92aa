"""Compression of a 500-turn window, per strategy (target: p95 ≤ 200 ms). Not a test.

Three measurements per strategy (summarize = the extractive summarizer, the embedded default):

1. ``strategy``: the pure strategy on 500 LoCoMo turns (token counts cold: the tokenizer
   cache is cleared before every run, as for a window seen for the first time);
2. ``task``: the ``run_strategy`` workflow task on embedded PostgreSQL — load the 500 turns,
   compress, stage the result in the job row (what the Step Functions task does);
3. ``workflow``: the whole rebuild_context ASL on moto's executor with the real handlers
   (load → choose → run → store + bump → invalidate → emit), start to SUCCEEDED.

    .venv/bin/python bench/compress_bench.py        # RUNS=30 TURNS=500 TARGET=2000
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")
os.environ.setdefault("CONTEXT_ENGINE_EMBEDDER", "hashing")  # not used by compression; keeps start-up light

STRATEGIES = ("summarize", "truncate", "importance")


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def line(name: str, ms: list[float], extra: str = "") -> None:
    print(f"  {name:<22} n={len(ms):>3}  p50={pct(ms, 50):7.1f} ms  p95={pct(ms, 95):7.1f} ms  "
          f"max={max(ms):7.1f} ms  mean={statistics.mean(ms):7.1f} ms  {extra}")


def locomo_pairs(n: int) -> list[tuple[str, str]]:
    path = Path(__file__).resolve().parents[2] / "shared" / "bench" / "locomo_dev.json"
    pairs: list[tuple[str, str]] = []
    for conv in json.loads(path.read_text()):
        c = conv["conversation"]
        for key in sorted((k for k in c if k.startswith("session_") and isinstance(c[k], list)),
                          key=lambda k: int(k.split("_")[1])):
            utts = [f"{u['speaker']}: {u['text']}" for u in c[key]]
            pairs += [(utts[i], utts[i + 1] if i + 1 < len(utts) else "(no reply)") for i in range(0, len(utts), 2)]
    return pairs[:n]


def main() -> None:
    runs, n_turns, target = int(os.environ.get("RUNS", "30")), int(os.environ.get("TURNS", "500")), int(
        os.environ.get("TARGET", "2000"))
    from context_engine.compression.models import CompressionRequest, SourceTurn
    from context_engine.compression.strategies import compress
    from context_engine.text import tokens

    pairs = locomo_pairs(n_turns)
    source = [SourceTurn(seq=i, question=q, answer=a, token_count=tokens.count_tokens(q) + tokens.count_tokens(a))
              for i, (q, a) in enumerate(pairs, start=1)]
    input_tokens = sum(t.token_count for t in source)
    print(f"compression: {len(source)} turns ({input_tokens} tokens) → target {target} tokens, {runs} runs, "
          f"cores={os.cpu_count()}")

    print("1. strategy (pure, tokenizer cache cold)")
    for strategy in STRATEGIES:
        ms: list[float] = []
        for _ in range(runs):
            tokens._count_cached.cache_clear()
            t = time.perf_counter()
            result = compress(CompressionRequest(strategy=strategy, turns=source, target_tokens=target))
            ms.append((time.perf_counter() - t) * 1000)
        line(strategy, ms, f"summary={result.summary_tokens} tokens, kept {len(result.kept_seqs)} turns")

    data_dir = Path(os.environ.get("BENCH_DATA_DIR") or tempfile.mkdtemp(prefix="ce-compress-"))
    os.environ["CONTEXT_ENGINE_DATA_DIR"] = str(data_dir)
    from context_engine.auth import create_key
    from context_engine.models.api import RebuildRequest, WriteTurnRequest
    from context_engine.models.domain import Principal, Role
    from context_engine.pipeline.sfn_local import LocalStepFunctions
    from context_engine.runtime import build_runtime, set_runtime
    from context_engine.services import compress as service
    from context_engine.services import turns

    rt = build_runtime()
    set_runtime(rt)
    tenant = f"compress-{int(time.time())}"
    key_id, _ = create_key(rt.db, tenant, Role.admin)
    admin = Principal(tenant_id=tenant, key_id=key_id, role=Role.admin)
    for q, a in pairs:
        turns.write_turn(rt, admin, "window", WriteTurnRequest(agent_id="a", user_id="u", question=q, answer=a), None)

    print("2. task run_strategy (load 500 turns from PostgreSQL, compress, stage in the job)")
    for strategy in STRATEGIES:
        ms = []
        for _ in range(runs):
            job = service.request_rebuild(rt, admin, "window", RebuildRequest(strategy=strategy, target_tokens=target))
            plan = service.load_window(rt, tenant, job.job_id)
            tokens._count_cached.cache_clear()
            t = time.perf_counter()
            service.run_strategy(rt, plan)
            ms.append((time.perf_counter() - t) * 1000)
        line(strategy, ms)

    print("3. workflow (rebuild_context ASL on moto, real handlers, start → SUCCEEDED)")
    with LocalStepFunctions() as engine:
        for strategy in STRATEGIES:
            ms = []
            for _ in range(max(5, runs // 3)):
                job = service.request_rebuild(rt, admin, "window",
                                              RebuildRequest(strategy=strategy, target_tokens=target))
                tokens._count_cached.cache_clear()
                t = time.perf_counter()
                arn = engine.start("rebuild_context", str(job.job_id), {"job_id": str(job.job_id),
                                                                        "tenant_id": tenant})
                status = engine.wait(arn, 120)["status"]
                ms.append((time.perf_counter() - t) * 1000)
                assert status == "SUCCEEDED", status
            line(strategy, ms)
    rt.db.close()


if __name__ == "__main__":
    main()
