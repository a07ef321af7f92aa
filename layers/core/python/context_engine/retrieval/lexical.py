"""Lexical analysis and BM25 scoring that a PostgreSQL backend can reproduce exactly.

One analyzer is the source of truth for both sides: the indexer stores ``analyze(text)``
joined by spaces and indexes it with ``to_tsvector('simple', …)`` (no second stemming), and
the query side sends ``or_tsquery(terms)`` to ``to_tsquery('simple', …)``. PostgreSQL's
``english`` configuration would be close (same Snowball stemmer family and the same stop
list, copied below from its ``english.stop``) but not identical: it keeps hyphenated
compounds as extra lexemes and its older Snowball stems some words differently
("organization" → "organ"), so Python-side BM25 and SQL-side document frequencies would
disagree on those words.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import snowballstemmer

# PostgreSQL 16 share/tsearch_data/english.stop (the Snowball English stop list), verbatim.
_ENGLISH_STOP = (
    "i me my myself we our ours ourselves you your yours yourself yourselves he him his himself "
    "she her hers herself it its itself they them their theirs themselves what which who whom "
    "this that these those am is are was were be been being have has had having do does did "
    "doing a an the and but if or because as until while of at by for with about against "
    "between into through during before after above below to from up down in out on off over "
    "under again further then once here there when where why how all any both each few more "
    "most other some such no nor not only own same so than too very s t can will just don "
    "should now"
)
STOP_WORDS = frozenset(_ENGLISH_STOP.split())

_TOKEN = re.compile(r"[^\W_]+")
_stemmer = snowballstemmer.stemmer("english")


@functools.lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """Snowball English stem (cached: a user's vocabulary is small and repeats)."""
    return str(_stemmer.stemWord(word))


def analyze(text: str) -> list[str]:
    """Lowercase word tokens, minus stop words and single letters, Snowball-stemmed, in order.

    Digits are kept (days and years in dates matter); single letters are mostly contraction
    debris ("I'm" → "m").
    """
    out: list[str] = []
    for tok in _TOKEN.findall(text.lower()):
        if tok in STOP_WORDS or (len(tok) == 1 and not tok.isdigit()):
            continue
        out.append(stem(tok))
    return out


def query_terms(text: str) -> list[str]:
    """Distinct analyzed terms of a query, in first-seen order (each weighs once)."""
    return list(dict.fromkeys(analyze(text)))


def index_text(text: str) -> str:
    """What the indexer stores for ``to_tsvector('simple', …)``: analyzed terms joined by spaces."""
    return " ".join(analyze(text))


def or_tsquery(terms: Iterable[str]) -> str:
    """``to_tsquery('simple', …)`` input matching any term (OR semantics).

    Terms come from ``analyze`` and are alphanumeric, but they are quoted anyway so no term can
    inject tsquery operators.
    """
    quoted = [f"'{t}'" for t in dict.fromkeys(terms) if t and _TOKEN.fullmatch(t)]
    return " | ".join(quoted)


@dataclass(frozen=True)
class CorpusStats:
    """Per-user document statistics for BM25: documents, their mean length, term frequencies.

    ``df`` needs only the query's terms. A term missing from ``df`` counts as df=1 (it cannot
    be 0 in a document that contains it).
    """

    n_docs: int
    avg_len: float
    df: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_documents(cls, docs: Sequence[Sequence[str]], terms: Iterable[str] | None = None) -> CorpusStats:
        """Exact statistics from analyzed documents (tests, benchmarks, small in-memory stores)."""
        wanted = set(terms) if terms is not None else None
        df: Counter[str] = Counter()
        total = 0
        for doc in docs:
            total += len(doc)
            uniq = set(doc) if wanted is None else set(doc) & wanted
            df.update(uniq)
        n = len(docs)
        return cls(n_docs=n, avg_len=(total / n) if n else 0.0, df=dict(df))

    def idf(self, term: str) -> float:
        """Lucene's BM25 idf: always positive, so a very common term still counts a little."""
        n = max(self.df.get(term, 1), 1)
        big_n = max(self.n_docs, n)
        return math.log(1.0 + (big_n - n + 0.5) / (n + 0.5))


class BM25Scorer:
    """BM25 for one query: idf looked up once per term, cheap per document (hot path).

    Most candidate parts share no or one term with the query, so a set test skips the rest.
    """

    def __init__(self, terms: Sequence[str], stats: CorpusStats, *, k1: float = 1.2, b: float = 0.75) -> None:
        self.terms = tuple(dict.fromkeys(terms))
        self._set = frozenset(self.terms)
        self._idf = {t: stats.idf(t) for t in self.terms}
        self._avg = stats.avg_len
        self._k1 = k1
        self._b = b

    def _in_query_order(self, shared: frozenset[str]) -> Iterable[str]:
        # A set's order follows string hashes, which differ per process (PYTHONHASHSEED):
        # summing in it would make the last bits of a score, and so ties, vary by process.
        return shared if len(shared) < 2 else [t for t in self.terms if t in shared]

    def score(self, doc_terms: Sequence[str], *, avg_len: float | None = None) -> float:
        if not doc_terms or self._set.isdisjoint(doc_terms):
            return 0.0
        k1, b = self._k1, self._b
        mean = avg_len if avg_len is not None else self._avg
        norm = k1 * (1.0 - b + b * len(doc_terms) / mean) if mean > 0 else k1
        shared = self._set.intersection(doc_terms)
        score = 0.0
        for term in self._in_query_order(shared):
            f = doc_terms.count(term) if isinstance(doc_terms, list | tuple) else Counter(doc_terms)[term]
            score += self._idf[term] * f * (k1 + 1.0) / (f + norm)
        return score

    def score_counts(self, pieces: Sequence[Mapping[str, int]], length: int, *, avg_len: float | None = None) -> float:
        """``score`` of a document given as its pieces' term counts, in document order (each
        from ``term_counts``), and its length: no scan of the terms (the re-ranker scores
        hundreds of parts per query). Terms are summed in query order, as in ``score``: the
        same float."""
        terms = self._set.intersection(pieces[0] if len(pieces) == 1 else itertools.chain.from_iterable(pieces))
        if not terms:
            return 0.0
        k1, b = self._k1, self._b
        mean = avg_len if avg_len is not None else self._avg
        norm = k1 * (1.0 - b + b * length / mean) if mean > 0 else k1
        score = 0.0
        for term in self._in_query_order(terms):
            f = 0
            for counts in pieces:
                f += counts.get(term, 0)
            score += self._idf[term] * f * (k1 + 1.0) / (f + norm)
        return score


def term_counts(terms: Iterable[str]) -> dict[str, int]:
    """How often each term occurs, in first-seen order (``BM25Scorer.score_counts``)."""
    counts: dict[str, int] = {}
    for t in terms:
        counts[t] = counts.get(t, 0) + 1
    return counts


def bm25(
    doc_terms: Sequence[str],
    terms: Sequence[str],
    stats: CorpusStats,
    *,
    k1: float = 1.2,
    b: float = 0.75,
    avg_len: float | None = None,
) -> float:
    """BM25 of one analyzed document for the distinct query ``terms``.

    ``avg_len`` overrides the corpus mean length, e.g. to score half-turns (one utterance)
    against turn-level statistics. For many documents and one query use ``BM25Scorer``.
    """
    return BM25Scorer(terms, stats, k1=k1, b=b).score(doc_terms, avg_len=avg_len)
