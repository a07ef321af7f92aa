"""Pure ranking logic for hybrid retrieval over a user's turns (no storage access here).

A backend fetches candidates in SQL and calls these functions; see docs/retrieval.md.
"""

from context_engine.retrieval.dates import DateSpan, find_dates, first_date, index_date_text
from context_engine.retrieval.dedupe import dedupe
from context_engine.retrieval.fusion import minmax, rrf, weighted_sum, zscore
from context_engine.retrieval.lexical import (
    STOP_WORDS,
    CorpusStats,
    analyze,
    bm25,
    index_text,
    or_tsquery,
    query_terms,
)
from context_engine.retrieval.packing import PackedContext, Snippet, pack
from context_engine.retrieval.query import QueryFeatures, analyze_query, named_speakers
from context_engine.retrieval.rerank import (
    Candidate,
    Part,
    RankConfig,
    Scored,
    missing_neighbours,
    neighbour_smooth,
    rank,
)

__all__ = [
    "STOP_WORDS",
    "Candidate",
    "CorpusStats",
    "DateSpan",
    "PackedContext",
    "Part",
    "QueryFeatures",
    "RankConfig",
    "Scored",
    "Snippet",
    "analyze",
    "analyze_query",
    "bm25",
    "dedupe",
    "find_dates",
    "first_date",
    "index_date_text",
    "index_text",
    "minmax",
    "missing_neighbours",
    "named_speakers",
    "neighbour_smooth",
    "or_tsquery",
    "pack",
    "query_terms",
    "rank",
    "rrf",
    "weighted_sum",
    "zscore",
]
