"""PostgreSQL search: per-user full text and vector candidates, the re-ranker, RRF for memories.

Turns, in two statements per query:

1. **statistics** — the user's document count and length, and the document frequency of each
   query term (``search_doc_stats`` / ``search_term_stats``, kept by triggers);
2. **candidates** — one statement with every source, then the rows' texts and cosines:

   - *lexical*: turns matching the query's selective terms (df ≤ 10% of the user's turns; the
     two rarest if none is), ordered by an IDF-weighted match score — Σ idf(term)·[term ∈
     turn] with BM25's length norm (BM25 with tf capped at 1: turns are short). The user's
     scope lexeme is ANDed into the tsquery so the GIN index intersects posting lists and only
     matching rows are read (0006_search_user_scans.sql);
   - *dense*: an index-only scan of the user's binary-quantized vectors by Hamming distance,
     the best ``vector × bq_oversample`` re-ordered by exact cosine; for a user with more than
     ``exact_scan_max`` turns, pgvector's HNSW index instead (``hnsw.ef_search`` raised,
     ``hnsw.iterative_scan`` on so the user filter still yields k rows);
   - *dates*: the user's turns inside the date ranges the query names;
   - *fresh*: turns written but not yet indexed (findable the moment they are written);
   - *neighbours*: seq ± 1 of every candidate above (dialogue evidence sits next to the turn
     that matches the words).

Python then ranks them with the recipe (``search.ranking`` → ``retrieval.rank``): z-scored
per-utterance and per-turn BM25 and cosines, speaker prior, neighbour and session smoothing,
date bonus. On the LoCoMo dev set that recipe beats reciprocal-rank fusion of the same two
retrievers by a wide margin (docs/retrieval.md), so turns are not RRF-fused; memories, which
have no such structure, are ranked by RRF of full text and vector in one SQL statement.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Sequence
from typing import Any

from context_engine.db.database import Conn, Database
from context_engine.models.domain import Memory
from context_engine.retrieval import CorpusStats, RankConfig
from context_engine.retrieval.dates import DateSpan
from context_engine.search.base import CandidatePlan, Scope, ScoredMemory, SearchQuery, TurnSearch, Vector
from context_engine.search.ranking import TurnRow, rank_turns
from context_engine.search.user_index import Cosines, UserIndex, UserIndexCache

# HNSW recall/speed trade-off at query time (memories, and turns of very large users). 100
# candidates per layer-0 search keeps recall of the top-100 high; iterative scans continue
# past filtered-out rows (other users) instead of returning fewer than k rows.
EF_SEARCH = 100
MAX_SCAN_TUPLES = 20_000

log = logging.getLogger(__name__)
_WORD = re.compile(r"[^\W_]+")

MEMORY_COLS = ("m.id, m.agent_id, m.user_id, m.visibility, m.content, m.importance, m.source_turn_ids, m.metadata,"
               " m.token_count, m.created_at, m.updated_at")


def vector_literal(v: Vector) -> str:
    """pgvector's text form; 7 significant digits keep float32 precision. The last few are
    remembered: a query's turn and memory searches send the same vector (~0.3 ms to format)."""
    key = v.tobytes()
    lit = _literals.get(key)
    if lit is None:
        lit = "[" + ",".join(f"{x:.7g}" for x in v.tolist()) + "]"
        if len(_literals) >= 16:
            _literals.pop(next(iter(_literals)), None)
        _literals[key] = lit
    return lit


_literals: dict[bytes, str] = {}


def date_ranges(dates: Sequence[DateSpan], config: RankConfig) -> list[tuple[dt.datetime, dt.datetime]]:
    """[lo, hi) in UTC for the turns that ``retrieval.rerank.date_matches`` accepts."""
    out = []
    for span in dates:
        after = config.date_after_days if span.granularity == "day" else config.month_after_days
        lo = span.start - dt.timedelta(days=config.date_before_days)
        hi = span.end + dt.timedelta(days=after + 1)
        out.append((dt.datetime(lo.year, lo.month, lo.day, tzinfo=dt.UTC),
                    dt.datetime(hi.year, hi.month, hi.day, tzinfo=dt.UTC)))
    return out


def memory_tsquery(text: str) -> str:
    """OR of the query's words for ``to_tsquery('english', …)`` (stems and stop words are
    PostgreSQL's; memories are matched through their ``tsv`` column). Words are alphanumeric
    and quoted, so no input can inject tsquery operators."""
    words = dict.fromkeys(w.lower() for w in _WORD.findall(text))
    return " | ".join(f"'{w}'" for w in words)


def matching_terms(terms: Sequence[str], stats: CorpusStats, df_cap: float, max_rows: int) -> list[str]:
    """The terms that select lexical candidates. Only terms in at most ``df_cap`` of the user's
    turns (a speaker's name is in half of them and would match everything), rarest first while
    their document frequencies add up to at most ``max_rows`` (each matched row is read and
    scored: in a 10k-turn history a 10% term alone matches a thousand). When none qualifies, the
    two rarest known terms (only the rarest if both would exceed the budget). Every term still
    counts in the score."""
    known = sorted((t for t in terms if stats.df.get(t, 0) > 0), key=lambda t: (stats.df[t], t))
    chosen: list[str] = []
    rows = 0
    for t in known:
        df = stats.df[t]
        if df > df_cap * stats.n_docs or rows + df > max_rows:
            break
        chosen.append(t)
        rows += df
    if chosen:
        return chosen
    for t in known[:2]:  # none is selective: the two rarest, as long as they stay within budget
        if chosen and rows + stats.df[t] > max_rows:
            break
        chosen.append(t)
        rows += stats.df[t]
    return chosen


_SCOPE = "t.tenant_id = %(t)s and t.agent_id = %(a)s and t.user_id = %(u)s"
_TURN_COLS = "t.id, t.session_id, t.seq, t.question, t.answer, t.occurred_at, t.lex_parts"

_STATS_SQL = """
select set_config('hnsw.ef_search', %(ef)s, true), set_config('hnsw.iterative_scan', 'relaxed_order', true),
       set_config('hnsw.max_scan_tuples', %(max_scan)s, true),
       coalesce(s.n_docs, 0) as n_docs, coalesce(s.total_len, 0) as total_len,
       coalesce((select json_object_agg(d.term, d.df) from search_term_stats d
                  where d.tenant_id = %(t)s and d.agent_id = %(a)s and d.user_id = %(u)s
                    and d.term = any(%(terms)s::text[])), '{}'::json) as df,
       coalesce(g.generation, 0) as generation
  from (select 1) one
  left join search_doc_stats s on s.tenant_id = %(t)s and s.agent_id = %(a)s and s.user_id = %(u)s
  left join search_generations g on g.tenant_id = %(t)s and g.agent_id = %(a)s and g.user_id = %(u)s
"""


def _cosines(dense: bool) -> str:
    """Cosine of the query with the turn's vector and with each utterance's (null where a row
    has no vector yet)."""
    if not dense:
        return "null::float8 as cosine, null::float8 as q_cosine, null::float8 as a_cosine"
    return ", ".join(f"1 - ({col} <=> %(vec)s::vector) as {name}" for col, name in (
        ("t.embedding", "cosine"), ("t.q_embedding", "q_cosine"), ("t.a_embedding", "a_cosine")))


def _lexical_sql(*, n_terms: int, matching: bool, dated: bool) -> str:
    """First-round candidates that need no query vector — lexical, date-range and unindexed
    turns — as (id, session_id, seq, source, rank among the lexical ones). The ``n_terms``
    scored terms are parameters ``q<i>`` (tsquery) and ``w<i>`` (idf)."""
    # IDF-weighted match of a row: an inline sum, one boolean per scored term (cheaper than a
    # subquery over the terms per row).
    score = " + ".join(f"%(w{i})s::float8 * (m.lex @@ %(q{i})s::tsquery)::int" for i in range(n_terms)) or "0"
    parts: list[str] = []
    if matching:
        # ce_search_match (0006_search_user_scans.sql): the GIN match, which RLS would prevent
        parts.append(
            "select id, session_id, seq, 'l' as src, row_number() over () as r from ("
            " select m.id, m.session_id, m.seq"
            " from ce_search_match(%(t)s, %(a)s, %(u)s, to_tsquery('simple', %(tsq)s)) m"
            f" order by ({score}) * (%(k1)s + 1) / (1 + %(k1)s * (1 - %(b)s + %(b)s * coalesce(m.lex_len, 0)"
            " / %(avg_len)s)) desc, m.id limit %(n_fts)s) l")
    if dated:
        # In-range rows by their IDF-weighted match, among the first ``date_scan`` of each range
        # (a busy week of a long history holds a thousand turns). One probe of the user's
        # (occurred_at) btree per range, with plain comparisons: range operators are not
        # LEAKPROOF, and RLS would keep them out of the index condition.
        parts.append(
            "select * from (select d.id, d.session_id, d.seq, 'd' as src, 0::bigint as r"
            " from unnest(%(los)s::timestamptz[], %(his)s::timestamptz[]) as g(lo, hi), lateral ("
            " select i.id, i.session_id, i.seq from (select t.id, t.session_id, t.seq, t.occurred_at, t.lex"
            f" from turns t where {_SCOPE} and t.occurred_at >= g.lo and t.occurred_at < g.hi"
            " order by t.occurred_at limit %(n_date_scan)s) i"
            f" order by {score.replace('m.lex', 'i.lex')} desc, i.occurred_at limit %(n_date)s) d"
            " limit %(n_date)s) dd")
    parts.append(
        "select * from (select t.id, t.session_id, t.seq, 'f' as src, 0::bigint as r from turns t"
        f" where {_SCOPE} and t.indexed_at is null order by t.created_at desc limit %(n_fresh)s) f")
    return " union all ".join(f"({p})" for p in parts)


def _candidates_sql(*, n_terms: int, matching: bool, dated: bool, dense: bool, hnsw: bool, dim: int,
                    plan: CandidatePlan) -> str:
    """Every candidate source, the neighbours of the best candidates, and each candidate's row
    with its cosines — one statement."""
    ctes = [f"given as materialized ({_lexical_sql(n_terms=n_terms, matching=matching, dated=dated)})"]
    first = ["select id, session_id, seq from given"]
    ranked = ["select id, session_id, seq, r from given where src = 'l'"]
    if dense and hnsw:
        ctes.append(
            "vecc as materialized (select v.*, row_number() over () as r from (select t.id, t.session_id, t.seq"
            f" from turns t where {_SCOPE} and t.embedding is not null order by t.embedding <=> %(vec)s::vector"
            " limit %(n_vec)s) v)")
    elif dense:
        ctes.append(
            "bqc as materialized (select t.id from turns t"
            f" where {_SCOPE} and t.bq is not null"
            f" order by t.bq <~> binary_quantize(%(vec)s::vector)::bit({dim}) limit %(n_bq)s)")
        ctes.append(
            "vecc as materialized (select v.*, row_number() over () as r from (select t.id, t.session_id, t.seq"
            " from bqc, lateral (select t.id, t.session_id, t.seq, t.embedding from turns t"
            " where t.tenant_id = %(t)s and t.id = bqc.id) t order by t.embedding <=> %(vec)s::vector"
            " limit %(n_vec)s) v)")
    if dense:
        first.append("select id, session_id, seq from vecc")
        ranked.append("select id, session_id, seq, r from vecc")
    ctes.append("first_round as materialized (" + " union ".join(first) + ")")
    sources = "select id from first_round"
    expand = "first_round"
    if plan.neighbours and plan.neighbours_of_top is not None:
        # neighbours of the best first-round turns by reciprocal-rank fusion of the lexical and
        # dense orders (the re-ranker orders everything afterwards)
        ctes.append("fused as (select id, session_id, seq, sum(1.0 / (%(rrf_k)s + r)) as rrf from ("
                    + " union all ".join(ranked) + ") x group by id, session_id, seq"
                    " order by rrf desc limit %(n_nb)s)")
        expand = "fused"
    if plan.neighbours:
        # lateral: one unique-index probe per (session, seq), whatever the row estimates
        ctes.append(
            f"nb as (select t.id from {expand} f, unnest(array[f.seq - 1, f.seq + 1]) as n(seq),"
            " lateral (select t.id from turns t where t.tenant_id = %(t)s and t.session_id = f.session_id"
            " and t.seq = n.seq and t.agent_id = %(a)s and t.user_id = %(u)s) t)")
        sources += " union select id from nb"
    return (
        "with " + ", ".join(ctes) + f", ids as ({sources})"
        f" select {_TURN_COLS}, {_cosines(dense)} from ids, lateral (select * from turns t"
        " where t.tenant_id = %(t)s and t.id = ids.id and t.agent_id = %(a)s and t.user_id = %(u)s) t"
    )


# With the user's copy (user_index.py): the newest unindexed turns (the "fresh" source), which
# the copy does not hold.
_FRESH_ROWS = (
    f"select * from (select {_TURN_COLS} from turns t where {_SCOPE} and t.indexed_at is null"
    " order by t.created_at desc limit %(n_fresh)s) f"
)


def _neighbours_sql(dense: bool) -> str:
    return (
        f"select {_TURN_COLS}, {_cosines(dense)} from unnest(%(sessions)s::text[], %(seqs)s::int[]) as k(s, q),"
        " lateral (select * from turns t where t.tenant_id = %(t)s and t.session_id = k.s and t.seq = k.q"
        " and t.agent_id = %(a)s and t.user_id = %(u)s) t"
    )


def _row(r: dict[str, Any], cos: Cosines | None = None) -> TurnRow:
    if cos is None and "cosine" in r:
        return TurnRow(id=str(r["id"]), session_id=r["session_id"], seq=r["seq"], question=r["question"],
                       answer=r["answer"], occurred_at=r["occurred_at"], lex_parts=r["lex_parts"],
                       cosine=r["cosine"], part_cosines=(r["q_cosine"], r["a_cosine"]))
    return TurnRow(id=str(r["id"]), session_id=r["session_id"], seq=r["seq"], question=r["question"],
                   answer=r["answer"], occurred_at=r["occurred_at"], lex_parts=r["lex_parts"],
                   cosine=cos.turn if cos else None, part_cosines=(cos.question, cos.answer) if cos else (None, None))


def _fused_top(ranked: Sequence[Sequence[tuple[str, int]]], rrf_k: float, n: int) -> list[str]:
    """Ids of the ``n`` best by reciprocal-rank fusion of the given (id, rank) lists (ranks from 1),
    as the single-statement path's ``fused`` CTE orders them."""
    score: dict[str, float] = {}
    for lst in ranked:
        for tid, r in lst:
            score[tid] = score.get(tid, 0.0) + 1.0 / (rrf_k + r)
    return sorted(score, key=lambda tid: (-score[tid], tid))[:n]


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

    def __init__(self, db: Database, user_indexes: UserIndexCache | None = None) -> None:
        self.db = db
        self.user_indexes = user_indexes  # users' search indexes in memory (user_index.py); None: SQL only

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
        """``search_turns`` inside a transaction the caller holds."""
        terms = list(query.features.terms)
        base = {"t": scope.tenant_id, "a": scope.agent_id, "u": scope.user_id}
        head = conn.execute(_STATS_SQL, {**base, "terms": terms, "ef": str(EF_SEARCH),
                                         "max_scan": str(MAX_SCAN_TUPLES)}).fetchone()
        assert head is not None  # (select 1) always yields a row
        n_docs = int(head["n_docs"])
        stats = CorpusStats(n_docs=n_docs, avg_len=(int(head["total_len"]) / n_docs) if n_docs else 0.0,
                            df={t: int(d) for t, d in head["df"].items()})
        scored = [t for t in terms if stats.df.get(t, 0) > 0]
        match = matching_terms(terms, stats, plan.match_df_cap, plan.match_max_rows)
        ranges = date_ranges(query.features.dates, config) if plan.date_rows else []
        params: dict[str, Any] = {
            **base, "tsq": " | ".join(f"'{t}'" for t in match), "los": [lo for lo, _ in ranges],
            "his": [hi for _, hi in ranges], "k1": config.k1, "b": config.b, "avg_len": max(stats.avg_len, 1.0),
            "n_fts": plan.fts, "n_vec": plan.vector, "n_bq": plan.vector * plan.bq_oversample,
            "n_date": plan.date_rows, "n_fresh": plan.unindexed, "n_date_scan": plan.date_scan,
            "n_nb": plan.neighbours_of_top, "rrf_k": plan.rrf_k,
        }
        for i, t in enumerate(scored):
            params[f"q{i}"], params[f"w{i}"] = f"'{t}'", stats.idf(t)
        copy = None
        if self.user_indexes is not None and n_docs <= plan.exact_scan_max and query.pending_vector is not None:
            copy = self.user_indexes.current(conn, (scope.tenant_id, scope.agent_id, str(scope.user_id)),
                                        generation=int(head["generation"]), n_docs=n_docs)
        if copy is not None:
            return self._search_with_copy(conn, copy, query, stats, params, k=k, config=config, plan=plan,
                                          match=match, scored=scored, ranges=ranges)
        vec = query.vector
        dense = vec is not None
        params["vec"] = vector_literal(vec) if vec is not None else None
        sql = _candidates_sql(n_terms=len(scored), matching=bool(match), dated=bool(ranges), dense=dense,
                              hnsw=n_docs > plan.exact_scan_max, dim=len(vec) if vec is not None else 0, plan=plan)
        rows = conn.execute(sql, params).fetchall()

        def fetch_neighbours(keys: list[tuple[str, int]]) -> list[TurnRow]:
            found = conn.execute(_neighbours_sql(dense), {
                **params, "sessions": [s for s, _ in keys], "seqs": [q for _, q in keys]}).fetchall()
            return [_row(r) for r in found]

        if not rows:
            return TurnSearch(hits=[], candidates=0, round_trips=2)
        found = rank_turns(query, [_row(r) for r in rows], stats, k=k, config=config, plan=plan,
                           fetch_neighbours=fetch_neighbours)
        return TurnSearch(hits=found.hits, candidates=found.candidates, round_trips=found.round_trips + 1)

    def _search_with_copy(
        self, conn: Conn, copy: UserIndex, query: SearchQuery, stats: CorpusStats, params: dict[str, Any], *,
        k: int, config: RankConfig, plan: CandidatePlan, match: list[str], scored: list[str],
        ranges: list[tuple[dt.datetime, dt.datetime]],
    ) -> TurnSearch:
        """The candidate statement's sources from the user's copy, which holds the indexed turns'
        rows too: lexical and date-range candidates in memory and the unindexed turns in SQL,
        while the query is still being embedded; then the dense top by exact cosine and the
        neighbours of the best by reciprocal-rank fusion, looked up in the copy, with the cosines."""
        weights = [(t, stats.idf(t)) for t in scored]
        lexical = copy.lexical(match, weights, k1=config.k1, b=config.b, avg_len=max(stats.avg_len, 1.0),
                               limit=plan.fts) if match else []
        dated = copy.dated(ranges, weights, scan=plan.date_scan, limit=plan.date_rows) if ranges else []
        fresh = {str(r["id"]): r for r in conn.execute(_FRESH_ROWS, params).fetchall()}
        vec = query.vector
        if vec is not None and len(vec) != copy.dim:  # the stored vectors come from another model
            log.warning("query vector has %d dimensions, stored vectors %d: lexical only", len(vec), copy.dim)
            vec = None
        dense = ([(tid, i + 1) for i, (tid, _) in enumerate(copy.top(vec, plan.vector, oversample=plan.bq_oversample))]
                 if vec is not None else [])
        chosen = list(dict.fromkeys([*(tid for tid, _ in lexical), *dated, *fresh, *(tid for tid, _ in dense)]))
        if plan.neighbours:
            fresh_at = {(r["session_id"], r["seq"]): tid for tid, r in fresh.items()}
            expand = (list(chosen) if plan.neighbours_of_top is None
                      else _fused_top([lexical, dense], plan.rrf_k, plan.neighbours_of_top))
            for tid in expand:
                row = copy.rows.get(tid) or fresh[tid]
                for n in (row["seq"] - 1, row["seq"] + 1):
                    # a neighbour the copy lacks is an unindexed turn (then among the newest
                    # ones, or too old to matter) or no turn at all
                    nb = copy.id_at.get((row["session_id"], n)) or fresh_at.get((row["session_id"], n))
                    if nb is not None:
                        chosen.append(nb)
        rows = {tid: copy.rows.get(tid) or fresh[tid] for tid in dict.fromkeys(chosen)}
        if not rows:
            return TurnSearch(hits=[], candidates=0, round_trips=2, from_user_index=True)
        cosines = copy.cosines(rows, vec) if vec is not None else {}
        turn_rows = [_row(r, cosines.get(tid)) for tid, r in rows.items()]

        def fetch_neighbours(keys: list[tuple[str, int]]) -> list[TurnRow]:
            found = conn.execute(_neighbours_sql(False), {**params, "sessions": [s for s, _ in keys],
                                                          "seqs": [q for _, q in keys]}).fetchall()
            more = copy.cosines((str(r["id"]) for r in found), vec) if vec is not None else {}
            return [_row(r, more.get(str(r["id"]))) for r in found]

        found = rank_turns(query, turn_rows, stats, k=k, config=config, plan=plan, fetch_neighbours=fetch_neighbours)
        return TurnSearch(hits=found.hits, candidates=found.candidates, round_trips=found.round_trips + 1,
                          from_user_index=True)

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
