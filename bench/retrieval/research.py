"""Retrieval research on the LoCoMo dev set: baselines, one row per idea, and the recipe.

    PYTHONPATH=layers/core/python .venv/bin/python bench/retrieval/research.py [--quick] [--per-conv]

Prints a markdown table (R@1/5/10/20, ECR@1000/2000/4000, ECRm@2000) to stdout. Embeddings
are cached under $RESEARCH_CACHE_DIR (default /tmp/ce_bench_cache), so only the first run
spends ~15 s of CPU on MiniLM.

Rows marked "full" score every turn of the user in memory (the research view); the rows
marked "sql" run the production path: candidates as PostgreSQL would return them (OR
full-text with an IDF-weighted match score, exact vector top-k, date-range rows, neighbours
of the best hits) re-ranked by ``context_engine.retrieval.rank`` with per-user statistics.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

_HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(_HERE), str(_HERE.parents[1] / "layers" / "core" / "python")]

import locomo  # noqa: E402

from context_engine.embeddings import build_embedder  # noqa: E402
from context_engine.retrieval import (  # noqa: E402
    Candidate,
    CorpusStats,
    Part,
    RankConfig,
    Scored,
    analyze,
    analyze_query,
    first_date,
    index_date_text,
    missing_neighbours,
    pack,
    rank,
    zscore,
)
from context_engine.retrieval.rerank import date_matches  # noqa: E402

CACHE = Path(os.environ.get("RESEARCH_CACHE_DIR", "/tmp/ce_bench_cache"))
KS = (1, 5, 10, 20)
BUDGETS = (1000, 2000, 4000)


# --- data, embeddings ----------------------------------------------------------------------

_embedder = None


def embed(texts: list[str]) -> np.ndarray:
    """MiniLM vectors, cached on disk by the hash of the texts."""
    global _embedder
    CACHE.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha1("\x00".join(texts).encode()).hexdigest()[:20]
    path = CACHE / f"minilm_{key}.npy"
    if path.exists():
        return np.load(path)
    if _embedder is None:
        _embedder = build_embedder("minilm", threads=int(os.environ.get("RESEARCH_THREADS", "2")))
    vecs = _embedder.embed(texts)
    np.save(path, vecs)
    return vecs


@dataclass
class UserIndex:
    """Everything a backend would hold for one user, computed once."""

    conv: locomo.Conversation
    turn_terms: list[list[str]]  # analyzed question + answer + date
    part_terms: list[list[list[str]]]
    date_terms: list[list[str]]
    plain_tokens: list[list[str]]
    dates: list
    date_text: list[str]
    sess: np.ndarray
    u2t: np.ndarray  # utterance -> turn
    u_offset: np.ndarray  # turn -> index of its first utterance
    e_turn: np.ndarray
    e_utt: np.ndarray
    e_q: np.ndarray
    stats: CorpusStats
    candidates: list[Candidate]


def build_index(conv: locomo.Conversation) -> UserIndex:
    dates = [first_date(t.session_date) for t in conv.turns]
    date_text = [index_date_text(d) if d else t.session_date for t, d in zip(conv.turns, dates, strict=True)]
    date_terms = [analyze(x) for x in date_text]
    part_terms = [[analyze(u.text) for u in t.utterances] for t in conv.turns]
    turn_terms = [sum(pt, []) + dt for pt, dt in zip(part_terms, date_terms, strict=True)]
    utts = [u for t in conv.turns for u in t.utterances]
    u2t = np.array([i for i, t in enumerate(conv.turns) for _ in t.utterances])
    candidates = [
        Candidate(
            id=t.turn_id,
            session_id=str(t.session),
            seq=t.seq,
            parts=tuple(
                Part(u.text, u.speaker, tuple(pt)) for u, pt in zip(t.utterances, part_terms[i], strict=True)
            ),
            occurred_at=dates[i],
            date_text=date_text[i],
        )
        for i, t in enumerate(conv.turns)
    ]
    return UserIndex(
        conv=conv,
        turn_terms=turn_terms,
        part_terms=part_terms,
        date_terms=date_terms,
        plain_tokens=[re.findall(r"[a-z0-9]+", t.text.lower()) for t in conv.turns],
        dates=dates,
        date_text=date_text,
        sess=np.array([t.session for t in conv.turns]),
        u2t=u2t,
        u_offset=np.r_[0, np.cumsum([len(t.utterances) for t in conv.turns])[:-1]],
        e_turn=embed([t.text for t in conv.turns]),
        e_utt=embed([u.text for u in utts]),
        e_q=embed([q.text for q in conv.questions]),
        stats=CorpusStats.from_documents(turn_terms),
        candidates=candidates,
    )


# --- vectorised BM25 over a whole user (research view) --------------------------------------


class BM25Matrix:
    """BM25 (Lucene idf, k1=1.2, b=0.75) of every document for a query, with posting lists."""

    def __init__(
        self, docs: Sequence[Sequence[str]], k1: float = 1.2, b: float = 0.75, okapi_idf: bool = False
    ) -> None:
        self.n = len(docs)
        dl = np.array([len(d) for d in docs], dtype=np.float64)
        avg = dl.mean() if self.n else 1.0
        self.post: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        tmp: dict[str, tuple[list[int], list[int]]] = {}
        for i, d in enumerate(docs):
            counts: dict[str, int] = {}
            for w in d:
                counts[w] = counts.get(w, 0) + 1
            for w, f in counts.items():
                ids, fs = tmp.setdefault(w, ([], []))
                ids.append(i)
                fs.append(f)
        self.idf: dict[str, float] = {}
        for w, (ids, fs) in tmp.items():
            n = len(ids)
            if okapi_idf:  # rank_bm25's BM25Okapi, floor applied below
                self.idf[w] = np.log(self.n - n + 0.5) - np.log(n + 0.5)
            else:
                self.idf[w] = float(np.log(1 + (self.n - n + 0.5) / (n + 0.5)))
            f = np.array(fs, dtype=np.float64)
            idx = np.array(ids)
            self.post[w] = (idx, f * (k1 + 1) / (f + k1 * (1 - b + b * dl[idx] / avg)))
        if okapi_idf and self.idf:
            eps = 0.25 * float(np.mean(list(self.idf.values())))
            self.idf = {w: (v if v >= 0 else eps) for w, v in self.idf.items()}

    def scores(self, terms: Sequence[str]) -> np.ndarray:
        out = np.zeros(self.n)
        for w in terms:
            if w in self.post:
                idx, part = self.post[w]
                out[idx] += self.idf[w] * part
        return out


def umax(ix: UserIndex, utt_scores: np.ndarray) -> np.ndarray:
    out = np.full(len(ix.conv.turns), -np.inf)
    np.maximum.at(out, ix.u2t, utt_scores)
    return out


def neighbour_full(ix: UserIndex, s: np.ndarray, lam: float) -> np.ndarray:
    lo = s.min()
    prev = np.r_[lo, s[:-1]]
    nxt = np.r_[s[1:], lo]
    prev[np.r_[True, ix.sess[1:] != ix.sess[:-1]]] = lo
    nxt[np.r_[ix.sess[:-1] != ix.sess[1:], True]] = lo
    return s + lam * np.maximum(prev, nxt)


# --- evaluation ---------------------------------------------------------------------------

Ranker = Callable[[UserIndex, int, locomo.Question], "np.ndarray | list[Scored]"]


@dataclass
class Result:
    name: str
    overall: dict[str, float]
    per_conv: dict[str, dict[str, float]]
    ms_per_query: float = 0.0


def _packed_from_snippets(ix: UserIndex, ctx) -> locomo.Packed:
    by_id = {t.turn_id: t for t in ix.conv.turns}
    ids: set[str] = set()
    for s in ctx.snippets:
        turn = by_id[s.candidate_id]
        ids.update(turn.dia_ids if s.part is None else (turn.utterances[s.part].dia_id,))
    return locomo.Packed((ctx.text,), frozenset(ids), ctx.token_count)


def evaluate(name: str, indexes: list[UserIndex], ranker: Ranker, packer: str = "turns") -> Result:
    """``packer``: "turns" = whole turns in ranked order (README protocol), "parts" = the
    retrieval.pack utterance packer (needs a ranker that returns Scored)."""
    rows: dict[str, dict[str, list[float]]] = {}
    elapsed = 0.0
    nq = 0
    for ix in indexes:
        acc: dict[str, list[float]] = {}
        for qi, q in enumerate(ix.conv.questions):
            t0 = time.perf_counter()
            out = ranker(ix, qi, q)
            elapsed += time.perf_counter() - t0
            nq += 1
            if isinstance(out, np.ndarray):
                order = np.argsort(-out, kind="stable")
                ranked_turns = [ix.conv.turns[i] for i in order[:300]]
                scored = None
            else:
                scored = out
                by_id = {t.turn_id: t for t in ix.conv.turns}
                ranked_turns = [by_id[s.candidate.id] for s in scored]
            for k in KS:
                acc.setdefault(f"R@{k}", []).append(locomo.recall_at_k(ranked_turns, q.evidence, k))
            for b in BUDGETS:
                if packer.startswith("parts") and scored is not None:
                    ctx = pack(
                        scored, b, mode="parts", max_part_tokens=None if packer == "parts-full" else 64
                    )
                    packed = _packed_from_snippets(ix, ctx)
                else:
                    packed = locomo.pack_whole_turns(ranked_turns, b)
                locomo.check_packed(packed, b)
                hit, share = locomo.ecr(packed, q.evidence)
                acc.setdefault(f"ECR@{b}", []).append(hit)
                acc.setdefault(f"ECRm@{b}", []).append(share)
        rows[ix.conv.user_id] = acc
    per_conv = {u: {k: float(np.mean(v)) for k, v in acc.items()} for u, acc in rows.items()}
    keys = next(iter(rows.values())).keys()
    overall = {k: float(np.mean([x for acc in rows.values() for x in acc[k]])) for k in keys}
    return Result(name, overall, per_conv, 1000 * elapsed / max(nq, 1))


COLUMNS = ("R@1", "R@5", "R@10", "R@20", "ECR@1000", "ECR@2000", "ECR@4000", "ECRm@2000")


def print_header() -> None:
    print("| method | " + " | ".join(COLUMNS) + " | ms/q |")
    print("|---|" + "---|" * (len(COLUMNS) + 1))


def print_rows(results: list[Result], per_conv: bool) -> None:
    for r in results:
        cells = " | ".join(f"{r.overall[c]:.3f}" for c in COLUMNS)
        print(f"| {r.name} | {cells} | {r.ms_per_query:.1f} |")
        if per_conv:
            for user, vals in r.per_conv.items():
                cells = " | ".join(f"{vals[c]:.3f}" for c in COLUMNS)
                print(f"| &nbsp;&nbsp;{user} | {cells} | |")
    sys.stdout.flush()


# --- the ideas ----------------------------------------------------------------------------


class Lab:
    """Full-corpus scorers, one per idea, sharing per-user precomputation."""

    def __init__(self, indexes: list[UserIndex]) -> None:
        from rank_bm25 import BM25Okapi  # dev dependency, only for the baseline row

        self.ix = indexes
        self.plain = {id(ix): BM25Okapi(ix.plain_tokens) for ix in indexes}
        self.stem_turn = {id(ix): BM25Matrix([sum(p, []) for p in ix.part_terms]) for ix in indexes}
        self.stem_turn_date = {id(ix): BM25Matrix(ix.turn_terms) for ix in indexes}
        self.stem_utt_date = {
            id(ix): BM25Matrix([pt + ix.date_terms[i] for i, t in enumerate(ix.part_terms) for pt in t])
            for ix in indexes
        }

    @staticmethod
    def recent(ix: UserIndex, qi: int, q: locomo.Question) -> np.ndarray:
        return np.arange(len(ix.conv.turns), dtype=np.float64)

    def bm25_plain(self, ix: UserIndex, qi: int, q: locomo.Question) -> np.ndarray:
        return np.asarray(self.plain[id(ix)].get_scores(re.findall(r"[a-z0-9]+", q.text.lower())))

    @staticmethod
    def dense(ix: UserIndex, qi: int, q: locomo.Question) -> np.ndarray:
        return ix.e_turn @ ix.e_q[qi]

    @staticmethod
    def dense_utt(ix: UserIndex, qi: int, q: locomo.Question) -> np.ndarray:
        return np.maximum(umax(ix, ix.e_utt @ ix.e_q[qi]), ix.e_turn @ ix.e_q[qi])

    def rrf(self, a: np.ndarray, b: np.ndarray, k: float = 60.0) -> np.ndarray:
        out = np.zeros(len(a))
        for s in (a, b):
            r = np.empty(len(s))
            r[np.argsort(-s, kind="stable")] = np.arange(len(s))
            out += 1.0 / (k + r + 1)
        return out

    def bm25_stem(self, ix: UserIndex, qi: int, q: locomo.Question) -> np.ndarray:
        return self.stem_turn[id(ix)].scores(analyze_query(q.text).terms)

    def bm25_stem_date(self, ix: UserIndex, qi: int, q: locomo.Question) -> np.ndarray:
        return self.stem_turn_date[id(ix)].scores(analyze_query(q.text).terms)

    def bm25_utt_date(self, ix: UserIndex, qi: int, q: locomo.Question) -> np.ndarray:
        return self.stem_utt_date[id(ix)].scores(analyze_query(q.text).terms)

    def speaker(self, ix: UserIndex, q: locomo.Question) -> np.ndarray:
        low = q.text.lower()
        named = [s for s in ix.conv.speakers if re.search(rf"(?<!\w){re.escape(s.lower())}(?!\w)", low)]
        spk = np.array([u.speaker for t in ix.conv.turns for u in t.utterances])
        return np.isin(spk, named).astype(float) if len(named) == 1 else np.zeros(len(spk))

    def fused(
        self,
        ix: UserIndex,
        qi: int,
        q: locomo.Question,
        *,
        utt_dense: bool = True,
        speaker: float = 0.0,
        lam: float = 0.0,
        date: float = 0.0,
        wdt: float = 0.25,
    ) -> np.ndarray:
        """Utterance-level BM25 (+ dense) → max per turn, + turn-level BM25 and dense."""
        us = 0.5 * zscore(self.bm25_utt_date(ix, qi, q)) + speaker * self.speaker(ix, q)
        if utt_dense:
            us = us + 0.5 * zscore(ix.e_utt @ ix.e_q[qi])
        else:
            wdt += 0.5
        s = (
            umax(ix, us)
            + 0.25 * zscore(self.bm25_stem_date(ix, qi, q))
            + wdt * zscore(ix.e_turn @ ix.e_q[qi])
        )
        if lam:
            s = neighbour_full(ix, s, lam)
        if date:
            qf = analyze_query(q.text)
            cfg = RankConfig()
            s = s + date * np.array([date_matches(d, qf, cfg) for d in ix.dates], dtype=np.float64)
        return s


# --- the production path: SQL-shaped candidates + rerank -----------------------------------


@dataclass(frozen=True)
class CandidatePlan:
    """How many rows each SQL candidate query returns."""

    fts: int = 50
    vector: int = 50
    date_rows: int = 50
    neighbours_of_top: int = 30
    fts_order: str = "idf_match"  # "idf_match" (SQL-computable) or "bm25" (exact, Python)
    # The backend stores one embedding per utterance besides the turn's and returns their cosines.
    part_vectors: bool = True
    # Only terms in at most this share of the user's turns are used to *match* rows (all terms
    # still score); very common terms (the speakers' names) would otherwise match every row.
    match_df_cap: float | None = 0.10
    # Fetch the neighbours of every first-round candidate with the candidates themselves (one
    # round trip, one rank() pass) instead of a second round for the top ones.
    prefetch_neighbours: bool = True


RERANK_MS: list[float] = []


def sql_fts_scores(ix: UserIndex, terms: Sequence[str], plan: CandidatePlan) -> np.ndarray:
    """The lexical candidate order SQL can compute: Σ idf(term)·[term ∈ doc]·length norm.

    Per term a boolean ``tsv @@ 'term'`` times a weight sent with the query; document length
    is ``length(tsv)``. It is BM25 with tf capped at 1 (turns are short, tf is rarely > 1).
    """
    stats = ix.stats
    k1, b = 1.2, 0.75
    out = np.zeros(len(ix.turn_terms))
    if not terms:
        return out
    match = set(terms)
    if plan.match_df_cap is not None:
        known = [t for t in terms if stats.df.get(t, 0) > 0]
        match = {t for t in known if stats.df[t] <= plan.match_df_cap * stats.n_docs}
        match = match or set(sorted(known, key=lambda t: stats.df[t])[:2])
    for i, doc in enumerate(ix.turn_terms):
        present = set(doc)
        hit = sum(stats.idf(t) for t in terms if t in present)
        if hit and not match.isdisjoint(present):
            out[i] = hit * (k1 + 1) / (1 + k1 * (1 - b + b * len(doc) / stats.avg_len))
    return out


def sql_candidates(
    ix: UserIndex, qi: int, q: locomo.Question, plan: CandidatePlan, config: RankConfig
) -> list[Scored]:
    qf = analyze_query(q.text)
    # Per-user document frequencies of the query's terms: one GIN count per term in SQL, or a
    # stats table kept by the indexer.
    stats = CorpusStats(ix.stats.n_docs, ix.stats.avg_len, {t: ix.stats.df.get(t, 0) for t in qf.terms})
    cos = ix.e_turn @ ix.e_q[qi]
    part_cos = ix.e_utt @ ix.e_q[qi] if plan.part_vectors else None
    exact = plan.fts_order == "bm25"
    lex = BM25Matrix(ix.turn_terms).scores(qf.terms) if exact else sql_fts_scores(ix, qf.terms, plan)
    matched = np.flatnonzero(lex > 0)
    chosen = set(matched[np.argsort(-lex[matched], kind="stable")][: plan.fts].tolist())
    chosen |= set(np.argsort(-cos, kind="stable")[: plan.vector].tolist())
    if qf.dates and plan.date_rows:
        in_range = [i for i, d in enumerate(ix.dates) if date_matches(d, qf, config)]
        in_range.sort(key=lambda i: -lex[i])
        chosen |= set(in_range[: plan.date_rows])
    by_key = {(c.session_id, c.seq): i for i, c in enumerate(ix.candidates)}

    def with_dense(i: int) -> Candidate:
        pd = None
        if part_cos is not None:
            first = int(ix.u_offset[i])
            pd = tuple(float(x) for x in part_cos[first : first + len(ix.candidates[i].parts)])
        return replace(ix.candidates[i], dense=float(cos[i]), part_dense=pd)

    if plan.prefetch_neighbours:
        for i in list(chosen):
            c = ix.candidates[i]
            chosen |= {
                by_key[k] for k in ((c.session_id, c.seq - 1), (c.session_id, c.seq + 1)) if k in by_key
            }
    cands = [with_dense(i) for i in sorted(chosen)]
    t0 = time.perf_counter()
    scored = rank(qf, cands, stats, config)
    RERANK_MS.append(1000 * (time.perf_counter() - t0))
    if plan.neighbours_of_top and not plan.prefetch_neighbours:
        extra = [by_key[k] for k in missing_neighbours(scored, top=plan.neighbours_of_top) if k in by_key]
        if extra:
            more = [with_dense(i) for i in extra]
            t0 = time.perf_counter()
            scored = rank(qf, cands + more, stats, config)
            RERANK_MS[-1] += 1000 * (time.perf_counter() - t0)
    return scored


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-conv", action="store_true", help="also print each conversation")
    ap.add_argument("--quick", action="store_true", help="only the baselines and the recipe")
    ap.add_argument("--sweep", action="store_true", help="candidate-count and weight sweeps")
    args = ap.parse_args()

    convs = locomo.load()
    t0 = time.time()
    indexes = [build_index(c) for c in convs]
    print(
        f"<!-- {sum(len(c.questions) for c in convs)} questions, "
        f"{sum(len(c.turns) for c in convs)} turns, index {time.time() - t0:.1f}s -->"
    )
    lab = Lab(indexes)
    cfg = RankConfig()
    plan = CandidatePlan()
    rows: list[tuple[str, Ranker, str]] = [
        ("most recent turns only", lab.recent, "turns"),
        ("BM25 rank_bm25 plain (baseline)", lab.bm25_plain, "turns"),
        ("dense MiniLM turn (baseline)", lab.dense, "turns"),
        (
            "RRF(BM25 plain, dense) k=60 (baseline)",
            lambda ix, qi, q: lab.rrf(lab.bm25_plain(ix, qi, q), lab.dense(ix, qi, q)),
            "turns",
        ),
    ]
    if not args.quick:
        rows += [
            ("full: BM25 stop words + Snowball stems", lab.bm25_stem, "turns"),
            ("full: + session date in indexed text", lab.bm25_stem_date, "turns"),
            (
                "full: BM25 per utterance (max) + date",
                lambda ix, qi, q: umax(ix, lab.bm25_utt_date(ix, qi, q)),
                "turns",
            ),
            ("full: dense max(turn, utterances)", lab.dense_utt, "turns"),
            (
                "full: RRF(BM25 stem+date, dense) k=60",
                lambda ix, qi, q: lab.rrf(lab.bm25_stem_date(ix, qi, q), lab.dense(ix, qi, q)),
                "turns",
            ),
            (
                "full: RRF k=10",
                lambda ix, qi, q: lab.rrf(lab.bm25_stem_date(ix, qi, q), lab.dense(ix, qi, q), k=10),
                "turns",
            ),
            (
                "full: z-score sum(BM25 stem+date, dense)",
                lambda ix, qi, q: (
                    0.5 * zscore(lab.bm25_stem_date(ix, qi, q)) + 0.5 * zscore(lab.dense(ix, qi, q))
                ),
                "turns",
            ),
            ("full: utterance+turn z fusion (U+T)", lambda ix, qi, q: lab.fused(ix, qi, q), "turns"),
            ("full: U+T + speaker prior 0.5", lambda ix, qi, q: lab.fused(ix, qi, q, speaker=0.5), "turns"),
            (
                "full: U+T + speaker + neighbours 0.5",
                lambda ix, qi, q: lab.fused(ix, qi, q, speaker=0.5, lam=0.5),
                "turns",
            ),
            (
                "full: U+T + speaker + neighbours + date bonus",
                lambda ix, qi, q: lab.fused(ix, qi, q, speaker=0.5, lam=0.5, date=1.0),
                "turns",
            ),
            (
                "full: same, turn embedding only (no per-utterance vectors)",
                lambda ix, qi, q: lab.fused(ix, qi, q, utt_dense=False, speaker=0.5, lam=0.5, date=1.0),
                "turns",
            ),
        ]
    recipe = lambda ix, qi, q: sql_candidates(ix, qi, q, plan, cfg)  # noqa: E731
    turn_vec_only = replace(plan, part_vectors=False)
    rows += [
        ("sql: recipe, whole turns packed", recipe, "turns"),
        ("**sql: recipe, utterance packer (the recipe)**", recipe, "parts"),
        ("sql: recipe, utterance packer without truncation", recipe, "parts-full"),
        (
            "sql: recipe with the turn vector only (1 vector/turn)",
            lambda ix, qi, q: sql_candidates(ix, qi, q, turn_vec_only, cfg),
            "parts",
        ),
    ]
    if args.sweep:
        plans = [
            (f"candidates fts={f} vec={v}", replace(plan, fts=f, vector=v))
            for f, v in ((25, 25), (100, 50), (50, 100), (100, 100), (200, 200))
        ]
        plans += [
            ("all query terms match rows (no df cap)", replace(plan, match_df_cap=None)),
            ("neighbours of the top 30 in a second round", replace(plan, prefetch_neighbours=False)),
        ]
        plans += [
            ("FTS candidates ordered by exact BM25", replace(plan, fts_order="bm25")),
            ("no neighbour fetch", replace(plan, neighbours_of_top=0, prefetch_neighbours=False)),
            ("no date-range candidates", replace(plan, date_rows=0)),
        ]
        for name, p in plans:
            rows.append((f"sql: {name}", lambda ix, qi, q, p=p: sql_candidates(ix, qi, q, p, cfg), "parts"))
        configs = [
            ("no speaker prior", replace(cfg, w_speaker=0.0)),
            ("no neighbour smoothing", replace(cfg, neighbour=0.0)),
            ("no session smoothing", replace(cfg, w_session=0.0)),
            ("no date bonus", replace(cfg, w_date=0.0)),
            ("neighbour 0.35", replace(cfg, neighbour=0.35)),
            ("neighbour 0.7", replace(cfg, neighbour=0.7)),
            ("+ neighbours at distance 2 (0.15)", replace(cfg, neighbour2=0.15)),
            ("turn dense 0.75", replace(cfg, w_turn_dense=0.75)),
            ("turn BM25 0.5", replace(cfg, w_turn_lex=0.5)),
        ]
        for name, c in configs:
            rows.append((f"sql: {name}", lambda ix, qi, q, c=c: sql_candidates(ix, qi, q, plan, c), "parts"))

    print_header()
    for name, ranker, packer in rows:
        print_rows([evaluate(name, indexes, ranker, packer)], args.per_conv)
    if RERANK_MS:
        p50, p95, p99 = np.percentile(RERANK_MS, [50, 95, 99])
        print(
            f"\nrank() over the candidates (incl. neighbour pass): p50 {p50:.1f} ms, p95 {p95:.1f} ms, "
            f"p99 {p99:.1f} ms over {len(RERANK_MS)} calls"
        )


if __name__ == "__main__":
    main()
