"""The compression strategies are pure: turns in, a summary under the target out."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from context_engine.compression.models import CompressionRequest, SourceTurn
from context_engine.compression.strategies import compress, importance_scores
from context_engine.compression.summarizers import ExtractiveSummarizer
from context_engine.text.tokens import count_tokens


def turn(seq: int, q: str, a: str = "", **meta: object) -> SourceTurn:
    return SourceTurn(seq=seq, question=q, answer=a, token_count=count_tokens(q) + count_tokens(a), metadata=meta)


def chatter(n: int) -> list[SourceTurn]:
    return [turn(i, f"Small talk number {i}, how is the weather today?", "It is fine, thanks for asking.")
            for i in range(1, n + 1)]


def req(strategy: str, turns: list[SourceTurn], target: int = 200, **kw: object) -> CompressionRequest:
    return CompressionRequest(strategy=strategy, turns=turns, target_tokens=target, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("strategy", ["summarize", "truncate", "importance"])
def test_every_strategy_records_what_it_covers(strategy: str) -> None:
    turns = chatter(30)
    result = compress(req(strategy, turns))
    assert result.strategy == strategy
    assert result.covers_seq == 30 and result.seqs == list(range(1, 31))
    assert 0 < result.summary_tokens == count_tokens(result.summary) <= 200
    assert set(result.kept_seqs) <= set(result.seqs)
    assert result.input_tokens == sum(t.token_count for t in turns)


def test_truncate_keeps_head_and_tail_and_says_what_it_dropped() -> None:
    result = compress(req("truncate", chatter(20), target=400, keep_head=2, keep_tail=3))
    assert result.kept_seqs == [1, 2, 18, 19, 20]
    assert "[… 15 turns omitted (seq 3–17) …]" in result.summary
    assert result.summary.index("[1]") < result.summary.index("omitted") < result.summary.index("[18]")
    assert result.stats == {"head": 2, "tail": 3, "dropped": 15}


def test_truncate_shares_a_small_target_between_the_kept_turns() -> None:
    long = [turn(i, "word " * 300, "answer " * 300) for i in range(1, 9)]
    result = compress(req("truncate", long, target=120, keep_head=1, keep_tail=2))
    assert result.summary_tokens <= 120
    assert all(f"[{s}]" in result.summary for s in (1, 7, 8))


def test_truncate_folds_a_prior_summary_in_as_the_head() -> None:
    result = compress(req("truncate", chatter(10), prior_summary="Earlier: Alice booked Paris.", prior_seqs=[1, 2],
                          target=300, keep_tail=2))
    assert result.summary.startswith("Earlier: Alice booked Paris.")
    assert result.kept_seqs == [9, 10] and result.seqs[:2] == [1, 2]


def test_importance_keeps_what_matters_in_conversation_order() -> None:
    turns = chatter(40)
    turns[9] = turn(10, "Please remember: my daughter Emma is allergic to peanuts.", "Noted, Emma is allergic.")
    turns[24] = turn(25, "Our deadline for the Berlin launch is 12 March 2024.", "Got it: 12 March 2024.")
    turns[32] = turn(33, "Just chatting again", "sure", importance=1.0)
    result = compress(req("importance", turns, target=80))
    assert {10, 25, 33} <= set(result.kept_seqs)
    assert result.kept_seqs == sorted(result.kept_seqs)
    assert result.summary.index("[10]") < result.summary.index("[25]")


def test_importance_scores_prefer_specific_turns() -> None:
    scores = importance_scores([turn(1, "ok", "thanks"),
                                turn(2, "I prefer the Lisbon office; my manager Joana approved a 3400 euro budget.")])
    assert scores[1] > scores[0]


def test_extractive_summary_is_deterministic_and_tagged() -> None:
    turns = [turn(i, f"What did Caroline say about the {topic}?", f"Caroline said the {topic} starts on {day}. "
                  "Everything else was small talk.") for i, (topic, day) in
             enumerate([("pottery class", "Monday"), ("LGBTQ support group", "Friday"), ("camping trip", "June 3")],
                       start=1)]
    a = ExtractiveSummarizer().summarize(turns, None, 60)
    b = ExtractiveSummarizer().summarize(turns, None, 60)
    assert a.text == b.text and a.summarizer == "extractive" and not a.fallback
    assert count_tokens(a.text) <= 60
    assert all(line.startswith("[") for line in a.text.splitlines())
    assert set(a.kept_seqs) <= {1, 2, 3} and a.kept_seqs


def test_extractive_skips_near_duplicates() -> None:
    turns = [turn(i, "The quarterly report is due on Friday.", "") for i in range(1, 6)]
    summary = ExtractiveSummarizer().summarize(turns, None, 200)
    assert summary.text.count("quarterly report") == 1


def test_extractive_keeps_the_prior_summary_in_the_running() -> None:
    prior = "Alice moved to Lisbon in 2021 and works as a nurse."
    summary = ExtractiveSummarizer().summarize(chatter(5), prior, 40)
    assert "Lisbon" in summary.text


def test_empty_range_gives_an_empty_summary() -> None:
    for strategy in ("summarize", "truncate", "importance"):
        result = compress(req(strategy, []))
        assert result.summary == "" and result.covers_seq == 0 and result.seqs == []


text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=300)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pairs=st.lists(st.tuples(text, text), max_size=25), target=st.integers(16, 400),
       strategy=st.sampled_from(["summarize", "truncate", "importance"]),
       head=st.integers(0, 4), tail=st.integers(0, 6), prior=st.none() | text)
def test_no_strategy_ever_exceeds_its_target(pairs, target, strategy, head, tail, prior) -> None:  # type: ignore[no-untyped-def]
    turns = [turn(i, q or "?", a) for i, (q, a) in enumerate(pairs, start=1)]
    result = compress(req(strategy, turns, target=target, keep_head=head, keep_tail=tail, prior_summary=prior))
    assert count_tokens(result.summary) <= target
    assert result.seqs == sorted({t.seq for t in turns})
