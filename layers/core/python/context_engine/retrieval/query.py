"""Query processing: what a retrieval query asks for, computed once per query."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from context_engine.retrieval.dates import DateSpan, find_dates
from context_engine.retrieval.lexical import or_tsquery, query_terms


@dataclass(frozen=True)
class QueryFeatures:
    text: str
    terms: tuple[str, ...]  # distinct analyzed terms (see lexical.analyze)
    dates: tuple[DateSpan, ...]  # explicit dates the query names

    @property
    def tsquery(self) -> str:
        """Input for ``to_tsquery('simple', …)``: any term matches."""
        return or_tsquery(self.terms)


def analyze_query(text: str) -> QueryFeatures:
    return QueryFeatures(text=text, terms=tuple(query_terms(text)), dates=tuple(find_dates(text)))


def named_speakers(query: str, speakers: Iterable[str]) -> set[str]:
    """The speakers whose name appears as a whole word in the query (case-insensitive)."""
    low = query.lower()
    out: set[str] = set()
    for name in speakers:
        if name and re.search(rf"(?<!\w){re.escape(name.lower())}(?!\w)", low):
            out.add(name)
    return out
