"""Compression strategies: turn a range of a session's turns (plus the window's prior
summary, when folding incrementally) into a summary of at most ``target_tokens`` tokens.

- summarize: a summarizer (Bedrock Converse, or the deterministic extractive one)
- truncate: keep the head and the tail of the range verbatim, mark what was dropped
- importance: score every turn and keep the best ones that fit, in conversation order

All three are pure: the workflow loads the turns, calls ``compress`` and stores the result.
Raw turns are never touched; only the window's summary changes.
"""

from __future__ import annotations

from collections.abc import Callable

from context_engine.compression.models import CompressionRequest, CompressionResult, SourceTurn
from context_engine.compression.summarizers import ExtractiveSummarizer, Summarizer
from context_engine.compression.text import idf, render_turn, specificity, tagged, terms
from context_engine.text.tokens import count_tokens, count_tokens_batch, truncate_to_tokens

# Words that mark a turn as worth remembering: commitments, preferences, identities, deadlines.
# (Matched against the turn's terms: a set lookup, much cheaper than a case-blind regex.)
CUE_WORDS = frozenset({
    "remember", "important", "always", "never", "prefer", "preference", "favorite", "favourite", "allergic",
    "deadline", "decided", "decision", "agreed", "promise", "plan", "planned", "planning", "birthday", "address",
    "password", "budget", "due", "name"})
_PRIOR_SHARE = 0.5  # a prior summary keeps at most half of the target when newer turns are folded in


def compress(req: CompressionRequest, summarizer: Summarizer | None = None) -> CompressionResult:
    strategy: Callable[[CompressionRequest, Summarizer], CompressionResult] = {
        "summarize": _summarize, "truncate": _truncate, "importance": _importance}[req.strategy]
    return strategy(req, summarizer or ExtractiveSummarizer())


def _input_tokens(req: CompressionRequest) -> int:
    return sum(t.token_count for t in req.turns) + (count_tokens(req.prior_summary) if req.prior_summary else 0)


def _covered(req: CompressionRequest) -> tuple[int, list[int]]:
    seqs = sorted({*req.prior_seqs, *(t.seq for t in req.turns)})
    return (seqs[-1] if seqs else 0), seqs


def _result(req: CompressionRequest, summary: str, kept: list[int], **extra: object) -> CompressionResult:
    covers, seqs = _covered(req)
    return CompressionResult(strategy=req.strategy, summary=summary, summary_tokens=count_tokens(summary),
                             covers_seq=covers, seqs=seqs, kept_seqs=kept, input_tokens=_input_tokens(req),
                             **extra)  # type: ignore[arg-type]


def _prior_block(req: CompressionRequest) -> str:
    if not req.prior_summary:
        return ""
    return truncate_to_tokens(req.prior_summary, int(req.target_tokens * _PRIOR_SHARE), suffix=" …")


# --- summarize ----------------------------------------------------------------------
def _summarize(req: CompressionRequest, summarizer: Summarizer) -> CompressionResult:
    summary = summarizer.summarize(req.turns, req.prior_summary, req.target_tokens)
    return _result(req, summary.text, summary.kept_seqs, summarizer=summary.summarizer, fallback=summary.fallback,
                   fallback_reason=summary.fallback_reason, stats=summary.stats)


# --- truncate -----------------------------------------------------------------------
def _truncate(req: CompressionRequest, _: Summarizer) -> CompressionResult:
    turns = req.turns
    prior = _prior_block(req)
    # The prior summary already stands for the oldest turns: it is the head.
    head = [] if prior else turns[: req.keep_head]
    tail_start = max(len(head), len(turns) - req.keep_tail)
    tail = turns[tail_start:]
    dropped = turns[len(head):tail_start]
    marker = (f"[… {len(dropped)} turns omitted (seq {dropped[0].seq}–{dropped[-1].seq}) …]" if dropped else "")
    fixed = [p for p in (prior, marker) if p]
    room = req.target_tokens - sum(count_tokens(p) + 2 for p in fixed)
    kept_turns = head + tail
    texts = [tagged(t.seq, render_turn(t)) for t in kept_turns]
    if kept_turns and room > 0:
        # Over budget: give every kept turn an equal share rather than losing the tail entirely.
        sizes = count_tokens_batch(texts)
        if sum(sizes) + 2 * len(texts) > room:
            share = max(8, room // len(texts) - 2)
            texts = [truncate_to_tokens(x, share, suffix=" …") for x in texts]
    elif room <= 0:
        texts, kept_turns = [], []
    parts = ([prior] if prior else []) + texts[: len(head)] + ([marker] if marker else []) + texts[len(head):]
    summary = _fit("\n\n".join(p for p in parts if p), req.target_tokens)
    return _result(req, summary, [t.seq for t in kept_turns],
                   stats={"head": len(head), "tail": len(tail), "dropped": len(dropped)})


# --- importance ---------------------------------------------------------------------
def importance_scores(turns: list[SourceTurn]) -> list[float]:
    """A turn's worth: rare, specific vocabulary (IDF), names and numbers, explicit cues
    (preferences, commitments), an explicit ``metadata.importance``, and a little recency."""
    docs = [terms(f"{t.question} {t.answer}") for t in turns]
    weights = idf(docs)
    n = len(turns)
    scores = []
    for i, (t, doc) in enumerate(zip(turns, docs, strict=True)):
        distinct = set(doc)
        info = sum(weights[w] for w in distinct) / max(len(distinct), 4) ** 0.5 if distinct else 0.0
        text = f"{t.question} {t.answer}"
        score = info + 0.4 * specificity(text) + 1.5 * min(len(CUE_WORDS & distinct), 2)
        explicit = t.metadata.get("importance") if isinstance(t.metadata, dict) else None
        if isinstance(explicit, int | float):
            score += 4.0 * float(explicit)
        score += 0.5 * (i + 1) / max(n, 1)  # recency: a tie-breaker, not a driver
        scores.append(score)
    return scores


def _importance(req: CompressionRequest, _: Summarizer) -> CompressionResult:
    prior = _prior_block(req)
    room = req.target_tokens - (count_tokens(prior) + 2 if prior else 0)
    turns = req.turns
    texts = [tagged(t.seq, render_turn(t)) for t in turns]
    scores = importance_scores(turns) if turns else []
    chosen: list[int] = []
    used = 0
    for i in sorted(range(len(turns)), key=lambda i: (-scores[i], turns[i].seq)):
        cost = count_tokens(texts[i]) + 2  # counted lazily: only the turns that get considered
        if used + cost <= room:
            chosen.append(i)
            used += cost
        if room - used < 16:
            break
    chosen.sort()
    parts = ([prior] if prior else []) + [texts[i] for i in chosen]
    summary = _fit("\n\n".join(parts), req.target_tokens)
    return _result(req, summary, [turns[i].seq for i in chosen],
                   stats={"candidates": len(turns), "kept": len(chosen),
                          "min_kept_score": round(min((scores[i] for i in chosen), default=0.0), 4)})


def _fit(text: str, target_tokens: int) -> str:
    return text if count_tokens(text) <= target_tokens else truncate_to_tokens(text, target_tokens)
