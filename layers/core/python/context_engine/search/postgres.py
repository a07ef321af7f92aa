"""PostgreSQL search: full text over ``lex`` + pgvector HNSW, fused by reciprocal rank in SQL.

One statement per query fetches every candidate source and the per-user statistics:

- **lexical**: turns whose ``lex`` matches any query term (GIN), ordered by an IDF-weighted
  match score that SQL can compute — Σ idf(term)·[term ∈ turn] with BM25's length norm, the
  idfs coming from ``search_term_stats`` in the same statement (BM25 with tf capped at 1:
  turns are short and tf is rarely above 1);
- **dense**: cosine top-k through the HNSW index (``hnsw.ef_search`` raised and
  ``hnsw.iterative_scan`` on, so a user filter that rejects most of the graph still yields
  k rows; the planner uses an exact scan of the user's rows when that is cheaper);
- **dates**: the user's turns inside the date ranges the query names;
- **fresh**: turns written but not yet indexed;
- **neighbours**: seq ± 1 of the best candidates by reciprocal-rank fusion of the first two.

Python then re-ranks (``search.ranking``) and fetches missing neighbours of the new top in
a second, small statement when there are any. Memories are ranked by the RRF alone.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Any

from context_engine.db.database import Conn, Database
from context_engine.models.domain import Memory
from context_engine.retrieval import CorpusStats, RankConfig
from context_engine.retrieval.dates import DateSpan
from context_engine.search.base import CandidatePlan, Scope, ScoredMemory, SearchQuery, TurnSearch, Vector
from context_engine.search.ranking import TurnRow, rank_turns

# HNSW recall/speed trade-off at query time. 100 candidates per layer-0 search keeps recall
# of the top-100 high; iterative scans continue past filtered-out rows (other users) instead
# of returning fewer than k rows.
EF_SEARCH = 100
MAX_SCAN_TUPLES = 20_000

_WORD = re.compile(r"[^\W_]+")

MEMORY_COLS = ("m.id, m.agent_id, m.user_id, m.visibility, m.content, m.importance, m.source_turn_ids, m.metadata,"
               " m.token_count, m.created_at, m.updated_at")


def vector_literal(v: Vector) -> str:
    """pgvector's text form; 7 significant digits keep float32 precision."""
    return "[" + ",".join(f"{x:.7g}" for x in v.tolist()) + "]"


def date_ranges(dates: Sequence[DateSpan], config: RankConfig) -> list[str]:
    """tstzrange literals (UTC) for the turns that ``retrieval.rerank.date_matches`` accepts."""
    out = []
    for span in dates:
        after = config.date_after_days if span.granularity == "day" else config.month_after_days
        lo = span.start - dt.timedelta(days=config.date_before_days)
        hi = span.end + dt.timedelta(days=after + 1)
        out.append(f"[{lo.isoformat()} 00:00+00,{hi.isoformat()} 00:00+00)")
    return out


def memory_tsquery(text: str) -> str:
    """OR of the query's words for ``to_tsquery('english', …)`` (stems and stop words are
    PostgreSQL's; memories are matched through their ``tsv`` column). Words are alphanumeric
    and quoted, so no input can inject tsquery operators."""
    words = dict.fromkeys(w.lower() for w in _WORD.findall(text))
    return " | ".join(f"'{w}'" for w in words)


_SCOPE = "t.tenant_id = %(t)s and t.agent_id = %(a)s and t.user_id = %(u)s"
_TURN_COLS = "t.id, t.session_id, t.seq, t.question, t.answer, t.occurred_at, t.lex_parts"


def _candidates_sql(*, lexical: bool, dense: bool, dated: bool, plan: CandidatePlan) -> str:
    """The candidate statement for the sources this query has (a query without terms has no
    lexical part, one without an embedding no dense part)."""
    ctes = [
        "st as (select coalesce(max(n_docs), 0) as n_docs, coalesce(max(total_len), 0) as total_len"
        " from search_doc_stats where tenant_id = %(t)s and agent_id = %(a)s and user_id = %(u)s)",
        # idf as retrieval.lexical.CorpusStats.idf computes it (Lucene's, df floored at 1)
        "w as (select x.ord, plainto_tsquery('simple', x.term) as tq, coalesce(s.df, 0) as df,"
        " ln(1 + (greatest(st.n_docs, greatest(coalesce(s.df, 0), 1)) - greatest(coalesce(s.df, 0), 1) + 0.5)"
        " / (greatest(coalesce(s.df, 0), 1) + 0.5)) as idf"
        " from unnest(%(terms)s::text[]) with ordinality as x(term, ord) cross join st"
        " left join lateral (select df from search_term_stats where tenant_id = %(t)s and agent_id = %(a)s"
        " and user_id = %(u)s and term = x.term) s on true)",
    ]
    ranked: list[str] = []
    if lexical:
        ctes.append(
            "lexc as (select t.id, t.session_id, t.seq,"
            " (select coalesce(sum(w.idf), 0) from w where t.lex @@ w.tq) * (%(k1)s + 1)"
            " / (1 + %(k1)s * (1 - %(b)s + %(b)s * coalesce(t.lex_len, 0)"
            " / greatest(st.total_len::float8 / greatest(st.n_docs, 1), 1))) as s"
            f" from turns t, st where {_SCOPE} and t.lex @@ to_tsquery('simple', %(tsq)s)"
            " order by s desc limit %(n_fts)s)"
        )
        ranked.append("select id, session_id, seq, row_number() over (order by s desc) as r from lexc")
    if dense:
        ctes.append(
            "vecc as (select t.id, t.session_id, t.seq, t.embedding <=> %(vec)s::vector as dist"
            f" from turns t where {_SCOPE} and t.embedding is not null"
            " order by t.embedding <=> %(vec)s::vector limit %(n_vec)s)"
        )
        ranked.append("select id, session_id, seq, row_number() over (order by dist) as r from vecc")
    sources = ["select id, 0.0::float8 as rrf from fresh"]
    ctes.append(
        f"fresh as (select t.id from turns t where {_SCOPE} and t.indexed_at is null"
        " order by t.created_at desc limit %(n_fresh)s)"
    )
    if dated:
        match = "(select coalesce(sum(w.idf), 0) from w where t.lex @@ w.tq)" if lexical else "0"
        ctes.append(
            f"datec as (select t.id from turns t where {_SCOPE}"
            " and t.occurred_at <@ any(%(ranges)s::text[]::tstzrange[])"
            f" order by {match} desc, t.occurred_at limit %(n_date)s)"
        )
        sources.append("select id, 0.0 from datec")
    if ranked:
        ctes.append("ranked as (" + " union all ".join(ranked) + ")")
        ctes.append("fused as (select id, session_id, seq, sum(1.0 / (%(rrf_k)s + r))::float8 as rrf"
                    " from ranked group by id, session_id, seq)")
        sources.append("select id, rrf from fused")
        if plan.neighbours_of_top:
            ctes.append("top as (select session_id, seq from fused order by rrf desc limit %(n_nb)s)")
            # lateral: one unique-index probe per (session, seq), whatever the row estimates
            ctes.append(
                "nb as (select t.id from top, unnest(array[top.seq - 1, top.seq + 1]) as n(seq),"
                " lateral (select t.id from turns t where t.tenant_id = %(t)s and t.session_id = top.session_id"
                " and t.seq = n.seq and t.agent_id = %(a)s and t.user_id = %(u)s) t)"
            )
            sources.append("select id, 0.0 from nb")
    ctes.append("ids as (select id, max(rrf) as rrf from (" + " union all ".join(sources) + ") x group by id)")
    return (
        "with " + ", ".join(ctes) +
        f" select {_TURN_COLS}, {_cosines(dense)}, ids.rrf, st.n_docs, st.total_len,"
        " (select array_agg(w.df order by w.ord) from w) as dfs"
        " from ids cross join st, lateral (select * from turns t where t.tenant_id = %(t)s and t.id = ids.id"
        " and t.agent_id = %(a)s and t.user_id = %(u)s) t"
    )


def _cosines(dense: bool) -> str:
    """Cosine of the query with the turn's vector and with each utterance's (null where a row
    has no vector yet)."""
    if not dense:
        return "null::float8 as cosine, null::float8 as q_cosine, null::float8 as a_cosine"
    return ", ".join(f"1 - ({col} <=> %(vec)s::vector) as {name}" for col, name in (
        ("t.embedding", "cosine"), ("t.q_embedding", "q_cosine"), ("t.a_embedding", "a_cosine")))


def _neighbours_sql(dense: bool) -> str:
    return (
        f"select {_TURN_COLS}, {_cosines(dense)} from unnest(%(sessions)s::text[], %(seqs)s::int[]) as k(s, q),"
        " lateral (select * from turns t where t.tenant_id = %(t)s and t.session_id = k.s and t.seq = k.q"
        " and t.agent_id = %(a)s and t.user_id = %(u)s) t"
    )


def _row(r: dict[str, Any]) -> TurnRow:
    return TurnRow(id=str(r["id"]), session_id=r["session_id"], seq=r["seq"], question=r["question"],
                   answer=r["answer"], occurred_at=r["occurred_at"], lex_parts=r["lex_parts"],
                   cosine=r["cosine"], part_cosines=(r["q_cosine"], r["a_cosine"]))


def tune_vector_search(conn: Conn) -> None:
    """Per transaction (``set_config(..., true)``): nothing leaks to the pooled connection's
    next user, and RDS Proxy does not pin the connection for a transaction-local setting."""
    conn.execute(
        "select set_config('hnsw.ef_search', %s, true), set_config('hnsw.iterative_scan', 'relaxed_order', true),"
        " set_config('hnsw.max_scan_tuples', %s, true)",
        [str(EF_SEARCH), str(MAX_SCAN_TUPLES)],
    )


class PostgresSearchBackend:
    name = "postgres"

    def __init__(self, db: Database) -> None:
        self.db = db

    # --- turns ---------------------------------------------------------------------------
    def search_turns(
        self, scope: Scope, query: SearchQuery, *, k: int, config: RankConfig | None = None,
        plan: CandidatePlan | None = None,
    ) -> TurnSearch:
        if scope.user_id is None:
            return TurnSearch(hits=[], candidates=0, round_trips=0)
        cfg = config or RankConfig()
        pl = plan or CandidatePlan()
        with self.db.tenant(scope.tenant_id) as conn:
            return self.search_turns_in(conn, scope, query, k=k, config=cfg, plan=pl)

    def search_turns_in(
        self, conn: Conn, scope: Scope, query: SearchQuery, *, k: int, config: RankConfig, plan: CandidatePlan,
    ) -> TurnSearch:
        """``search_turns`` inside a transaction the caller already holds (QueryContext reads
        the session and searches in one transaction: one connection checkout)."""
        terms = list(query.features.terms)
        lexical = bool(terms)
        vec = query.vector
        dense = vec is not None
        ranges = date_ranges(query.features.dates, config) if plan.date_rows else []
        params: dict[str, Any] = {
            "t": scope.tenant_id, "a": scope.agent_id, "u": scope.user_id, "terms": terms,
            "tsq": query.features.tsquery, "vec": vector_literal(vec) if vec is not None else None,
            "ranges": ranges, "k1": config.k1, "b": config.b, "n_fts": plan.fts, "n_vec": plan.vector,
            "n_date": plan.date_rows, "n_nb": plan.neighbours_of_top, "n_fresh": plan.unindexed,
            "rrf_k": plan.rrf_k,
        }
        if dense:
            tune_vector_search(conn)
        sql = _candidates_sql(lexical=lexical, dense=dense, dated=bool(ranges), plan=plan)
        rows = conn.execute(sql, params).fetchall()
        if not rows:
            return TurnSearch(hits=[], candidates=0, round_trips=1)
        first = rows[0]
        n_docs = int(first["n_docs"])
        stats = CorpusStats(
            n_docs=n_docs,
            avg_len=(int(first["total_len"]) / n_docs) if n_docs else 0.0,
            df={t: int(d) for t, d in zip(terms, first["dfs"] or [], strict=False)},
        )

        def fetch_neighbours(keys: list[tuple[str, int]]) -> list[TurnRow]:
            found = conn.execute(_neighbours_sql(dense), {
                **params, "sessions": [s for s, _ in keys], "seqs": [q for _, q in keys]}).fetchall()
            return [_row(r) for r in found]

        return rank_turns(query, [_row(r) for r in rows], stats, k=k, config=config, plan=plan,
                          fetch_neighbours=fetch_neighbours)

    # --- memories ------------------------------------------------------------------------
    def search_memories(self, scope: Scope, query: SearchQuery, *, k: int) -> list[ScoredMemory]:
        with self.db.tenant(scope.tenant_id) as conn:
            return self.search_memories_in(conn, scope, query, k=k)

    def search_memories_in(self, conn: Conn, scope: Scope, query: SearchQuery, *, k: int,
                           rrf_k: float = 60.0, per_source: int = 50) -> list[ScoredMemory]:
        tsq = memory_tsquery(query.text)
        vec = query.vector
        dense = vec is not None
        visible = "m.tenant_id = %(t)s and m.agent_id = %(a)s and (m.visibility = 'agent' or m.user_id = %(u)s)"
        ctes, ranked = [], []
        if tsq:
            ctes.append(
                "lexm as (select id, row_number() over (order by s desc) as r from ("
                f" select m.id, ts_rank_cd(m.tsv, q) as s from memories m, to_tsquery('english', %(tsq)s) q"
                f" where {visible} and m.tsv @@ q order by s desc limit %(n)s) x)")
            ranked.append("select id, r, 'l' as src from lexm")
        if dense:
            tune_vector_search(conn)
            ctes.append(
                "vecm as (select id, row_number() over (order by d) as r from ("
                f" select m.id, m.embedding <=> %(vec)s::vector as d from memories m"
                f" where {visible} and m.embedding is not null order by d limit %(n)s) y)")
            ranked.append("select id, r, 'v' as src from vecm")
        if not ranked:
            return []
        sql = (
            "with " + ", ".join(ctes) + ", ranked as (" + " union all ".join(ranked) + "),"
            " fused as (select id, sum(1.0 / (%(rrf_k)s + r))::float8 as rrf,"
            " min(r) filter (where src = 'l') as lr, min(r) filter (where src = 'v') as vr"
            " from ranked group by id)"
            f" select {MEMORY_COLS}, f.rrf, f.lr, f.vr from fused f join memories m"
            " on m.tenant_id = %(t)s and m.id = f.id"
            " order by f.rrf desc, m.importance desc, m.created_at desc limit %(k)s"
        )
        rows = conn.execute(sql, {
            "t": scope.tenant_id, "a": scope.agent_id, "u": scope.user_id, "tsq": tsq,
            "vec": vector_literal(vec) if vec is not None else None, "n": per_source, "rrf_k": rrf_k, "k": k,
        }).fetchall()
        out = []
        for r in rows:
            mem = Memory(**{c: r[c] for c in r if c not in ("rrf", "lr", "vr")})
            out.append(ScoredMemory(memory=mem, score=float(r["rrf"]), lexical_rank=r["lr"], vector_rank=r["vr"]))
        return out
