import datetime as dt

import pytest

from context_engine.retrieval import (
    Candidate,
    CorpusStats,
    Part,
    RankConfig,
    analyze,
    analyze_query,
    dedupe,
    missing_neighbours,
    neighbour_smooth,
    pack,
    rank,
)
from context_engine.retrieval.rerank import session_smooth
from context_engine.text import count_tokens

D1 = dt.date(2023, 5, 8)
D2 = dt.date(2023, 6, 20)


def turn(session, seq, q, a, day=D1, dense=None, pid=None):
    return Candidate(
        id=pid or f"{session}-{seq}",
        session_id=session,
        seq=seq,
        parts=(Part(q), Part(a)),
        occurred_at=day,
        date_text=f"{day.day} {day.strftime('%B')} {day.year}",
        dense=dense,
    )


CANDS = [
    turn("s1", 0, "Ann: Hi Bob, how are you?", "Bob: Great, thanks! Busy week."),
    turn("s1", 1, "Ann: I adopted a puppy named Rex yesterday!", "Bob: Wow, congratulations on Rex!"),
    turn("s1", 2, "Ann: He chews everything, my shoes too.", "Bob: Puppies do that, it passes."),
    turn("s2", 0, "Bob: I started pottery classes.", "Ann: Pottery sounds relaxing!", day=D2),
    turn("s2", 1, "Bob: My first bowl cracked in the kiln.", "Ann: Oh no, try again!", day=D2),
]
STATS = CorpusStats.from_documents(
    [analyze(" ".join(p.text for p in c.parts) + " " + c.date_text) for c in CANDS]
)


def ids(scored):
    return [s.candidate.id for s in scored]


def test_rank_puts_the_lexical_match_first_and_keeps_everyone():
    out = rank(analyze_query("What is the name of Ann's puppy?"), CANDS, STATS)
    assert ids(out)[0] == "s1-1"
    assert sorted(ids(out)) == sorted(c.id for c in CANDS)
    assert out[0].score >= out[-1].score


def test_rank_dedupes_ids_and_handles_empty():
    assert rank(analyze_query("x"), [], STATS) == []
    out = rank(analyze_query("pottery"), CANDS + [CANDS[3]], STATS)
    assert len(out) == len(CANDS)


def test_dense_signal_orders_when_words_do_not_match():
    cands = [
        turn("s9", i, f"Ann: line {i}", f"Bob: reply {i}", dense=d) for i, d in enumerate([0.1, 0.9, 0.2])
    ]
    cfg = RankConfig(neighbour=0.0, w_session=0.0)
    out = rank(analyze_query("something unrelated"), cands, STATS, cfg)
    assert ids(out)[0] == "s9-1"
    # A candidate not embedded yet (dense=None) ranks as the weakest dense score, not as an error.
    cands[2] = turn("s9", 2, "Ann: line 2", "Bob: reply 2", dense=None)
    assert ids(rank(analyze_query("something unrelated"), cands, STATS, cfg))[-1] in {"s9-0", "s9-2"}


def test_speaker_prior_breaks_ties_toward_the_named_speaker():
    # Speakers given as fields (not in the text), so the words alone cannot tell the turns apart.
    def said(session, first, second):
        parts = (Part("I love hiking.", speaker=first), Part("Cool.", speaker=second))
        return Candidate(id=session, session_id=session, seq=0, parts=parts)

    cands = [said("ann-first", "Ann", "Bob"), said("bob-first", "Bob", "Ann")]
    q = analyze_query("Does Bob love hiking?")
    cfg = RankConfig(neighbour=0.0, w_session=0.0)
    assert ids(rank(q, cands, STATS, cfg))[0] == "bob-first"
    # Without the prior the order is the input order (a stable sort of equal scores).
    assert (
        ids(rank(q, cands, STATS, RankConfig(w_speaker=0.0, neighbour=0.0, w_session=0.0)))[0] == "ann-first"
    )
    # A "Name:" prefix in the text is read as the speaker when no field is given.
    assert Part("Gina: hello").speaker_name == "Gina" and Part("no prefix here").speaker_name is None


def test_neighbour_smoothing_lifts_the_adjacent_turn():
    q = analyze_query("adopted puppy named Rex")
    plain = rank(q, CANDS, STATS, RankConfig(neighbour=0.0, w_session=0.0))
    smooth = rank(q, CANDS, STATS, RankConfig(neighbour=1.0, w_session=0.0))
    pos = {cid: i for i, cid in enumerate(ids(plain))}
    pos_s = {cid: i for i, cid in enumerate(ids(smooth))}
    # The turn after the hit ("He chews everything") is not about the words but is about the topic.
    assert pos_s["s1-2"] <= pos["s1-2"]
    assert pos_s["s1-2"] < pos_s["s2-1"]


def test_neighbour_smooth_function():
    import numpy as np

    s = np.array([1.0, 0.0, 5.0, 0.0])
    keys = [("a", 0), ("a", 1), ("b", 0), ("b", 2)]
    out = neighbour_smooth(s, keys, 0.5)
    # ("a",0) sees ("a",1)=0; ("a",1) sees ("a",0)=1; ("b",0) has no neighbour -> floor 0; ("b",2) none.
    assert out.tolist() == [1.0, 0.5, 5.0, 0.0]
    assert neighbour_smooth(s, keys, 0.5, distance=2).tolist() == [1.0, 0.0, 5.0, 2.5]
    assert session_smooth(s, ["a", "a", "b", "b"], 0.1).tolist() == pytest.approx([1.1, 0.1, 5.5, 0.5])


def test_date_bonus_prefers_turns_on_the_named_day():
    cands = [
        turn("s1", 0, "Ann: I baked bread.", "Bob: Nice."),
        turn("s2", 0, "Ann: I baked bread.", "Bob: Nice.", day=D2),
    ]
    q = analyze_query("What did Ann bake on 20 June, 2023?")
    out = rank(q, cands, STATS, RankConfig(neighbour=0.0, w_session=0.0))
    assert ids(out)[0] == "s2-0"


def test_missing_neighbours_lists_unfetched_adjacent_turns():
    out = rank(analyze_query("puppy Rex"), [CANDS[1], CANDS[4]], STATS)
    missing = missing_neighbours(out, top=2)
    assert ("s1", 0) in missing and ("s1", 2) in missing and ("s2", 0) in missing
    assert ("s2", 2) in missing and ("s1", 1) not in missing
    assert all(seq >= 0 for _, seq in missing_neighbours(rank(analyze_query("hi"), [CANDS[0]], STATS)))


@pytest.mark.parametrize("budget", [0, 5, 20, 40, 80, 200, 1000])
def test_pack_never_exceeds_budget(budget):
    scored = rank(analyze_query("puppy pottery"), CANDS, STATS)
    for mode in ("parts", "turns"):
        ctx = pack(scored, budget, mode=mode)
        assert ctx.token_count == count_tokens(ctx.text) <= budget
        assert all(s.text in ctx.text for s in ctx.snippets)


def test_pack_parts_groups_by_session_with_date_headers_in_order():
    scored = rank(analyze_query("puppy pottery"), CANDS, STATS)
    ctx = pack(scored, 1000)
    assert ctx.text.startswith("[8 May 2023]")
    assert ctx.text.index("[8 May 2023]") < ctx.text.index("[20 June 2023]")
    assert ctx.text.count("[8 May 2023]") == 1
    assert len(ctx.snippets) == 10  # everything fits
    assert [(s.session_id, s.seq, s.part) for s in ctx.snippets] == sorted(
        (s.session_id, s.seq, s.part) for s in ctx.snippets
    )


def test_pack_small_budget_keeps_the_best_utterance():
    scored = rank(analyze_query("Rex puppy adopted"), CANDS, STATS)
    ctx = pack(scored, 25)
    assert [(s.candidate_id, s.part) for s in ctx.snippets] == [("s1-1", 0)]


def test_pack_truncates_long_parts():
    long = turn("s5", 0, "Ann: " + "word " * 200, "Bob: ok")
    stats = CorpusStats.from_documents([analyze(p.text) for p in long.parts])
    ctx = pack(rank(analyze_query("word"), [long], stats), 500, max_part_tokens=20)
    assert count_tokens(ctx.snippets[0].text) <= 20 and ctx.snippets[0].text.endswith("…")
    with pytest.raises(ValueError):
        pack(rank(analyze_query("word"), [long], stats), 500, mode="bogus")


def test_dedupe_near_duplicates_keeps_the_better_one():
    items = ["I adopted a puppy named Rex", "I adopted a puppy named Rex!", "Pottery class today", "x"]
    assert dedupe(items, lambda s: s) == ["I adopted a puppy named Rex", "Pottery class today", "x"]
    assert dedupe(items, lambda s: s, limit=1) == items[:1] + items[1:]
