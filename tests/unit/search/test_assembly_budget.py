"""``token_count <= token_budget`` for every rendered context: a property over random texts
(unicode, emoji, BPE-hostile runs), budgets from 1 up, templates and section shares."""

from __future__ import annotations

import datetime as dt
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from context_engine.models.domain import Memory, Provenance, Snippet, ToolCall, Turn
from context_engine.retrieval import Candidate, Part, Scored
from context_engine.search.base import ScoredMemory
from context_engine.services.context import Materials, assemble, render_template
from context_engine.text.tokens import count_tokens

NOW = dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.UTC)

# Letters, digits, punctuation, whitespace, CJK, emoji (incl. ZWJ sequences' parts), combining marks.
ALPHABET = st.one_of(
    st.characters(codec="utf-8", exclude_categories=("Cs",)),
    st.sampled_from(list("  \n\t{}:-_.,!?😀👍🏽🇫🇷‍❤️中文字日本語ñé́")),
)
TEXT = st.text(ALPHABET, min_size=0, max_size=120)
NONEMPTY = st.text(ALPHABET, min_size=1, max_size=120)


@st.composite
def turns(draw):
    n = draw(st.integers(0, 8))
    return [Turn(id=uuid.uuid4(), session_id="s", agent_id="a", user_id="u", seq=n - i, question=draw(NONEMPTY),
                 answer=draw(TEXT), occurred_at=NOW, token_count=0, created_at=NOW) for i in range(n)]


@st.composite
def retrieved(draw):
    out = []
    for i in range(draw(st.integers(0, 10))):
        parts = tuple(Part(text=t) for t in draw(st.lists(NONEMPTY, min_size=1, max_size=2)))
        cand = Candidate(id=str(uuid.uuid4()), session_id=draw(st.sampled_from(["s", "t", "u"])), seq=i, parts=parts,
                         occurred_at=draw(st.sampled_from([None, NOW.date()])), date_text="1 March 2024")
        out.append(Scored(cand, 10.0 - i, tuple(draw(st.floats(-3, 3)) for _ in parts)))
    return out


@st.composite
def memories(draw):
    return [ScoredMemory(Memory(id=uuid.uuid4(), agent_id="a", user_id="u", visibility="private", content=c,
                                importance=0.5, token_count=0, created_at=NOW, updated_at=NOW), 1.0 / (i + 1))
            for i, c in enumerate(draw(st.lists(NONEMPTY, max_size=6)))]


@st.composite
def tools(draw):
    return [ToolCall(call_id=f"c{i}", session_id="s", agent_id="a", user_id="u", chain_seq=i, name=draw(NONEMPTY),
                     arguments={"q": draw(TEXT)}, status=draw(st.sampled_from(["pending", "succeeded", "failed"])),
                     result=draw(st.one_of(st.none(), TEXT)), created_at=NOW, updated_at=NOW)
            for i in range(draw(st.integers(0, 4)))]


@st.composite
def materials(draw):
    summary_text = draw(st.one_of(st.none(), NONEMPTY))
    summary = (Snippet(type="summary", content=summary_text, score=1.0, token_count=count_tokens(summary_text),
                       provenance=Provenance(session_id="s")) if summary_text else None)
    return Materials(summary=summary, memories=draw(memories()), recent=draw(turns()), retrieved=draw(retrieved()),
                     tools=draw(tools()))


SECTION = st.sampled_from(["{summary}", "{memory}", "{history}", "{tool}"])
TEMPLATES = st.one_of(st.none(), st.lists(st.one_of(SECTION, TEXT), max_size=8).map("".join))


@st.composite
def shares(draw):
    raw = {n: draw(st.floats(0, 1)) for n in ("summary", "memory", "history", "tool")}
    total = sum(raw.values())
    return {n: v / total for n, v in raw.items()} if total > 1 else raw


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(materials(), st.one_of(st.integers(1, 64), st.integers(1, 4000)), TEMPLATES,
       st.one_of(st.none(), shares()),
       st.one_of(st.none(), st.lists(st.sampled_from(["summary", "memory", "history", "tool"]), unique=True)))
def test_rendered_context_never_exceeds_the_budget(m, budget, template, section_shares, include) -> None:
    out = assemble(m, budget, template=template, shares=section_shares, include=include)
    assert out.token_count == count_tokens(out.context)
    assert out.token_count <= budget
    for s in out.snippets:  # every snippet reported is in the context, and of a wanted section
        assert s.content in out.context
        assert include is None or s.type in include
        assert s.token_count == count_tokens(s.content)


@settings(max_examples=100, deadline=None)
@given(TEMPLATES, st.dictionaries(st.sampled_from(["summary", "memory", "history", "tool"]), TEXT))
def test_template_is_filled_in_one_pass(template, texts) -> None:
    out = render_template(template, texts)
    if template is not None and "{" not in "".join(texts.values()):
        assert "{summary}" not in out or "{summary}" in template.replace("{summary}", "")  # literal braces stay
