"""Assembly rules: section shares with redistribution, templates, dedupe, provenance."""

from __future__ import annotations

import datetime as dt
import uuid

from context_engine.models.domain import Memory, Provenance, Snippet, Turn
from context_engine.retrieval import Candidate, Part, Scored
from context_engine.search.base import ScoredMemory
from context_engine.services.context import Materials, allocate, assemble, dedupe_materials, render_template
from context_engine.text.tokens import count_tokens

NOW = dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.UTC)
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo",
         "lima", "mike", "november", "oscar", "papa"]


def sentence(i: int, n: int = 12) -> str:
    return " ".join(WORDS[(i + j) % len(WORDS)] + str(i) for j in range(n))


def memory(i: int) -> ScoredMemory:
    return ScoredMemory(Memory(id=uuid.uuid4(), agent_id="a", user_id="u", visibility="private", content=sentence(i),
                               importance=0.5, token_count=0, created_at=NOW, updated_at=NOW), 1.0 / (i + 1))


def turn(seq: int) -> Turn:
    return Turn(id=uuid.uuid4(), session_id="s", agent_id="a", user_id="u", seq=seq, question=sentence(seq),
                answer=sentence(seq + 100), occurred_at=NOW, token_count=count_tokens(sentence(seq)) * 2,
                created_at=NOW)


def scored(i: int, session: str = "old") -> Scored:
    cand = Candidate(id=str(uuid.uuid4()), session_id=session, seq=i, parts=(Part(sentence(i + 200)),
                     Part(sentence(i + 300))), occurred_at=NOW.date(), date_text="1 March 2024")
    return Scored(cand, 10.0 - i, (0.5, -0.5))


def summary(n: int = 40) -> Snippet:
    text = " ".join(sentence(i) for i in range(n))
    return Snippet(type="summary", content=text, score=1.0, token_count=count_tokens(text),
                   provenance=Provenance(session_id="s", seq=3))


def section_tokens(out, name):
    return next(s.token_count for s in out.sections if s.name == name)


def test_allocate_redistributes_what_a_section_does_not_need() -> None:
    shares = {"summary": 0.15, "memory": 0.25, "history": 0.45, "tool": 0.15}
    assert allocate(1000, shares, {"summary": 0, "memory": 10_000, "history": 10_000, "tool": 0}) == {
        "summary": 0, "memory": 357, "history": 642, "tool": 0}
    got = allocate(1000, shares, {"summary": 50, "memory": 10_000, "history": 10_000, "tool": 20})
    assert got["summary"] == 50 and got["tool"] == 20
    assert got["memory"] + got["history"] >= 1000 - 70 - 2
    assert abs(got["memory"] / got["history"] - 0.25 / 0.45) < 0.01
    assert allocate(1000, {"memory": 0.0, "history": 1.0}, {"memory": 500, "history": 100}) == {
        "memory": 0, "history": 100}


def test_sections_keep_their_shares_when_all_are_full() -> None:
    m = Materials(summary=summary(), memories=[memory(i) for i in range(40)],
                  recent=[turn(s) for s in range(60, 0, -1)], retrieved=[scored(i) for i in range(60)])
    out = assemble(m, 2000)
    assert out.token_count <= 2000
    assert out.token_count >= 2000 * 0.9  # no share left unused while content was left out
    # tool has nothing: its 15% goes to the others in proportion (15/85, 25/85, 45/85)
    assert abs(section_tokens(out, "summary") - 2000 * 0.15 / 0.85) < 40
    assert abs(section_tokens(out, "memory") - 2000 * 0.25 / 0.85) < 60
    assert section_tokens(out, "history") > 2000 * 0.45 / 0.85 - 60


def test_history_without_session_gets_the_whole_budget() -> None:
    out = assemble(Materials(retrieved=[scored(i) for i in range(80)]), 1000)
    assert 950 <= out.token_count <= 1000
    assert {s.type for s in out.snippets} == {"history"}
    assert all(s.provenance.turn_id and s.provenance.session_id == "old" and s.provenance.seq is not None
               for s in out.snippets)


def test_recent_turns_and_retrieved_turns_share_history_and_render_in_time_order() -> None:
    recent = [turn(s) for s in range(30, 0, -1)]  # newest first
    out = assemble(Materials(recent=recent, retrieved=[scored(i) for i in range(30)]), 800)
    kinds = {"recent": 0, "earlier": 0}
    for s in out.snippets:
        kinds["earlier" if s.provenance.session_id == "old" else "recent"] += 1
    assert kinds["recent"] > 0 and kinds["earlier"] > 0
    seqs = [s.provenance.seq for s in out.snippets if s.provenance.session_id == "s"]
    assert seqs == sorted(seqs) and seqs[-1] == 30  # the newest turn is always in
    # earlier turns come before the recent conversation
    first_recent = min(out.context.index(s.content) for s in out.snippets if s.provenance.session_id == "s")
    assert all(out.context.index(s.content) < first_recent for s in out.snippets if s.provenance.session_id == "old")


def test_model_call_template_renders_named_sections() -> None:
    tpl = "### Memory\n{memory}\n### Conversation\n{history}\n### Tools\n{tool}\nReply in JSON: {\"a\": 1}"
    m = Materials(memories=[memory(1)], recent=[turn(2), turn(1)])
    out = assemble(m, 500, template=tpl, shares={"memory": 0.5, "history": 0.5})
    assert out.context.startswith("### Memory\n- " + sentence(1))
    assert "### Tools\n\nReply in JSON: {\"a\": 1}" in out.context
    assert out.token_count <= 500


def test_template_is_filled_in_one_pass() -> None:
    assert render_template("{memory}|{history}|{other}", {"memory": "{history}", "history": "H"}) == \
        "{history}|H|{other}"
    assert render_template(None, {"summary": "S", "memory": "", "history": "H"}) == "S\n\nH"


def test_include_limits_sections() -> None:
    m = Materials(summary=summary(2), memories=[memory(1)], recent=[turn(1)])
    out = assemble(m, 1000, include=["memory"])
    assert [s.name for s in out.sections] == ["memory"]
    assert {s.type for s in out.snippets} == {"memory"}


def test_dedupe_drops_recent_turns_and_near_duplicates_from_retrieval() -> None:
    t = turn(5)
    same = Scored(Candidate(id=str(t.id), session_id="s", seq=5, parts=(Part(t.question), Part(t.answer))), 1.0)
    restated = Scored(Candidate(id=str(uuid.uuid4()), session_id="x", seq=1,
                                parts=(Part(t.question + "!"), Part(t.answer))), 0.9)
    other = scored(7)
    m1, m2 = memory(1), memory(1)
    out = dedupe_materials(Materials(recent=[t], retrieved=[same, restated, other], memories=[m1, m2, memory(3)]))
    assert [s.candidate.id for s in out.retrieved] == [other.candidate.id]
    assert len(out.memories) == 2 and out.memories[0] is m1


def test_tiny_budgets_still_fit() -> None:
    m = Materials(summary=summary(), memories=[memory(1)], recent=[turn(1)])
    for budget in (1, 2, 3, 5, 8, 17):
        out = assemble(m, budget, template="{summary} and {memory} and {history} and {tool}: answer well")
        assert count_tokens(out.context) == out.token_count <= budget
