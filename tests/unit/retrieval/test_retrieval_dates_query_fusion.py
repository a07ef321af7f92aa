import datetime as dt

import numpy as np
import pytest

from context_engine.retrieval.dates import DateSpan, find_dates, first_date, index_date_text
from context_engine.retrieval.fusion import minmax, rrf, weighted_sum, zscore
from context_engine.retrieval.query import analyze_query, named_speakers


def test_find_dates_formats():
    spans = find_dates("on 9 November, 2022, May 3rd, 2023, in July 2023, 2021-02-28 and Sept 2020")
    assert spans == [
        DateSpan(dt.date(2022, 11, 9), dt.date(2022, 11, 9), "day"),
        DateSpan(dt.date(2023, 5, 3), dt.date(2023, 5, 3), "day"),
        DateSpan(dt.date(2023, 7, 1), dt.date(2023, 7, 31), "month"),
        DateSpan(dt.date(2021, 2, 28), dt.date(2021, 2, 28), "day"),
        DateSpan(dt.date(2020, 9, 1), dt.date(2020, 9, 30), "month"),
    ]


def test_find_dates_ignores_invalid_and_plain_numbers():
    assert find_dates("31 February, 2023 and 2023 and 12 apples") == [
        DateSpan(dt.date(2023, 2, 1), dt.date(2023, 2, 28), "month")
    ]
    assert find_dates("nothing here") == []


def test_first_date_and_index_text():
    assert first_date("1:56 pm on 8 May, 2023") == dt.date(2023, 5, 8)
    assert first_date("no date") is None
    assert index_date_text(dt.datetime(2023, 5, 8, 13, 56)) == "8 May 2023"


def test_datespan_contains_with_margins():
    span = DateSpan(dt.date(2023, 5, 3), dt.date(2023, 5, 3), "day")
    assert span.contains(dt.date(2023, 5, 10), after=7)
    assert not span.contains(dt.date(2023, 5, 11), after=7)
    assert span.contains(dt.date(2023, 5, 2), before=1)


def test_analyze_query():
    q = analyze_query("What did Nate make on 9 November, 2022?")
    assert q.terms == ("nate", "make", "9", "novemb", "2022")
    assert q.dates[0].start == dt.date(2022, 11, 9)
    assert q.tsquery == "'nate' | 'make' | '9' | 'novemb' | '2022'"


def test_named_speakers_whole_word_case_insensitive():
    assert named_speakers("What does JON like?", ["Jon", "Gina"]) == {"Jon"}
    assert named_speakers("What does Jonathan like?", ["Jon"]) == set()
    assert named_speakers("Jon and Gina", ["Jon", "Gina", ""]) == {"Jon", "Gina"}


def test_zscore_minmax_degenerate():
    assert np.allclose(zscore([1, 2, 3]), [-1.2247, 0, 1.2247], atol=1e-4)
    assert np.all(zscore([5, 5, 5]) == 0)
    assert zscore([]).size == 0
    assert np.allclose(minmax([2, 4, 6]), [0, 0.5, 1])
    assert np.all(minmax([1, 1]) == 0)


def test_rrf_and_weights():
    fused = rrf([["a", "b", "c"], ["b", "a"]], k=60)
    assert fused["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert fused["b"] == pytest.approx(fused["a"])
    assert fused["c"] < fused["a"]
    weighted = rrf([["a"], ["b"]], weights=[2.0, 1.0])
    assert weighted["a"] == pytest.approx(2 * weighted["b"])
    with pytest.raises(ValueError):
        rrf([["a"]], weights=[1.0, 2.0])


def test_weighted_sum():
    out = weighted_sum({"x": np.array([1.0, 2.0]), "y": np.array([10.0, 0.0])}, {"x": 2.0, "y": 0.5, "z": 9})
    assert np.allclose(out, [7.0, 4.0])
    assert np.allclose(weighted_sum({"x": np.array([1.0])}, {}), [0.0])
