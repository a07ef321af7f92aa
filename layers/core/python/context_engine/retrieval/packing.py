"""Budget-aware packing of ranked turns into a context section that never exceeds its budget.

Whole turns cost about 70 tokens each; the utterance that matched costs about half that, so
packing utterance snippets fits roughly twice as many distinct hits into the same budget.
Snippets are rendered grouped by session in chronological order under one date header per
session, so the date (which temporal questions need) is paid once per session, not per line.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter

from context_engine.retrieval.dates import index_date_text
from context_engine.retrieval.rerank import Candidate, Scored
from context_engine.text.tokens import EncodingLike, count_tokens, truncate_to_tokens

# Consecutive candidates that did not fit before the packer stops looking (bounds the work on
# long candidate lists; by then the remaining room is smaller than a typical line).
_MAX_SKIPS = 40


@dataclass(frozen=True)
class Snippet:
    candidate_id: str
    session_id: str
    seq: int
    part: int | None  # index of the utterance, or None for the whole turn
    text: str
    score: float
    occurred_at: dt.date | dt.datetime | None


@dataclass(frozen=True)
class PackedContext:
    text: str
    snippets: tuple[Snippet, ...]  # in rendered order
    token_count: int


@functools.lru_cache(maxsize=8192)
def _capped(text: str, max_tokens: int) -> str:
    """An utterance cut to ``max_tokens`` (default encoding), remembered: a user's long
    utterances come back in query after query, and cutting one costs an encode and a decode."""
    return truncate_to_tokens(text, max_tokens, suffix="…")


def default_header(candidate: Candidate) -> str:
    if candidate.occurred_at is not None:
        return f"[{index_date_text(candidate.occurred_at)}]"
    if candidate.date_text:
        return f"[{candidate.date_text}]"
    return f"[session {candidate.session_id}]"


def _render(chosen: list[tuple[Snippet, Candidate]], header: Callable[[Candidate], str] | None) -> str:
    def sort_key(item: tuple[Snippet, Candidate]) -> tuple[str, str, int, int]:
        snip, cand = item
        when = cand.occurred_at.isoformat() if cand.occurred_at is not None else ""
        return (when, snip.session_id, snip.seq, -1 if snip.part is None else snip.part)

    # Sessions in order of their earliest chosen turn; lines in (seq, part) order within each.
    ordered = sorted(chosen, key=sort_key)
    first_seen: dict[str, int] = {}
    for i, (snip, _) in enumerate(ordered):
        first_seen.setdefault(snip.session_id, i)
    ordered.sort(
        key=lambda it: (first_seen[it[0].session_id], it[0].seq, -1 if it[0].part is None else it[0].part)
    )
    lines: list[str] = []
    current: str | None = None
    for snip, cand in ordered:
        if header is not None and snip.session_id != current:
            if lines:
                lines.append("")
            lines.append(header(cand))
            current = snip.session_id
        lines.append(snip.text)
    return "\n".join(lines)


def pack(
    scored: Sequence[Scored],
    budget: int,
    *,
    mode: str = "parts",
    part_weight: float = 1.0,
    other_part_penalty: float = 1.0,
    max_part_tokens: int | None = 64,
    header: Callable[[Candidate], str] | None = default_header,
    encoding: EncodingLike = None,
) -> PackedContext:
    """Fill ``budget`` tokens with the best snippets; the result's exact count is ≤ budget.

    ``mode="parts"`` packs single utterances, prioritised by turn score + ``part_weight`` × the
    utterance's own score, minus ``other_part_penalty`` for every utterance but the turn's best
    one (the second half of a strong turn is usually less useful than the best half of the
    next turn); ``mode="turns"`` packs whole turns in ranked order. ``max_part_tokens`` caps each
    utterance (64 leaves ~92% of conversational utterances whole and trims the long tail).
    """
    if budget <= 0 or not scored:
        return PackedContext("", (), 0)
    if mode not in ("parts", "turns"):
        raise ValueError("mode must be 'parts' or 'turns'")
    # (priority, scored index, part index or -1 for the whole turn); snippets are built only
    # for what is chosen (a few dozen of several hundred items)
    items: list[tuple[float, int, int]] = []
    if mode == "turns":
        items = [(s.score, si, -1) for si, s in enumerate(scored)]
    else:
        for si, s in enumerate(scored):
            score, ps, best = s.score, s.part_scores, s.best_part
            n_ps = len(ps)
            for pi in range(len(s.candidate.parts)):
                prio = score + part_weight * (ps[pi] if pi < n_ps else 0.0)
                if pi != best:
                    prio -= other_part_penalty
                items.append((prio, si, pi))
    items.sort(key=itemgetter(0), reverse=True)  # stable: equal priorities keep the ranked order

    chosen: list[tuple[Snippet, Candidate]] = []
    sessions: set[str] = set()
    header_cost: dict[tuple[object, ...], int] = {}
    used = 0
    skipped = 0
    for prio, si, pi in items:
        cand = scored[si].candidate
        text = "\n".join(p.text for p in cand.parts) if pi < 0 else cand.parts[pi].text
        tokens = count_tokens(text, encoding)
        if max_part_tokens is not None and mode == "parts" and tokens > max_part_tokens:
            text = (_capped(text, max_part_tokens) if encoding is None
                    else truncate_to_tokens(text, max_part_tokens, encoding, suffix="…"))
            if not text:
                continue
            tokens = count_tokens(text, encoding)
        # A line costs its tokens plus the newline; a new session adds its header and a blank line.
        cost = tokens + 1
        if header is not None and cand.session_id not in sessions:
            if header is default_header:  # depends on the session and the date only: count once
                key = (cand.session_id, cand.occurred_at, cand.date_text)
                hc = header_cost.get(key)
                if hc is None:
                    hc = header_cost[key] = count_tokens(header(cand), encoding)
            else:
                hc = count_tokens(header(cand), encoding)
            cost += hc + 2
        if used + cost > budget:
            # Once the budget is nearly full, a long run of misfits means nothing useful still fits.
            skipped += 1
            if skipped >= _MAX_SKIPS:
                break
            continue
        skipped = 0
        chosen.append((Snippet(cand.id, cand.session_id, cand.seq, None if pi < 0 else pi, text, prio,
                               cand.occurred_at), cand))
        sessions.add(cand.session_id)
        used += cost
        if budget - used < 4:
            break

    # The per-line estimate can differ from the real count where BPE merges across newlines:
    # re-count the rendered text and drop the lowest-priority snippet until it fits.
    text = _render(chosen, header)
    total = count_tokens(text, encoding)
    while chosen and total > budget:
        chosen.pop()
        text = _render(chosen, header)
        total = count_tokens(text, encoding)
    rendered = {(s.candidate_id, s.part) for s, _ in chosen}
    order = [s for s, _ in sorted(chosen, key=lambda it: text.find(it[0].text))]
    assert len(rendered) == len(order)
    return PackedContext(text, tuple(order), total)
