"""Shared turn ranking: backend rows → ``retrieval.Candidate`` → ``retrieval.rank``.

Every backend returns the same row shape (``TurnRow``) and the same per-user statistics;
this module turns them into the research helper's candidates, ranks them, and asks the
backend for the neighbours of the new top that it has not fetched yet (the recipe in
docs/retrieval.md). Ranking therefore never differs between PostgreSQL and OpenSearch.
"""

from __future__ import annotations

import datetime as dt
import functools
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
        stored = lex[i] if lex is not None and i < n_lex else None
        parts.append(Part(text=text, terms=_split_terms(stored) if stored is not None else None))
        x = row.part_cosines[i]
        if x is not None:
            any_dense = True
            x = float(x)
        part_dense.append(x)
    day = utc_date(row.occurred_at)
    # The re-ranker fills a missing cosine with the worst present one; a row with none at all
    # (not indexed yet, or indexed before utterance vectors existed) passes None.
    return Candidate(id=row.id, session_id=row.session_id, seq=row.seq, parts=tuple(parts), occurred_at=day,
                     date_text=_date_text(day), dense=None if row.cosine is None else float(row.cosine),
                     part_dense=tuple(part_dense) if any_dense else None)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=65536)
def _split_terms(stored: str) -> tuple[str, ...]:
    """A stored utterance's terms (space-separated); the same turns come back query after query."""
    return tuple(stored.split())


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
    scored = rank(query.features, candidates, stats, config)
    trips = 1
    if plan.second_pass_neighbours and plan.second_pass_top and scored:
        wanted = missing_neighbours(scored, top=plan.second_pass_top)
        if wanted:
            extra = [to_candidate(r) for r in fetch_neighbours(wanted)]
            trips += 1
            if extra:
                candidates += extra
                scored = rank(query.features, candidates, stats, config)
    return TurnSearch(hits=list(scored[:k]), candidates=len(candidates), round_trips=trips)
