from __future__ import annotations

import datetime as dt

from context_engine.cache.keys import context_key, session_prefix
from context_engine.retrieval.dates import index_date_text
from context_engine.search.text import date_text, turn_search_text


def key(**kw):
    base = dict(window_version=3, user_generation=7, agent_generation=1, agent_version=2, query="q", token_budget=100,
                model_call_id=None, include=None, k=None, embedder="hashing")
    base.update({k: v for k, v in kw.items() if k in base})
    ids = {"tenant": "t", "agent": "a", "user": "u", "session": "s"}
    ids.update({k: v for k, v in kw.items() if k in ids})
    return context_key(ids["tenant"], ids["agent"], ids["user"], ids["session"], **base)


def test_every_dependency_changes_the_key() -> None:
    k0 = key()
    for change in ({"window_version": 4}, {"user_generation": 8}, {"agent_generation": 2}, {"agent_version": 3},
                   {"query": "q2"}, {"token_budget": 101}, {"model_call_id": "m"}, {"include": ["memory"]},
                   {"k": 5}, {"embedder": "minilm"}, {"user": "u2"}, {"session": None}, {"agent": "b"}):
        assert key(**change) != k0, change
    assert key(include=["memory", "history"]) == key(include=["history", "memory"])


def test_ids_with_separators_cannot_collide() -> None:
    assert key(user="a:b", session="c") != key(user="a", session="b:c")
    assert key().startswith(session_prefix("t", "a", "u", "s"))
    assert session_prefix("t", "a", "u", "s") == "ctx:t:a:u:s:"


def test_indexed_date_form_matches_the_retrieval_one() -> None:
    for day in (dt.date(2023, 5, 8), dt.date(2024, 12, 31), dt.date(2022, 1, 1)):
        assert date_text(day) == index_date_text(day)
    late = dt.datetime(2023, 5, 8, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5)))  # 9 May in UTC
    assert turn_search_text("q", "a", late).startswith("9 May 2023\n")
