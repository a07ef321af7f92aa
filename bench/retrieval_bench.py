"""``make bench-retrieval``: the LoCoMo dev set through the product's own path.

Each conversation is ingested with WriteQA (``services.turns.write_turn``: one user per
conversation, one session per LoCoMo session, the session date as ``occurred_at``,
speaker-prefixed utterances paired into turns — shared/bench/README.md), indexed by
``services.indexing.index_pending`` into embedded PostgreSQL, and every question of
categories 1–4 is asked with no ``session_id``:

- recall@1/5/10/20 from the search backend QueryContext uses (``search_backend(rt)``);
- ECR@B / ECRm@B from real QueryContext answers at budgets 1000/2000/4000: the share of
  questions whose ``context`` holds at least one evidence utterance, and the mean share held.
  An utterance counts as held when a snippet with its turn's provenance contains its text
  (or is that utterance cut to fit, ending in "…").

    .venv/bin/python bench/retrieval_bench.py [--embedder minilm] [--data-dir DIR] [--max-questions N]

Prints a markdown table (overall and per category) and the QueryContext latency on a miss.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")

_HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(_HERE / "retrieval"), str(_HERE.parent / "layers" / "core" / "python")]

import locomo  # noqa: E402  (the research helper's loader: the protocol in one place)

from context_engine.auth import create_key  # noqa: E402
from context_engine.models.api import QueryContextRequest, WriteTurnRequest  # noqa: E402
from context_engine.models.domain import Principal, Role  # noqa: E402
from context_engine.observability.powertools import metrics  # noqa: E402
from context_engine.retrieval import first_date  # noqa: E402
from context_engine.runtime import build_runtime  # noqa: E402
from context_engine.search import search_backend  # noqa: E402
from context_engine.search.base import Scope, SearchQuery  # noqa: E402
from context_engine.services import context, indexing, turns  # noqa: E402
from context_engine.services.context import query_vectors  # noqa: E402
from context_engine.settings import Settings  # noqa: E402

KS = (1, 5, 10, 20)
BUDGETS = (1000, 2000, 4000)
AGENT = "locomo"
_TIME = re.compile(r"(\d{1,2}):(\d{2})\s*(am|pm)", re.I)


def occurred_at(session_date: str, seq: int) -> dt.datetime:
    """LoCoMo's "1:56 pm on 8 May, 2023" → an aware datetime; turns a second apart in order."""
    day = first_date(session_date) or dt.date(2000, 1, 1)
    hour, minute = 12, 0
    m = _TIME.search(session_date)
    if m:
        hour = int(m.group(1)) % 12 + (12 if m.group(3).lower() == "pm" else 0)
        minute = int(m.group(2))
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=dt.UTC) + dt.timedelta(seconds=seq)


def ingest(rt, principal: Principal, convs: list[locomo.Conversation]) -> dict[str, locomo.Turn]:
    """Every turn through WriteQA; returns turn_id → the LoCoMo turn it is."""
    by_id: dict[str, locomo.Turn] = {}
    for conv in convs:
        for t in conv.turns:
            res, _ = turns.write_turn(rt, principal, f"{conv.user_id}-s{t.session}", WriteTurnRequest(
                agent_id=AGENT, user_id=conv.user_id, question=t.question, answer=t.answer,
                occurred_at=occurred_at(t.session_date, t.seq)), None)
            by_id[str(res.turn_id)] = t
    return by_id


def held_dia_ids(response, by_id: dict[str, locomo.Turn]) -> set[str]:
    held: set[str] = set()
    for s in response.snippets:
        if s.type != "history" or s.provenance.turn_id is None:
            continue
        turn = by_id.get(str(s.provenance.turn_id))
        if turn is None:
            continue
        for u in turn.utterances:
            if holds(s.content, u.text):
                held.add(u.dia_id)
    return held


def holds(content: str, utterance: str) -> bool:
    """The snippet is (or contains) the utterance — whole, or cut to fit with a trailing "…"
    (the packer caps very long utterances; the snippet still comes from that utterance)."""
    if utterance in content:
        return True
    cut = content.removesuffix("…").rstrip()
    return content.endswith("…") and len(cut) >= 16 and utterance.startswith(cut)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--path", default=str(locomo.DEFAULT_PATH))
    ap.add_argument("--embedder", default="minilm", choices=("minilm", "hashing", "bedrock"))
    ap.add_argument("--data-dir", default=None, help="embedded PostgreSQL data dir (default: a temporary one)")
    ap.add_argument("--max-questions", type=int, default=0, help="per conversation, 0 = all")
    args = ap.parse_args()

    data_dir = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="ce-bench-retrieval-"))
    # Each user's index is loaded inside their first query: every question is answered from
    # the in-process index (the steady state), not by SQL while a background load races it,
    # so two runs give the same table.
    settings = Settings(data_dir=data_dir, embedder=args.embedder, redis_url=None, user_index_load="sync")
    rt = build_runtime(settings)
    tenant = f"bench-{uuid.uuid4().hex[:8]}"
    key_id, _ = create_key(rt.db, tenant, Role.admin)
    principal = Principal(tenant_id=tenant, key_id=key_id, role=Role.admin)
    convs = locomo.load(args.path)

    t0 = time.perf_counter()
    by_id = ingest(rt, principal, convs)
    t_write = time.perf_counter() - t0
    t0 = time.perf_counter()
    while indexing.index_pending(rt, tenant, limit=512).turns:
        pass
    t_index = time.perf_counter() - t0
    n_q = sum(len(c.questions[: args.max_questions or None]) for c in convs)
    print(f"<!-- {len(by_id)} turns written in {t_write:.1f}s, indexed in {t_index:.1f}s ({args.embedder}); "
          f"{n_q} questions -->", flush=True)

    backend = search_backend(rt)
    rows: dict[str, list[float]] = defaultdict(list)
    by_cat: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    latency: dict[int, list[float]] = defaultdict(list)
    for conv in convs:
        for q in conv.questions[: args.max_questions or None]:
            vec = query_vectors.get(rt, q.text)
            found = backend.search_turns(Scope(tenant, AGENT, conv.user_id), SearchQuery.build(q.text, vec), k=max(KS))
            ranked = [by_id[s.candidate.id] for s in found.hits]
            vals: dict[str, float] = {}
            for k in KS:
                vals[f"R@{k}"] = locomo.recall_at_k(ranked, q.evidence, k)
            for budget in BUDGETS:
                t1 = time.perf_counter()
                res = context.query_context(rt, principal, QueryContextRequest(
                    agent_id=AGENT, user_id=conv.user_id, query=q.text, token_budget=budget))
                latency[budget].append((time.perf_counter() - t1) * 1000)
                if res.token_count > budget:
                    raise AssertionError(f"context of {res.token_count} tokens > budget {budget}")
                held = held_dia_ids(res, by_id)
                hit = sum(1 for e in q.evidence if e in held)
                vals[f"ECR@{budget}"] = 1.0 if hit else 0.0
                vals[f"ECRm@{budget}"] = hit / len(q.evidence) if q.evidence else 0.0
            metrics.clear_metrics()  # no handler flushes them here; powertools would print every 100
            for name, v in vals.items():
                rows[name].append(v)
                by_cat[q.category][name].append(v)

    cols = [f"R@{k}" for k in KS] + [f"ECR@{b}" for b in BUDGETS] + [f"ECRm@{b}" for b in BUDGETS]
    print("| set | n | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    print(f"| all | {len(rows['R@1'])} | " + " | ".join(f"{statistics.mean(rows[c]):.3f}" for c in cols) + " |")
    names = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
    for cat in sorted(by_cat):
        vals = by_cat[cat]
        print(f"| {cat} {names.get(cat, '')} | {len(vals['R@1'])} | "
              + " | ".join(f"{statistics.mean(vals[c]):.3f}" for c in cols) + " |")
    print()
    print("QueryContext on a cache miss, in process (ms): "
          + ", ".join(f"B={b}: p50 {pct(latency[b], .5):.1f} p95 {pct(latency[b], .95):.1f}" for b in BUDGETS))
    rt.db.close()
    if not args.data_dir:
        from context_engine.db.embedded import stop_embedded

        stop_embedded(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
