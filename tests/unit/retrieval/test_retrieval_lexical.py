import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import context_engine
from context_engine.retrieval.lexical import (
    STOP_WORDS,
    CorpusStats,
    analyze,
    bm25,
    index_text,
    or_tsquery,
    query_terms,
)


def test_analyze_stems_drops_stop_words_and_single_letters():
    # Snowball 3 English (PyStemmer and pure-Python snowballstemmer agree); "'m" is dropped.
    assert analyze("I'm organizing the Dairy-free bake sales!") == [
        "organiz",
        "dairi",
        "free",
        "bake",
        "sale",
    ]
    assert analyze("What did you do when it was over?") == []
    # Digits survive: days and years are what dated questions match on.
    assert analyze("on 9 November, 2022") == ["9", "novemb", "2022"]


def test_stop_list_is_postgres_english():
    assert len(STOP_WORDS) == 127
    assert {"when", "what", "how", "don", "should"} <= STOP_WORDS
    assert "may" not in STOP_WORDS  # the month must stay searchable


def test_query_terms_are_distinct_in_order():
    assert query_terms("paint painting painted sunset sunsets") == ["paint", "sunset"]


def test_index_text_and_or_tsquery():
    assert index_text("Running races") == "run race"
    assert or_tsquery(["run", "race", "run"]) == "'run' | 'race'"
    # Anything that is not a plain alphanumeric term is dropped, so nothing can inject operators.
    assert or_tsquery(["a'b", "x|y", "ok"]) == "'ok'"
    assert or_tsquery([]) == ""


def test_corpus_stats_and_idf_order():
    docs = [analyze(t) for t in ("red apple", "green apple", "red car", "blue sky")]
    stats = CorpusStats.from_documents(docs)
    assert stats.n_docs == 4 and stats.avg_len == 2.0
    assert stats.df["appl"] == 2 and stats.df["sky"] == 1
    assert stats.idf("sky") > stats.idf("appl") > 0
    # Unknown terms are treated as df=1 (the rarest).
    assert stats.idf("zebra") == pytest.approx(stats.idf("sky"))


def test_bm25_prefers_rare_terms_and_short_docs():
    docs = [
        analyze(t)
        for t in ("red apple", "green apple", "red car", "blue sky", "sky sky blue long words here")
    ]
    stats = CorpusStats.from_documents(docs)
    q = query_terms("blue sky")
    assert bm25(docs[3], q, stats) > bm25(docs[4], q, stats) > 0
    assert bm25(docs[0], q, stats) == 0.0
    assert bm25([], q, stats) == 0.0
    # Hand-computed single-term case: idf * (k1+1) / (1 + k1*(1-b+b*dl/avgdl)).
    dl, avg = len(docs[3]), stats.avg_len
    expected = stats.idf("blue") * 2.2 / (1 + 1.2 * (0.25 + 0.75 * dl / avg))
    assert bm25(docs[3], ["blue"], stats) == pytest.approx(expected)
    assert math.isfinite(bm25(docs[3], q, CorpusStats(0, 0.0, {})))


_SCORE_IN_A_FRESH_PROCESS = """
from context_engine.retrieval.lexical import BM25Scorer, CorpusStats, term_counts
terms = [f"term{i}" for i in range(12)]
stats = CorpusStats(n_docs=1000, avg_len=9.0, df={t: 1 + 37 * i for i, t in enumerate(terms)})
scorer = BM25Scorer(terms, stats)
doc = terms + terms[:5]
print(repr(scorer.score(doc)), repr(scorer.score_counts([term_counts(doc)], len(doc))))
"""


def test_bm25_score_is_the_same_float_in_every_process():
    # Summed in set order, the last bits followed PYTHONHASHSEED (three different floats over
    # these six seeds), so ties between candidates broke differently from process to process.
    path = str(Path(context_engine.__file__).parent.parent)
    outputs = {
        subprocess.run([sys.executable, "-c", _SCORE_IN_A_FRESH_PROCESS], check=True, capture_output=True,
                       text=True, env={**os.environ, "PYTHONHASHSEED": str(seed), "PYTHONPATH": path}).stdout
        for seed in range(6)
    }
    assert len(outputs) == 1
    a, b = outputs.pop().split()
    assert a == b
