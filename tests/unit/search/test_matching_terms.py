from __future__ import annotations

from context_engine.retrieval import CorpusStats
from context_engine.search.postgres import matching_terms


def test_selective_terms_rarest_first_within_the_row_budget() -> None:
    stats = CorpusStats(n_docs=1000, avg_len=20, df={"anna": 600, "kyoto": 5, "temple": 40, "trip": 90, "go": 300})
    assert matching_terms(["anna", "kyoto", "temple", "trip", "go"], stats, 0.10, 1000) == ["kyoto", "temple", "trip"]
    assert matching_terms(["anna", "kyoto", "temple", "trip"], stats, 0.10, 50) == ["kyoto", "temple"]


def test_no_selective_term_falls_back_to_the_rarest() -> None:
    stats = CorpusStats(n_docs=100, avg_len=20, df={"anna": 60, "ben": 55, "said": 70})
    assert matching_terms(["said", "anna", "ben"], stats, 0.10, 600) == ["ben", "anna"]
    assert matching_terms(["said", "anna", "ben"], stats, 0.10, 80) == ["ben"]  # both would exceed the budget
    assert matching_terms(["unknown"], stats, 0.10, 600) == []
