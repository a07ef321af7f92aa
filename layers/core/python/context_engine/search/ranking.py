"""Shared turn ranking: backend rows → ``retrieval.Candidate`` → ``retrieval.rank``.

Every backend returns the same row shape (``TurnRow``) and the same per-user statistics;
this module turns them into the research helper's candidates, ranks them, and asks the
backend for the neighbours of the new top that it has not fetched yet (the recipe in
docs/retrieval.md). Ranking therefore never differs between PostgreSQL and OpenSearch.
"""

from __future__ import annotations

import datetime as dt
import functools
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from context_engine.retrieval import Candidate, CorpusStats, Part, RankConfig, index_date_text, missing_neighbours, rank
from context_engine.search.base import CandidatePlan, SearchQuery, TurnSearch
from context_engine.search.text import utc_date


@dataclass(frozen=True)
class TurnRow:
    id: str
    session_id: str
    seq: int
    question: str
    answer: str
    occurred_at: dt.datetime
    # Analyzed terms of question and answer as the indexer stored them; None for a turn that
    # is not indexed yet (its terms are then analyzed here, from the text).
    lex_parts: Sequence[str] | None
    cosine: float | None
    # Cosines of the query with the question's and the answer's own vectors.
    part_cosines: tuple[float | None, float | None] = (None, None)


_ZERO = dt.timedelta(0)


def to_candidate(row: TurnRow) -> Candidate:
    # hot path (~150 rows per query): plain loops, no generators
    lex = row.lex_parts
    n_lex = len(lex) if lex is not None else 0
    parts: list[Part] = []
    part_dense: list[float | None] = []
    any_dense = False
    for i, text in enumerate((row.question, row.answer)):
        if not text:
            continue  # a turn without an answer has one part
        parts.append(_part(text, lex[i] if lex is not None and i < n_lex else None))
        x = row.part_cosines[i]
        if x is not None:
            any_dense = True
            x = float(x)
        part_dense.append(x)
    when = row.occurred_at
    # utc_date converts first; rows come back in the session's time zone, which is UTC
    day = when.date() if when.utcoffset() == _ZERO else utc_date(when)
    # The re-ranker fills a missing cosine with the worst present one; a row with none at all
    # (not indexed yet, or indexed before utterance vectors existed) passes None.
    # Positional (id, session_id, seq, parts, occurred_at, date_text, dense, part_dense):
    # keyword arguments to a class call are gathered into a dict first.
    return Candidate(row.id, row.session_id, row.seq, tuple(parts), day, _date_text(day),
                     None if row.cosine is None else float(row.cosine),
                     tuple(part_dense) if any_dense else None)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=65536)
def _part(text: str, stored: str | None) -> Part:
    """An utterance and its stored terms (space-separated) as a Part, remembered: the same
    utterances come back query after query, and the re-ranker keeps on a Part what it derives
    from it (terms and their counts, the speaker). Terms are interned: a user's vocabulary is
    small, so the cached parts share one string per term."""
    return Part(text=text, terms=tuple(map(sys.intern, stored.split())) if stored is not None else None)


@functools.lru_cache(maxsize=4096)
def _date_text(day: dt.date) -> str:
    return index_date_text(day)


def rank_turns(
    query: SearchQuery,
    rows: Sequence[TurnRow],
    stats: CorpusStats,
    *,
    k: int,
    config: RankConfig | None,
    plan: CandidatePlan,
    fetch_neighbours: Callable[[list[tuple[str, int]]], list[TurnRow]],
) -> TurnSearch:
    candidates = [to_candidate(r) for r in rows]
    second_pass = bool(plan.second_pass_neighbours and plan.second_pass_top)
    # Only the top k are kept: the rest are not built (the second pass looks at every candidate).
    scored = rank(query.features, candidates, stats, config, limit=None if second_pass else k)
    trips = 1
    if second_pass and scored:
        wanted = missing_neighbours(scored, top=plan.second_pass_top)
        if wanted:
            extra = [to_candidate(r) for r in fetch_neighbours(wanted)]
            trips += 1
            if extra:
                candidates += extra
                scored = rank(query.features, candidates, stats, config, limit=k)
    return TurnSearch(hits=list(scored[:k]), candidates=len(candidates), round_trips=trips)
