"""Hybrid re-ranking of candidate turns fetched by a storage backend.

The backend fetches candidates cheaply (full-text OR query, vector top-k, date-range rows,
neighbours of the best hits) and hands them here with what it already knows: the parts
(question / answer utterances), the session and seq, the date, and the cosine between the
query and the turn's embedding. This module computes everything else in Python:

1. per-part BM25 (each utterance plus the date text, scored against per-user statistics)
   and turn-level BM25, both from the analyzed text;
2. z-normalised fusion with the dense cosine (scores are normalised over the candidate set,
   so no fixed calibration between BM25 and cosine is needed);
3. a speaker prior: when the query names exactly one of the speakers, that speaker's
   utterances get a bonus (questions about a person are mostly answered in their own words);
4. neighbour smoothing: a turn gains part of the best adjacent turn's score (same session,
   seq ± 1), because evidence in dialogue sits next to the turn that matches the words;
5. a date bonus for turns that fall in a date range the query names.

Nothing here is keyed to a data set: speakers come from the candidates themselves (the
``speaker`` field or a leading "Name:" of the part), dates from the query text.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from context_engine.retrieval.fusion import FloatArray, zscore
from context_engine.retrieval.lexical import BM25Scorer, CorpusStats, analyze, term_counts
from context_engine.retrieval.query import QueryFeatures, named_speakers

_SPEAKER_PREFIX = re.compile(r"^\s*([A-Z][\w'.-]*(?: [A-Z][\w'.-]*){0,2}):\s")


@dataclass(frozen=True)
class Part:
    """One utterance of a turn (a WriteQA question or answer)."""

    text: str
    speaker: str | None = None
    # The stored analyzed terms, if the backend kept them; otherwise analyzed here.
    terms: tuple[str, ...] | None = None

    # Derived once per Part and kept in the instance dict (which a frozen dataclass allows;
    # fields, equality and hash are unchanged): search.ranking hands the re-ranker the same
    # Part objects query after query, and it reads these for every candidate.
    @functools.cached_property
    def speaker_name(self) -> str | None:
        if self.speaker:
            return self.speaker
        return _leading_speaker(self.text)

    @functools.cached_property
    def analyzed_terms(self) -> tuple[str, ...]:
        """The stored terms, else the text analyzed here."""
        return self.terms if self.terms is not None else analyzed(self.text)

    @functools.cached_property
    def term_counts(self) -> dict[str, int]:
        return term_counts(self.analyzed_terms)


@functools.lru_cache(maxsize=65536)
def _leading_speaker(text: str) -> str | None:
    m = _SPEAKER_PREFIX.match(text)
    return m.group(1) if m else None


@dataclass(frozen=True)
class Candidate:
    """A turn as fetched by the backend."""

    id: str
    session_id: str
    seq: int
    parts: tuple[Part, ...]
    occurred_at: dt.date | dt.datetime | None = None
    # Text indexed with every part (the rendered date, e.g. "8 May 2023").
    date_text: str = ""
    # Cosine similarity of the query with the turn's embedding; None if not embedded yet.
    dense: float | None = None
    # Optional cosine per part (if the backend stores one embedding per utterance).
    part_dense: tuple[float, ...] | None = None


@dataclass(frozen=True)
class RankConfig:
    """Weights of the fused score; the defaults are the measured recipe (docs/retrieval.md)."""

    w_part_lex: float = 0.5
    w_part_dense: float = 0.5
    w_turn_lex: float = 0.25
    w_turn_dense: float = 0.5
    w_speaker: float = 0.5
    neighbour: float = 0.5
    # Weight of the best turn two steps away, and of the best turn anywhere in the session.
    neighbour2: float = 0.0
    w_session: float = 0.2
    w_date: float = 1.0
    # A day named in the query matches turns from one day before to a week after (people
    # talk about an event in the days after it); a month matches up to ten days after it.
    date_before_days: int = 1
    date_after_days: int = 7
    month_after_days: int = 10
    k1: float = 1.2
    b: float = 0.75


@dataclass(frozen=True)
class Scored:
    candidate: Candidate
    score: float
    # Per-part score before turn-level terms, z-normalised over all parts (for snippet choice).
    part_scores: tuple[float, ...] = field(default=())

    @property
    def best_part(self) -> int:
        ps = self.part_scores  # the first of equal maxima, as np.argmax (without its overhead)
        return ps.index(max(ps)) if ps else 0


@functools.lru_cache(maxsize=65536)
def analyzed(text: str) -> tuple[str, ...]:
    """``analyze(text)`` as a tuple, cached (texts repeat across queries)."""
    return tuple(analyze(text))


def part_terms(part: Part) -> tuple[str, ...]:
    """A part's analyzed terms: the stored ones, else analyzed here (cached)."""
    return part.analyzed_terms


@functools.lru_cache(maxsize=4096)
def _date_doc(date_text: str) -> tuple[int, dict[str, int]]:
    """A date text's length in terms and its term counts (the same dates recur)."""
    terms = analyzed(date_text)
    return len(terms), term_counts(terms)


_NO_DATE: tuple[int, dict[str, int]] = (0, {})


def _as_date(value: dt.date | dt.datetime | None) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.date()
    return value


def _fill_missing(values: list[float | None]) -> FloatArray:
    """Missing values (e.g. a turn not embedded yet) count as the worst present value."""
    if None not in values:
        return np.array(values, dtype=np.float64)
    present = [v for v in values if v is not None]
    floor = min(present) if present else 0.0
    return np.array([floor if v is None else v for v in values], dtype=np.float64)


def neighbour_smooth(
    scores: FloatArray, keys: Sequence[tuple[str, int]], weight: float, *, distance: int = 1
) -> FloatArray:
    """``s + weight·max(s[prev], s[next])`` with prev/next = same session, seq ∓ ``distance``.

    A neighbour that is not among the candidates counts as the lowest candidate score: it
    was not found by any retriever, so it is assumed weak.
    """
    if weight == 0 or len(scores) == 0:
        return scores
    floor = float(scores.min())
    values = scores.tolist()  # plain floats: reading numpy scalars one at a time is slow
    score_of = dict(zip(keys, values, strict=True))
    out: list[float] = []
    for (session, seq), value in zip(keys, values, strict=True):
        best = max(score_of.get((session, seq - distance), floor), score_of.get((session, seq + distance), floor))
        out.append(value + weight * best)
    return np.array(out, dtype=np.float64)


def session_smooth(scores: FloatArray, sessions: Sequence[str], weight: float) -> FloatArray:
    """``s + weight·(best score in the same session)``: a session about the topic lifts its turns."""
    if weight == 0 or len(scores) == 0:
        return scores
    best: dict[str, float] = {}
    for sid, sc in zip(sessions, scores.tolist(), strict=True):
        best[sid] = max(best.get(sid, sc), sc)
    return scores + weight * np.array([best[sid] for sid in sessions])


def date_matches(day: dt.date | None, query: QueryFeatures, config: RankConfig) -> bool:
    if day is None:
        return False
    for span in query.dates:
        after = config.date_after_days if span.granularity == "day" else config.month_after_days
        if span.contains(day, before=config.date_before_days, after=after):
            return True
    return False


def rank(
    query: QueryFeatures,
    candidates: Sequence[Candidate],
    stats: CorpusStats,
    config: RankConfig | None = None,
    *,
    limit: int | None = None,
) -> list[Scored]:
    """Candidates ordered best first (deduplicated by id, first occurrence wins); only the
    best ``limit`` when given (a caller that keeps the top k need not build the rest)."""
    cfg = config or RankConfig()
    seen: set[str] = set()
    cands = [c for c in candidates if not (c.id in seen or seen.add(c.id))]  # type: ignore[func-returns-value]
    if not cands:
        return []
    scorer = BM25Scorer(query.terms, stats, k1=cfg.k1, b=cfg.b)
    query_set = frozenset(scorer.terms)
    part_names = [p.speaker_name for c in cands for p in c.parts]
    named = named_speakers(query.text, {n for n in part_names if n})
    target = next(iter(named)) if len(named) == 1 else None

    # A part is scored as its own short document; it is about half a turn long.
    part_avg = stats.avg_len / max(1.0, len(part_names) / len(cands))
    part_lex: list[float] = []
    part_dense: list[float | None] = []
    turn_lex: list[float] = []
    first: list[int] = []  # first[i]: where candidate i's parts start in the part lists
    for cand in cands:
        first.append(len(part_lex))
        n_date, date_counts = _date_doc(cand.date_text) if cand.date_text else _NO_DATE
        # BM25 sums over the terms a document shares with the query, so a piece (the date, a
        # part) that shares none only adds to the length: most parts share none and score 0.0
        # without a call. The turn is scored on the pieces that share a term, in order.
        date_hit = not query_set.isdisjoint(date_counts)
        turn_pieces = [date_counts] if date_hit else []
        turn_len = n_date
        cand_dense = cand.part_dense
        n_dense = len(cand_dense) if cand_dense is not None else 0
        for pi, part in enumerate(cand.parts):
            counts = part.term_counts
            n = len(part.analyzed_terms)
            turn_len += n
            if date_hit:  # the part's document is its terms, then the date's
                part_lex.append(scorer.score_counts((counts, date_counts), n + n_date, avg_len=part_avg))
                turn_pieces.append(counts)
            elif not query_set.isdisjoint(counts):
                part_lex.append(scorer.score_counts((counts,), n + n_date, avg_len=part_avg))
                turn_pieces.append(counts)
            else:
                part_lex.append(0.0)
            part_dense.append(cand_dense[pi] if cand_dense is not None and pi < n_dense else None)
        turn_lex.append(scorer.score_counts(turn_pieces, turn_len) if turn_pieces else 0.0)

    first.append(len(part_lex))
    owner = np.repeat(np.arange(len(cands), dtype=np.int64), np.diff(first))  # each part's candidate
    if target is None:  # no single speaker named: no part gets the bonus
        part_spk = np.zeros(len(part_names))
    else:
        part_spk = np.array([1.0 if n == target else 0.0 for n in part_names])
    p_score = cfg.w_part_lex * zscore(part_lex) + cfg.w_speaker * part_spk
    has_part_dense = part_dense.count(None) < len(part_dense)  # any present (count runs in C)
    if has_part_dense and cfg.w_part_dense:
        p_score = p_score + cfg.w_part_dense * zscore(_fill_missing(part_dense))
    turn_dense_w = cfg.w_turn_dense if has_part_dense else cfg.w_turn_dense + cfg.w_part_dense

    best = np.full(len(cands), -np.inf)
    np.maximum.at(best, owner, p_score)
    best[~np.isfinite(best)] = float(p_score.min()) if p_score.size else 0.0  # turns without parts
    score = best + cfg.w_turn_lex * zscore(turn_lex)
    dense = [c.dense for c in cands]
    if dense.count(None) < len(dense):
        score = score + turn_dense_w * zscore(_fill_missing(dense))
    keys = [(c.session_id, c.seq) for c in cands]
    raw = score
    score = neighbour_smooth(raw, keys, cfg.neighbour)
    if cfg.neighbour2:
        score = score + (neighbour_smooth(raw, keys, cfg.neighbour2, distance=2) - raw)
    score = session_smooth(score, [c.session_id for c in cands], cfg.w_session)
    if query.dates and cfg.w_date:
        bonus = np.array([date_matches(_as_date(c.occurred_at), query, cfg) for c in cands], dtype=np.float64)
        score = score + cfg.w_date * bonus

    part_list = p_score.tolist()
    final = score.tolist()
    order = np.argsort(-score, kind="stable")
    return [Scored(cands[i], final[i], tuple(part_list[first[i] : first[i + 1]])) for i in order[:limit].tolist()]


def missing_neighbours(
    scored: Sequence[Scored], *, top: int = 30, have: Iterable[tuple[str, int]] | None = None
) -> list[tuple[str, int]]:
    """(session_id, seq) of the turns adjacent to the ``top`` best that are not candidates yet.

    The backend fetches these rows (with their embedding cosine) and calls ``rank`` again on
    the union, so a weakly-worded turn next to a strong hit can be pulled up.
    """
    known = set(have) if have is not None else {(s.candidate.session_id, s.candidate.seq) for s in scored}
    out: list[tuple[str, int]] = []
    for s in scored[:top]:
        for seq in (s.candidate.seq - 1, s.candidate.seq + 1):
            key = (s.candidate.session_id, seq)
            if seq >= 0 and key not in known:
                known.add(key)
                out.append(key)
    return out
