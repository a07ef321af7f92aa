"""Summarizers for the ``summarize`` strategy.

- ``ExtractiveSummarizer`` (the embedded default): deterministic; picks the most central,
  most specific sentences (TF-IDF centrality + names/numbers), skips near-duplicates, and
  keeps them in conversation order, each tagged with its turn's seq.
- ``BedrockSummarizer``: Amazon Bedrock Converse. Throttling and transient errors are
  retried with exponential backoff and full jitter; when Bedrock still fails (or refuses)
  the extractive summarizer answers instead and the fallback is recorded in the result.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from context_engine.compression.models import SourceTurn
from context_engine.compression.text import (
    idf,
    render_turn,
    sentences,
    specificity,
    split_speaker,
    tagged,
    terms,
)
from context_engine.text.tokens import count_tokens, truncate_to_tokens

log = logging.getLogger(__name__)


@dataclass
class Summary:
    text: str
    summarizer: str
    kept_seqs: list[int]
    fallback: bool = False
    fallback_reason: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)


class Summarizer(Protocol):
    name: str

    def summarize(self, turns: Sequence[SourceTurn], prior_summary: str | None, target_tokens: int) -> Summary: ...


# --- extractive ---------------------------------------------------------------------
PRIOR_SEQ = 0  # sentences of the prior summary are tagged with seq 0 while ranking
_REDUNDANT = 0.6  # Jaccard overlap above which a sentence repeats one already chosen
_NOVEL = 0.3  # first pass: at most this much overlap with any chosen sentence
_MIN_TERMS = 4  # fewer content terms than this: small talk


@dataclass
class _Candidate:
    seq: int
    order: int
    text: str
    terms: set[str]
    score: float = 0.0
    tokens: int = 0


def _max_overlap(c: _Candidate, chosen: list[_Candidate], postings: dict[str, list[int]]) -> float:
    """The largest Jaccard overlap between ``c`` and a chosen sentence."""
    shared: Counter[int] = Counter()
    for t in c.terms:
        shared.update(postings.get(t, ()))
    return max((n / (len(c.terms) + len(chosen[i].terms) - n) for i, n in shared.items()), default=0.0)


class ExtractiveSummarizer:
    name = "extractive"

    def summarize(self, turns: Sequence[SourceTurn], prior_summary: str | None, target_tokens: int) -> Summary:
        candidates = self._candidates(turns, prior_summary)
        if not candidates:
            return Summary("", self.name, [])
        self._score(candidates)
        chosen: list[_Candidate] = []
        used = 0
        ranked = sorted(candidates, key=lambda c: (-c.score, c.order))
        # Two passes: first only sentences that add something new (little overlap with what is
        # chosen), then, if room is left, the close-but-not-duplicate ones. Tokens are counted
        # only for sentences that get this far, which keeps 500 turns well under 200 ms.
        postings: dict[str, list[int]] = {}  # term → indexes into chosen: overlap without all pairs
        for overlap in (_NOVEL, _REDUNDANT):
            for c in ranked:
                if c.tokens < 0 or _max_overlap(c, chosen, postings) > overlap:
                    continue
                c.tokens = c.tokens or count_tokens(self._line(c)) + 1  # + the newline joining lines
                if used + c.tokens > target_tokens:
                    continue
                for t in c.terms:
                    postings.setdefault(t, []).append(len(chosen))
                chosen.append(c)
                used += c.tokens
                c.tokens = -c.tokens  # marks it chosen for the second pass
                if target_tokens - used < 8:
                    break
            if target_tokens - used < 8:
                break
        chosen.sort(key=lambda c: c.order)
        text = "\n".join(self._line(c) for c in chosen)
        # BPE merges across the joins can differ from the per-line counts: re-check.
        if count_tokens(text) > target_tokens:
            text = truncate_to_tokens(text, target_tokens)
        kept = sorted({c.seq for c in chosen if c.seq != PRIOR_SEQ})
        return Summary(text, self.name, kept, stats={"candidates": len(candidates), "chosen": len(chosen)})

    @staticmethod
    def _line(c: _Candidate) -> str:
        return c.text if c.seq == PRIOR_SEQ else tagged(c.seq, c.text)

    @staticmethod
    def _candidates(turns: Sequence[SourceTurn], prior_summary: str | None) -> list[_Candidate]:
        out: list[_Candidate] = []
        if prior_summary:
            for line in prior_summary.splitlines():
                if line.strip():
                    out.append(_Candidate(PRIOR_SEQ, len(out), line.strip(), set(terms(line))))
        for t in turns:
            for part in (t.question, t.answer):
                speaker, body = split_speaker(part)
                for s in sentences(body):
                    # Speaker names are in nearly every line: they attribute, they do not inform.
                    out.append(_Candidate(t.seq, len(out), f"{speaker}: {s}" if speaker else s, set(terms(s))))
        return [c for c in out if c.terms]

    @staticmethod
    def _score(candidates: list[_Candidate]) -> None:
        """Centroid scoring: a term weighs df·idf over the window, high for the topics that
        recur (a trip, a class, a diagnosis), low for both one-off words and words in every
        line; a sentence scores the weight of its distinct terms, mildly length-normalised,
        plus names and numbers. Chit-chat ("Wow, that's great!") has too few terms to compete."""
        weights = idf(c.terms for c in candidates)
        df: Counter[str] = Counter()
        for c in candidates:
            df.update(c.terms)
        weight = {t: df[t] * weights[t] for t in df}
        top = max(weight.values(), default=1.0) or 1.0
        for c in candidates:
            central = sum(weight[t] for t in c.terms) / top
            c.score = central / max(len(c.terms), 6) ** 0.3 + 0.3 * specificity(c.text)
            if len(c.terms) < _MIN_TERMS:
                c.score *= 0.2
            if c.seq == PRIOR_SEQ:
                c.score *= 1.5  # the prior summary already condensed older turns: keep continuity


# --- Bedrock Converse -----------------------------------------------------------------
RETRYABLE = frozenset({"ThrottlingException", "ServiceUnavailableException", "ModelNotReadyException",
                       "InternalServerException", "ModelTimeoutException", "TooManyRequestsException"})

SYSTEM_PROMPT = (
    "You maintain the running summary of a conversation between a user and an AI agent. "
    "Write a faithful, dense summary: keep names, dates, numbers, decisions, preferences and open questions; "
    "drop small talk. Never invent facts. Answer with the summary only."
)


class BedrockSummarizer:
    name = "bedrock"

    def __init__(self, model_id: str, *, client: Any = None, max_attempts: int = 4, base_delay_s: float = 0.5,
                 max_delay_s: float = 8.0, max_input_tokens: int = 100_000,
                 sleep: Callable[[float], None] = time.sleep, fallback: Summarizer | None = None) -> None:
        if client is None:
            import boto3
            from botocore.config import Config

            # Our backoff decides; botocore's own retries would hide throttling from it.
            client = boto3.client("bedrock-runtime", config=Config(retries={"total_max_attempts": 1}))
        self.client, self.model_id = client, model_id
        self.max_attempts, self.base_delay_s, self.max_delay_s = max_attempts, base_delay_s, max_delay_s
        self.max_input_tokens = max_input_tokens
        self.sleep = sleep
        self.fallback = fallback or ExtractiveSummarizer()

    def summarize(self, turns: Sequence[SourceTurn], prior_summary: str | None, target_tokens: int) -> Summary:
        transcript = "\n\n".join(tagged(t.seq, render_turn(t)) for t in turns)
        if count_tokens(transcript) > self.max_input_tokens:
            # Too long for one call: condense extractively first, then let the model rewrite.
            transcript = self.fallback.summarize(turns, None, self.max_input_tokens).text
        prompt = ((f"Summary so far:\n{prior_summary}\n\n" if prior_summary else "")
                  + f"New conversation turns ([seq] Q/A):\n{transcript}\n\n"
                  + f"Write the updated summary in at most {target_tokens} tokens.")
        try:
            text, usage, attempts = self._converse(prompt, target_tokens)
        except _GiveUp as err:
            log.warning("bedrock summarizer failed; extractive fallback", extra={"reason": err.reason})
            summary = self.fallback.summarize(turns, prior_summary, target_tokens)
            summary.fallback, summary.fallback_reason = True, err.reason
            summary.stats["bedrock_attempts"] = err.attempts
            return summary
        text = truncate_to_tokens(text.strip(), target_tokens)
        return Summary(text, self.name, [t.seq for t in turns],
                       stats={"model_id": self.model_id, "bedrock_attempts": attempts, "usage": usage})

    def _converse(self, prompt: str, target_tokens: int) -> tuple[str, dict[str, Any], int]:
        from botocore.exceptions import BotoCoreError, ClientError

        for attempt in range(1, self.max_attempts + 1):
            try:
                resp = self.client.converse(
                    modelId=self.model_id,
                    system=[{"text": SYSTEM_PROMPT}],
                    messages=[{"role": "user", "content": [{"text": prompt}]}],
                    inferenceConfig={"maxTokens": max(64, int(target_tokens * 1.2)), "temperature": 0.0},
                )
            except ClientError as err:
                code = err.response.get("Error", {}).get("Code", "ClientError")
                if code not in RETRYABLE:
                    raise _GiveUp(f"{code}: {err.response.get('Error', {}).get('Message', '')}".strip(),
                                  attempt) from err
                if attempt == self.max_attempts:
                    raise _GiveUp(f"{code} after {attempt} attempts", attempt) from err
                self.sleep(self._delay(attempt))
                continue
            except BotoCoreError as err:  # connection errors, timeouts
                if attempt == self.max_attempts:
                    raise _GiveUp(f"{type(err).__name__} after {attempt} attempts", attempt) from err
                self.sleep(self._delay(attempt))
                continue
            blocks = resp.get("output", {}).get("message", {}).get("content", [])
            text = "".join(b.get("text", "") for b in blocks)
            if not text.strip():
                raise _GiveUp(f"empty response (stopReason={resp.get('stopReason')})", attempt)
            return text, resp.get("usage", {}), attempt
        raise _GiveUp("no attempts", 0)  # max_attempts < 1

    def _delay(self, attempt: int) -> float:
        """Exponential backoff with full jitter (AWS Architecture Blog)."""
        return random.uniform(0, min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1)))


class _GiveUp(Exception):
    def __init__(self, reason: str, attempts: int) -> None:
        super().__init__(reason)
        self.reason, self.attempts = reason, attempts


def build_summarizer(kind: str, model_id: str, *, client: Any = None) -> Summarizer:
    if kind == "bedrock":
        return BedrockSummarizer(model_id, client=client)
    return ExtractiveSummarizer()
