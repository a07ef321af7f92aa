"""Text helpers shared by the strategies: rendering turns, sentences, content terms."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable

from context_engine.compression.models import SourceTurn

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])|\n+")
_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]+|\d+(?:[.,:/]\d+)*")
_ENTITY = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+(?:\s+[A-Z][a-z]+)*")
_NUMBER = re.compile(r"\d")

STOPWORDS = frozenset(
    """
a about above after again against all am an and any are aren't as at be because been before being below between
both but by can can't cannot could couldn't did didn't do does doesn't doing don't down during each few for from
further had hadn't has hasn't have haven't having he he'd he'll he's her here here's hers herself him himself his
how how's i i'd i'll i'm i've if in into is isn't it it's its itself let's me more most mustn't my myself no nor not
of off on once only or other ought our ours ourselves out over own same shan't she she'd she'll she's should
shouldn't so some such than that that's the their theirs them themselves then there there's these they they'd
they'll they're they've this those through to too under until up very was wasn't we we'd we'll we're we've were
weren't what what's when when's where where's which while who who's whom why why's with won't would wouldn't you
you'd you'll you're you've your yours yourself yourselves also just yes yeah ok okay oh really well like get got
so thanks thank sure one would will much many lot lots thing things wow cool awesome great amazing hey hi
hello congrats congratulations glad nice totally super sounds cute lovely haha lol omg yep nope guess
""".split()  # noqa: SIM905 - a word list reads better as text
)


def render_turn(turn: SourceTurn) -> str:
    return f"Q: {turn.question}\nA: {turn.answer}" if turn.answer else f"Q: {turn.question}"


def tagged(seq: int, text: str) -> str:
    """A line of a summary that names the turn it came from (provenance for the reader)."""
    return f"[{seq}] {text}"


_SPEAKER = re.compile(r"^([A-Z][\w.'\- ]{0,40}):\s+")


def split_speaker(text: str) -> tuple[str | None, str]:
    """"Caroline: I went to..." → ("Caroline", "I went to..."); no prefix → (None, text)."""
    m = _SPEAKER.match(text)
    return (m.group(1), text[m.end():]) if m else (None, text)


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s and len(s.strip()) > 1]


def terms(text: str) -> list[str]:
    # Numbers count whatever their length: "day 3" and "day 4" are different facts.
    return [w for w in (m.lower() for m in _WORD.findall(text)) if w not in STOPWORDS and (len(w) > 1 or w.isdigit())]


def idf(documents: Iterable[Iterable[str]]) -> dict[str, float]:
    df: Counter[str] = Counter()
    n = 0
    for doc in documents:
        n += 1
        df.update(set(doc))
    return {t: math.log((1 + n) / (1 + c)) + 1.0 for t, c in df.items()}


def specificity(text: str) -> float:
    """Names and numbers carry facts worth keeping (dates, amounts, people, places)."""
    return 0.5 * min(len(_ENTITY.findall(text)), 4) + 0.5 * min(len(_NUMBER.findall(text)), 4) / 2
