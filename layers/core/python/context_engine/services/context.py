"""QueryContext: the best context for a query within a token budget.

This first assembly is honest and simple: the window summary plus the most recent
turns, newest first, packed until the budget is reached; the rendered text is counted
again so ``token_count <= token_budget`` holds for the final string.
"""

from __future__ import annotations

from context_engine.errors import ValidationFailed, too_large
from context_engine.models.api import QueryContextRequest, QueryContextResponse, Section
from context_engine.models.domain import Principal, Provenance, Snippet
from context_engine.repos import sessions, turns
from context_engine.runtime import Runtime
from context_engine.services.authz import Action, require, require_agent
from context_engine.services.turns import load_session
from context_engine.text.tokens import count_tokens

SEPARATOR = "\n\n"


def render_turn(question: str, answer: str) -> str:
    return f"Q: {question}\nA: {answer}" if answer else f"Q: {question}"


def query_context(rt: Runtime, principal: Principal, req: QueryContextRequest) -> QueryContextResponse:
    require(principal, Action.read)
    require_agent(principal, req.agent_id)
    if req.token_budget > rt.settings.max_token_budget:
        raise too_large("token_budget", rt.settings.max_token_budget, req.token_budget, "tokens")
    tenant = principal.tenant_id
    snippets: list[Snippet] = []
    version = 0
    if req.session_id:
        with rt.db.tenant(tenant) as conn:
            session = load_session(conn, principal, req.session_id)
            if session.agent_id != req.agent_id:
                raise ValidationFailed("session belongs to another agent", details=[{"loc": ["body", "session_id"]}])
            window = sessions.get_window(conn, tenant, req.session_id)
            version = window.version
            recent = turns.recent(conn, tenant, req.session_id, limit=200)
        if window.summary and (req.include is None or "summary" in req.include):
            snippets.append(Snippet(type="summary", content=window.summary, score=1.0,
                                    token_count=count_tokens(window.summary),
                                    provenance=Provenance(session_id=req.session_id, seq=window.summary_covers_seq)))
        if req.include is None or "history" in req.include:
            for t in recent:
                text = render_turn(t.question, t.answer)
                snippets.append(Snippet(type="history", content=text, score=1.0, token_count=count_tokens(text),
                                        provenance=Provenance(session_id=t.session_id, turn_id=t.id, seq=t.seq,
                                                              occurred_at=t.occurred_at)))
    chosen: list[Snippet] = []
    used = 0
    for s in snippets:  # summary first, then newest turns
        cost = s.token_count + (count_tokens(SEPARATOR) if chosen else 0)
        if used + cost > req.token_budget:
            break
        chosen.append(s)
        used += cost
    history = sorted((s for s in chosen if s.type == "history"), key=lambda s: s.provenance.seq or 0)
    ordered = [s for s in chosen if s.type == "summary"] + history
    context = SEPARATOR.join(s.content for s in ordered)
    while ordered and count_tokens(context) > req.token_budget:  # BPE merges across joins: re-check
        ordered.pop(0 if len(ordered) > 1 else 0)
        context = SEPARATOR.join(s.content for s in ordered)
    token_count = count_tokens(context)
    sections = [Section(name=n, token_count=sum(s.token_count for s in ordered if s.type == n), token_share=0,
                        snippet_count=sum(1 for s in ordered if s.type == n)) for n in ("summary", "history")]
    return QueryContextResponse(context=context, sections=sections, snippets=ordered, token_count=token_count,
                                token_budget=req.token_budget, cache="miss", window_version=version)
