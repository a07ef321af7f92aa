"""``make bench-query``: QueryContext latency with 100k turns in a tenant, 10k in the user's history.

Setup (once per data dir, kept for later runs): 10 users × 100 sessions × 100 turns, bulk
loaded with COPY with every index column filled as the indexer would (analyzed terms,
turn and utterance vectors), then the HNSW index is built and the tables analyzed. Turn
texts are LoCoMo utterances paired at random (real conversational text), their vectors the
MiniLM vectors of those utterances (turn vector = the normalised sum of its two utterances'
plus a little noise, so no two turns share one); a few hundred memories and a session with
a summary, recent turns and tool calls make every section of the context real.

Measured, in process on the embedded PostgreSQL, with the real embedder (the query is
embedded inside QueryContext on a miss), after the collector tuning a serving process applies
(``--default-gc`` keeps CPython's defaults): LoCoMo questions, each asked once (a miss — the
query text is new, so neither the context cache nor the query-vector cache has it) and then
again (a hit), without a session (retrieval over the user's 10k turns) and with one; misses
right after a turn of the user was written and indexed (the user's in-process index is
refreshed inside the miss); misses without the user's index (the SQL path); each user's first
miss in the process (served by SQL while the user's index loads in the background) and the
load itself.

    .venv/bin/python bench/query_bench.py [--data-dir DIR] [--queries 300] [--budget 2000] [--redis]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")

_HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(_HERE / "retrieval"), str(_HERE.parent / "layers" / "core" / "python")]

import locomo  # noqa: E402
import numpy as np  # noqa: E402

from context_engine.auth import create_key  # noqa: E402
from context_engine.models.api import QueryContextRequest, WriteTurnRequest  # noqa: E402
from context_engine.models.domain import Principal, Role  # noqa: E402
from context_engine.observability.gc_tuning import tune_for_requests  # noqa: E402
from context_engine.observability.powertools import metrics  # noqa: E402
from context_engine.retrieval import analyze, index_date_text  # noqa: E402
from context_engine.runtime import build_runtime  # noqa: E402
from context_engine.search import user_index_cache  # noqa: E402
from context_engine.search.postgres import vector_literal  # noqa: E402
from context_engine.search.user_index import UserIndexCache  # noqa: E402
from context_engine.services import context, indexing, turns  # noqa: E402
from context_engine.settings import Settings  # noqa: E402
from context_engine.text.tokens import count_tokens  # noqa: E402

TENANT = "bench-query"
AGENT = "agent"
USERS, SESSIONS, TURNS = 10, 100, 100  # 100k turns; 10k per user
T0 = dt.datetime(2023, 1, 2, 9, 0, tzinfo=dt.UTC)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


def line(name: str, ms: list[float]) -> str:
    return (f"| {name} | {len(ms)} | {pct(ms, 50):.2f} | {pct(ms, 95):.2f} | {pct(ms, 99):.2f} |")


def pool_vectors(rt, texts: list[str], cache: Path) -> np.ndarray:  # type: ignore[no-untyped-def]
    if cache.exists():
        vecs = np.load(cache)
        if len(vecs) == len(texts):
            return vecs
    vecs = rt.embedder.embed(texts)
    np.save(cache, vecs)
    return vecs


def load(rt, data_dir: Path, rng: random.Random) -> None:  # type: ignore[no-untyped-def]
    """Bulk-load the tenant (skipped when the data dir already has it)."""
    with rt.db.owner() as conn:
        have = conn.execute("select count(*) as n from turns where tenant_id = %s", [TENANT]).fetchone()["n"]
    if have >= USERS * SESSIONS * TURNS:
        with rt.db.owner() as conn:  # data dirs made before indexed_at followed the turns' times
            fixed = conn.execute("update turns set indexed_at = occurred_at where tenant_id = %s and indexed_at = %s",
                                 [TENANT, T0]).rowcount
        if fixed:
            _vacuum(rt)
        return
    t_start = time.perf_counter()
    convs = locomo.load()
    utts = sorted({u.text for c in convs for t in c.turns for u in t.utterances})
    print(f"<!-- embedding a pool of {len(utts)} utterances -->", flush=True)
    vecs = pool_vectors(rt, utts, data_dir / f"pool-{rt.embedder.name}.npy")
    terms = [analyze(u) for u in utts]
    tokens = [count_tokens(u) for u in utts]
    literals = [vector_literal(v) for v in vecs]
    model = rt.embedder.name
    nprng = np.random.default_rng(7)
    create_key(rt.db, TENANT, Role.admin)
    with rt.db.owner() as conn:
        conn.execute("delete from turns where tenant_id = %s", [TENANT])
        conn.execute("delete from sessions where tenant_id = %s", [TENANT])
        conn.execute("drop index if exists turns_embedding")
        with conn.cursor().copy("copy sessions (tenant_id, id, agent_id, user_id, last_seq, turn_count)"
                                " from stdin") as cp:
            for u in range(USERS):
                for s in range(SESSIONS):
                    cp.write_row((TENANT, f"u{u}-s{s}", AGENT, f"u{u}", TURNS, TURNS))
        with conn.cursor().copy("copy context_windows (tenant_id, session_id) from stdin") as cp:
            for u in range(USERS):
                for s in range(SESSIONS):
                    cp.write_row((TENANT, f"u{u}-s{s}"))
        cols = ("tenant_id, id, session_id, agent_id, user_id, seq, question, answer, occurred_at, token_count,"
                " search_text, lex, lex_len, lex_parts, embedding, q_embedding, a_embedding, embedding_model,"
                " indexed_at")
        scopes = {u: conn.execute("select ce_search_scope(%s, %s, %s) as s", [TENANT, AGENT, f"u{u}"]).fetchone()["s"]
                  for u in range(USERS)}
        with conn.cursor().copy(f"copy turns ({cols}) from stdin") as cp:
            for u in range(USERS):
                for s in range(SESSIONS):
                    day = T0 + dt.timedelta(days=s * 3 + u)
                    date = index_date_text(day.date())
                    date_terms = analyze(date)
                    for q in range(1, TURNS + 1):
                        a, b = rng.randrange(len(utts)), rng.randrange(len(utts))
                        lex = date_terms + terms[a] + terms[b]
                        turn_vec = vecs[a] + vecs[b] + nprng.normal(0, 0.02, vecs.shape[1]).astype(np.float32)
                        turn_vec /= np.linalg.norm(turn_vec)
                        cp.write_row((
                            TENANT, uuid.UUID(int=rng.getrandbits(128)), f"u{u}-s{s}", AGENT, f"u{u}", q, utts[a],
                            utts[b], day + dt.timedelta(minutes=q), tokens[a] + tokens[b],
                            f"{date}\n{utts[a]}\n{utts[b]}",
                            " ".join(f"'{t}'" for t in dict.fromkeys([*lex, scopes[u]])),
                            len(lex), [" ".join(terms[a]), " ".join(terms[b])], vector_literal(turn_vec),
                            literals[a], literals[b], model, day + dt.timedelta(minutes=q)))
        print(f"<!-- copied {USERS * SESSIONS * TURNS} turns in {time.perf_counter() - t_start:.0f}s -->", flush=True)
        t1 = time.perf_counter()
        conn.execute("set maintenance_work_mem = '1GB'")
        conn.execute("create index turns_embedding on turns using hnsw (embedding vector_cosine_ops)"
                     " with (m = 16, ef_construction = 64)")
        print(f"<!-- HNSW index built in {time.perf_counter() - t1:.0f}s -->", flush=True)
        # u0's current session: a summary covering the first 80 turns, so 20 are recent
        conn.execute("update context_windows set summary = %s, summary_covers_seq = 80 where tenant_id = %s"
                     " and session_id = 'u0-s99'", [" ".join(utts[i] for i in range(40)), TENANT])
        with conn.cursor().copy("copy tool_calls (tenant_id, session_id, call_id, agent_id, user_id, chain_seq,"
                                " name, arguments, status, result) from stdin") as cp:
            for i in range(6):
                cp.write_row((TENANT, "u0-s99", f"c{i}", AGENT, "u0", i + 1, "search",
                              json.dumps({"q": utts[i][:60]}), "succeeded" if i < 4 else "running",
                              json.dumps(utts[i + 50]) if i < 4 else None))
        with conn.cursor().copy("copy memories (tenant_id, id, agent_id, user_id, visibility, content, token_count,"
                                " embedding, embedding_model, indexed_at) from stdin") as cp:
            for i in range(300):
                k = rng.randrange(len(utts))
                private = i < 250
                cp.write_row((TENANT, uuid.uuid4(), AGENT, f"u{i % USERS}" if private else None,
                              "private" if private else "agent", utts[k], tokens[k], literals[k], model, T0))
    _vacuum(rt)
    print(f"<!-- setup {time.perf_counter() - t_start:.0f}s -->", flush=True)


def _vacuum(rt) -> None:  # type: ignore[no-untyped-def]
    """VACUUM sets the visibility map, without which the index-only scans of the user's vectors
    read the heap too, and clears dead row versions (autovacuum does this in a running system;
    a bulk load must ask)."""
    import psycopg

    assert rt.db.owner_dsn is not None
    with psycopg.connect(rt.db.owner_dsn, autocommit=True) as conn:
        conn.execute("vacuum analyze")


def start_redis() -> tuple[subprocess.Popen[bytes], str] | None:
    exe = shutil.which("redis-server")
    if exe is None:
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    proc.terminate()
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=os.environ.get("BENCH_DATA_DIR", "/tmp/ce-query-bench"))
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--budget", type=int, default=2000)
    ap.add_argument("--embedder", default="minilm", choices=("minilm", "hashing", "bedrock"))
    ap.add_argument("--redis", action="store_true", help="also measure hits on a real redis-server")
    ap.add_argument("--default-gc", action="store_true", help="keep CPython's collector settings")
    args = ap.parse_args()

    data_dir = Path(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    rt = build_runtime(Settings(data_dir=data_dir, embedder=args.embedder, redis_url=None))
    rng = random.Random(42)
    load(rt, data_dir, rng)
    with rt.db.owner() as conn:
        key_id = conn.execute("select id from api_keys where tenant_id = %s limit 1", [TENANT]).fetchone()["id"]
    principal = Principal(tenant_id=TENANT, key_id=key_id, role=Role.admin)
    questions = [q.text for c in locomo.load() for q in c.questions]
    rng.shuffle(questions)
    n = args.queries

    def run(texts: list[str], session: str | None) -> tuple[list[float], list[float]]:
        miss, hit = [], []
        for text in texts:
            req = QueryContextRequest(agent_id=AGENT, user_id="u0", session_id=session, query=text,
                                      token_budget=args.budget)
            for bucket, expected in ((miss, "miss"), (hit, "hit")):
                t = time.perf_counter()
                res = context.query_context(rt, principal, req)
                bucket.append((time.perf_counter() - t) * 1000)
                assert res.cache == expected and res.token_count <= args.budget
            metrics.clear_metrics()  # no handler flushes them here; powertools would print every 100
        return miss, hit

    def run_after_writes(texts: list[str]) -> list[float]:
        """Each query right after a turn of the user was written and indexed: the generation
        changed, so the user's in-process index is refreshed inside the miss."""
        ms = []
        for i, text in enumerate(texts):
            written, _ = turns.write_turn(rt, principal, "u0-writes", WriteTurnRequest(
                agent_id=AGENT, user_id="u0", question=f"u0: {questions[-1 - i]}", answer="a: noted"), None)
            indexing.index_turn(rt, TENANT, written.turn_id)
            req = QueryContextRequest(agent_id=AGENT, user_id="u0", query=text, token_budget=args.budget)
            t = time.perf_counter()
            assert context.query_context(rt, principal, req).cache == "miss"
            ms.append((time.perf_counter() - t) * 1000)
            metrics.clear_metrics()
        with rt.db.owner() as conn:  # leave the data as it was for the next run
            conn.execute("delete from turns where tenant_id = %s and session_id = 'u0-writes'", [TENANT])
            conn.execute("delete from sessions where tenant_id = %s and id = 'u0-writes'", [TENANT])
        return ms

    def first_queries(users: range) -> list[float]:
        """The first miss of each user in this process: served by the SQL path while the user's
        index loads in the background."""
        ms = []
        for u in users:
            req = QueryContextRequest(agent_id=AGENT, user_id=f"u{u}", query=questions[-u], token_budget=args.budget)
            t = time.perf_counter()
            context.query_context(rt, principal, req)
            ms.append((time.perf_counter() - t) * 1000)
            indexes.wait_for_loads()  # the next user's first query should not compete with this load
        return ms

    def sql_path(texts: list[str]) -> list[float]:
        """Misses served without a user index, as a user's first queries in a process (a Lambda
        environment) are while it loads, and every query of a user too large for the budget."""
        budget, indexes.max_bytes = indexes.max_bytes, 0  # nobody fits: every search takes SQL
        try:
            return run(texts, None)[0]
        finally:
            indexes.max_bytes = budget

    def index_loads(users: range) -> list[float]:
        """Loading one user's index (10k turns), as the background thread does."""
        ms = []
        for u in users:
            sync = UserIndexCache(1 << 30, rt.settings.embedding_dim)
            with rt.db.tenant(TENANT) as conn:
                t = time.perf_counter()
                sync.current(conn, (TENANT, AGENT, f"u{u}"), generation=0, n_docs=SESSIONS * TURNS)
                ms.append((time.perf_counter() - t) * 1000)
        return ms

    indexes = user_index_cache(rt)
    rt.embedder.embed_query("warm up")
    cold = first_queries(range(1, 4))
    loads = index_loads(range(1, 4))
    run([f"warm up {q}" for q in questions[:20]], None)  # prepared statements, caches of the process
    indexes.wait_for_loads()
    if not args.default_gc:
        tune_for_requests()  # as the query function and `serve` do after start-up
    load_avg = os.getloadavg()
    miss_free, hit_free = run(questions[:n], None)
    miss_sess, hit_sess = run(questions[n: 2 * n], "u0-s99")
    miss_written = run_after_writes(questions[2 * n: 2 * n + 100])
    miss_sql = sql_path([f"Tell me: {q}" for q in questions[:100]])  # new texts: misses
    embed_ms = []
    for q in questions[2 * n: 2 * n + 100]:
        t = time.perf_counter()
        rt.embedder.embed_query(q)
        embed_ms.append((time.perf_counter() - t) * 1000)
    rows = [line("miss, no session (retrieval over 10k turns)", miss_free),
            line("miss, with session (+ summary, recent, tools)", miss_sess),
            line("miss right after a write of the user (index refreshed)", miss_written),
            line("miss without the user's index (SQL path)", miss_sql),
            line("first miss of a user in the process (SQL path; the index loads meanwhile)", cold),
            line("  loading a user's index (10k turns), off the request path", loads),
            line("hit (in-process LRU)", hit_free + hit_sess),
            line("  of a miss: query embedding alone", embed_ms)]
    redis_proc = start_redis() if args.redis else None
    if redis_proc is not None:
        from context_engine.cache import RedisCache

        rt.cache = RedisCache(redis_proc[1])
        _, hit_redis = run(questions[2 * n: 3 * n], None)
        rows.insert(3, line("hit (Redis, local redis-server)", hit_redis))
        redis_proc[0].terminate()
    print(f"QueryContext, budget {args.budget}, 100k turns in the tenant, 10k in the user's history; "
          f"embedder {rt.embedder.name}; load average at start {load_avg[0]:.1f} on {os.cpu_count()} cores")
    print()
    print("| case | n | p50 ms | p95 ms | p99 ms |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(r)
    rt.db.close()


if __name__ == "__main__":
    main()
