"""QueryContext: the best context for a query within a token budget.

Flow (docs/query.md):

1. one statement reads what the answer depends on — the session (and its agent and user),
   its window version, the (agent, user) and agent-wide generations, the agent profile and
   version, and the session's latest question (the default query of a model call);
2. the cache key is built from those (``cache.keys``); a hit is returned as it was stored;
3. on a miss: recent turns of the session, the window summary, retrieved earlier turns
   (hybrid search + re-rank, any session of the user), retrieved memories, open and recent
   tool calls → near-duplicate removal → per-section budgets from the model call's shares
   (unused share redistributed) → packing → template rendering → the final string is
   counted again and shrunk until ``token_count <= token_budget``, which always holds;
4. the answer is cached under the key. ``prepare.prepare_contexts`` runs step 3 ahead of
   time for each model call of the agent, so the agent's next request is a hit.

``assemble`` (step 3 after loading) is a pure function of its inputs; the property tests
drive it directly.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import json
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from aws_lambda_powertools.metrics import MetricUnit

from context_engine.cache.keys import context_key
from context_engine.db.database import Conn
from context_engine.errors import NotFound, ValidationFailed, too_large
from context_engine.models.api import QueryContextRequest, QueryContextResponse, Section
from context_engine.models.domain import (
    SECTIONS,
    AgentProfile,
    ModelCall,
    Principal,
    Provenance,
    Snippet,
    ToolCall,
    Turn,
)
from context_engine.observability.powertools import metrics
from context_engine.repos import tool_calls, turns
from context_engine.retrieval import Scored, dedupe, pack
from context_engine.retrieval.rerank import analyzed, part_terms
from context_engine.runtime import Runtime
from context_engine.search import search_backend
from context_engine.search.base import Scope, ScoredMemory, SearchQuery
from context_engine.services.authz import Action, require, require_agent
from context_engine.text.tokens import count_tokens, truncate_counted, truncate_to_tokens

log = logging.getLogger(__name__)

SEPARATOR = "\n\n"
ELLIPSIS = "…"
# When a session has both recent turns and retrieved earlier ones, recent turns may take at
# most this share of the history budget first; what retrieval leaves unused goes back to them.
RECENT_SHARE_OF_HISTORY = 0.5
# A truncated snippet shorter than this is noise, not context: skip instead.
MIN_TRUNCATED_TOKENS = 16
# Near-duplicates: Jaccard overlap of analyzed terms (retrieval.dedupe).
DUPLICATE_THRESHOLD = 0.85
TOOL_CALLS_LIMIT = 20
# Without a model call: the shares a model call has by default.
DEFAULT_SHARES: dict[str, float] = dict(ModelCall.model_fields["section_shares"].get_default(call_default_factory=True))
_PLACEHOLDER = re.compile(r"\{(summary|memory|history|tool)\}")


# --- pure assembly ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Materials:
    """Everything a context can be made of, each list in priority order."""

    summary: Snippet | None = None
    memories: Sequence[ScoredMemory] = ()
    recent: Sequence[Turn] = ()  # newest first
    retrieved: Sequence[Scored] = ()  # best first
    tools: Sequence[ToolCall] = ()


@dataclass
class Assembled:
    context: str
    token_count: int
    sections: list[Section]
    snippets: list[Snippet]


@dataclass
class _Section:
    text: str = ""
    snippets: list[Snippet] = field(default_factory=list)
    tokens: int = 0  # count_tokens(text), computed once: long texts are not in the count cache


def _section(text: str, snippets: list[Snippet]) -> _Section:
    return _Section(text=text, snippets=snippets, tokens=count_tokens(text))


def render_turn(question: str, answer: str) -> str:
    return f"{question}\n{answer}" if answer else question


def render_tool(call: ToolCall) -> str:
    from context_engine.services.tools import render_tool_output

    args = json.dumps(call.arguments, ensure_ascii=False, separators=(",", ":"), default=str)
    out = render_tool_output(call.result, call.error)
    head = f"[tool {call.name} {call.status}] {args}"
    return f"{head}\n{out}" if out else head


def render_template(template: str | None, texts: dict[str, str]) -> str:
    """A model call's template with its named sections filled in one pass (text inserted for
    one placeholder is never scanned for another; other braces in the template are literal).
    No template: the non-empty sections in the canonical order, separated by blank lines."""
    if template is None:
        return SEPARATOR.join(texts[n] for n in SECTIONS if texts.get(n))
    return _PLACEHOLDER.sub(lambda m: texts.get(m.group(1), ""), template)


def allocate(budget: int, shares: Mapping[str, float], demand: dict[str, int]) -> dict[str, int]:
    """Split ``budget`` by ``shares`` among sections that have something to say; a section
    that needs less than its share gives the rest to the others in proportion to theirs
    (water-filling), so no token of the budget is left unused while content is left out."""
    alloc = {n: 0 for n in demand}
    active = {n: s for n, s in shares.items() if s > 0 and demand.get(n, 0) > 0}
    remaining = max(budget, 0)
    while active and remaining > 0:
        total = sum(active.values())
        offer = {n: remaining * s / total for n, s in active.items()}
        capped = [n for n in active if offer[n] >= demand[n] - alloc[n]]
        if not capped:
            for n in active:
                alloc[n] += int(offer[n])
            break
        for n in capped:
            remaining -= demand[n] - alloc[n]
            alloc[n] = demand[n]
            del active[n]
    return alloc


def _fit(text: str, room: int) -> tuple[str, int] | None:
    """``text`` and its token count if it fits ``room`` tokens, else a truncated copy (and its
    count) if that is still worth it."""
    if room <= 0:
        return None
    if not text:
        return text, 0
    cut, tokens = truncate_counted(text, room, suffix=ELLIPSIS, min_tokens=MIN_TRUNCATED_TOKENS)
    return (cut, tokens) if cut else None


@functools.lru_cache(maxsize=64)
def _fit_summary(text: str, room: int) -> tuple[str, int] | None:
    """``_fit`` for a session's window summary, remembered: every query of the session fits
    the same summary into the same share, and a summary is long (cutting it means encoding
    all of it)."""
    return _fit(text, room)


# An item to pack: its text, and how to make its snippet from the packed content and its token
# count. Snippets (pydantic models) are made only for what is packed: packing stops at the
# first item that does not fit, and most items are never packed.
_Item = tuple[str, Callable[[str, int], Snippet]]


def _pack_items(items: Iterable[_Item], room: int, sep: str = "\n",
                order: Callable[[list[tuple[str, Snippet]]], list[tuple[str, Snippet]]] | None = None,
                fit: Callable[[str, int], tuple[str, int] | None] = _fit) -> _Section:
    """Greedy in priority order: whole items while they fit; the first that does not is
    truncated if what is left is worth it, and packing stops there."""
    sep_cost = count_tokens(sep)
    chosen: list[tuple[str, Snippet]] = []
    used = 0
    for text, make in items:
        cost_sep = sep_cost if chosen else 0
        fitted = fit(text, room - used - cost_sep)
        if fitted is None:
            if room - used - cost_sep >= MIN_TRUNCATED_TOKENS:
                break
            continue
        content, tokens = fitted
        chosen.append((content, make(content, tokens)))
        used += tokens + cost_sep
        if content is not text:
            break
    if order is not None:
        chosen = order(chosen)
    return _section(sep.join(t for t, _ in chosen), [s for _, s in chosen])


def render_memory(m: ScoredMemory) -> str:
    return f"- {m.memory.content}"


def _memory_snippet(m: ScoredMemory, content: str, tokens: int) -> Snippet:
    return Snippet(type="memory", content=content, score=m.score, token_count=tokens,
                   provenance=Provenance(memory_id=m.memory.id))


def _tool_snippet(c: ToolCall, content: str, tokens: int) -> Snippet:
    return Snippet(type="tool", content=content, score=1.0 if c.status in ("pending", "running") else 0.5,
                   token_count=tokens,
                   provenance=Provenance(session_id=c.session_id, call_id=c.call_id, turn_id=c.turn_id))


def _recent_snippet(t: Turn, score: float, content: str, tokens: int) -> Snippet:
    return Snippet(type="history", content=content, score=score, token_count=tokens,
                   provenance=Provenance(session_id=t.session_id, turn_id=t.id, seq=t.seq, occurred_at=t.occurred_at))


def _summary_snippet(summary: Snippet, content: str, tokens: int) -> Snippet:
    return summary.model_copy(update={"content": content, "token_count": tokens})


@dataclass(frozen=True)
class _Items:
    """The materials' items, rendered once per ``assemble`` (the demand estimate and every
    packing pass read them; rendering a tool call formats JSON)."""

    memories: list[_Item]
    tools: list[_Item]
    recent: list[_Item]  # newest first: that is the priority

    @classmethod
    def of(cls, materials: Materials) -> _Items:
        n = len(materials.recent)
        return cls(
            memories=[(render_memory(m), functools.partial(_memory_snippet, m)) for m in materials.memories],
            tools=[(render_tool(c), functools.partial(_tool_snippet, c)) for c in materials.tools],
            recent=[(render_turn(t.question, t.answer), functools.partial(_recent_snippet, t, 1.0 - i / max(n, 1)))
                    for i, t in enumerate(materials.recent)],
        )


def _chronological(chosen: list[tuple[str, Snippet]]) -> list[tuple[str, Snippet]]:
    return sorted(chosen, key=lambda it: it[1].provenance.seq or 0)


def _pack_retrieved(retrieved: Sequence[Scored], room: int) -> _Section:
    if room <= 0 or not retrieved:
        return _Section()
    packed = pack(retrieved, room, mode="parts")
    snippets = []
    for s in packed.snippets:
        snippets.append(Snippet(type="history", content=s.text, score=float(s.score), token_count=count_tokens(s.text),
                                provenance=Provenance(session_id=s.session_id, turn_id=_turn_id(s.candidate_id),
                                                      seq=s.seq, occurred_at=_as_datetime(s.occurred_at))))
    return _Section(text=packed.text, snippets=snippets, tokens=packed.token_count)


@functools.lru_cache(maxsize=16384)
def _turn_id(candidate_id: str) -> UUID:
    """A retrieved turn's id as a UUID (parsing one is slow; the same turns come back)."""
    return UUID(candidate_id)


def _as_datetime(value: Any) -> Any:
    if isinstance(value, dt.datetime) or value is None:
        return value
    return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)


def _history(materials: Materials, recent_items: list[_Item], room: int) -> _Section:
    sep = count_tokens(SEPARATOR)
    if not materials.retrieved:
        return _pack_items(recent_items, room, order=_chronological)
    if not recent_items:
        return _pack_retrieved(materials.retrieved, room)
    recent = _pack_items(recent_items, int(room * RECENT_SHARE_OF_HISTORY), order=_chronological)
    earlier = _pack_retrieved(materials.retrieved, room - recent.tokens - sep)
    if earlier.tokens < room - recent.tokens - sep:  # retrieval left room: more recent turns
        recent = _pack_items(recent_items, room - earlier.tokens - sep, order=_chronological)
    parts = [p for p in (earlier, recent) if p.text]
    if len(parts) == 1:  # the joined text is that part's own: its count is known
        return _Section(text=parts[0].text, snippets=list(parts[0].snippets), tokens=parts[0].tokens)
    return _section(SEPARATOR.join(p.text for p in parts), [s for p in parts for s in p.snippets])


def _capped_sum(costs: Iterable[int], cap: int) -> int:
    """Sum of ``costs`` up to the first partial sum above ``cap``: a section's demand only has
    to be known up to the whole budget, and counting every candidate's tokens costs time."""
    total = 0
    for c in costs:
        total += c
        if total > cap:
            break
    return total


def _demand(materials: Materials, items: _Items, cap: int) -> dict[str, int]:
    """Tokens each section could use (with separators and headers, approximately)."""
    recent = (t.token_count + 2 for t in materials.recent)
    earlier = (sum(count_tokens(p.text) + 1 for p in s.candidate.parts) + 8 for s in materials.retrieved)
    return {
        "summary": materials.summary.token_count if materials.summary else 0,
        "memory": _capped_sum((count_tokens(text) + 1 for text, _ in items.memories), cap),
        "history": _capped_sum(itertools.chain(recent, earlier), cap),
        "tool": _capped_sum((count_tokens(text) + 1 for text, _ in items.tools), cap),
    }


def _sections(materials: Materials, items: _Items, room: int, shares: Mapping[str, float]) -> dict[str, _Section]:
    """Pack every section within its allocation; what a section leaves unused flows to the
    next one in packing order (summary, tool, memory, then history, the most divisible)."""
    alloc = allocate(room, shares, _demand(materials, items, room))
    out: dict[str, _Section] = {}
    carry = 0
    for name in ("summary", "tool", "memory", "history"):
        budget = alloc.get(name, 0) + carry if shares.get(name, 0) > 0 else 0
        if name == "summary":
            summary = materials.summary
            sec = (_pack_items([(summary.content, functools.partial(_summary_snippet, summary))], budget,
                               fit=_fit_summary) if summary else _Section())
        elif name == "tool":
            sec = _pack_items(items.tools, budget)
        elif name == "memory":
            sec = _pack_items(items.memories, budget)
        else:
            sec = _history(materials, items.recent, budget)
        used = sec.tokens
        carry = max(budget - used, 0) if budget else carry
        out[name] = sec
    return out


def assemble(
    materials: Materials,
    budget: int,
    *,
    template: str | None = None,
    shares: Mapping[Any, float] | None = None,
    include: Sequence[str] | None = None,
) -> Assembled:
    """Pack ``materials`` into at most ``budget`` tokens of rendered text (always: the final
    string is counted, and shrunk — by re-packing tighter, then by truncation — until it fits)."""
    wanted = set(include) if include is not None else set(SECTIONS)
    base: dict[str, float] = dict(shares if shares is not None else DEFAULT_SHARES)
    active_shares: dict[str, float] = {n: float(base.get(n, 0.0)) for n in SECTIONS if n in wanted}
    overhead = count_tokens(render_template(template, {})) if template is not None else 0
    n_joins = len([n for n in active_shares if active_shares[n] > 0]) - 1
    room = budget - overhead - (max(n_joins, 0) * count_tokens(SEPARATOR) if template is None else 0)
    context = ""
    token_count = 0
    secs: dict[str, _Section] = {}
    items = _Items.of(materials)
    for _ in range(4):  # the estimate is exact but for BPE merges at joins: rarely a second pass
        secs = _sections(materials, items, room, active_shares)
        context = render_template(template, {n: s.text for n, s in secs.items()})
        token_count = count_tokens(context)
        if token_count <= budget:
            break
        room -= token_count - budget + 1
    if token_count > budget:  # the template alone is over budget: cut the string
        context = truncate_to_tokens(context, budget)
        token_count = count_tokens(context)
    snippets = [s for n in SECTIONS if n in secs for s in secs[n].snippets if s.content in context]
    sections = [Section(name=n, token_count=secs[n].tokens if n in secs else 0,
                        token_share=int(budget * active_shares.get(n, 0.0)),
                        snippet_count=sum(1 for s in snippets if s.type == n))
                for n in SECTIONS if n in wanted]
    return Assembled(context=context, token_count=token_count, sections=sections, snippets=snippets)


def dedupe_materials(materials: Materials, budget: int | None = None) -> Materials:
    """Drop retrieved turns that are recent turns or near-duplicates of them or of better
    retrieved turns, and memories that restate a better memory. Pairwise comparison is
    quadratic (and analyzing each text costs too), so with a ``budget`` only the first
    ``budget // 100`` items of each list are compared — the ones that take most of the room; a
    near-duplicate further down costs a little room, never correctness."""
    recent_ids = {str(t.id) for t in materials.recent}
    retrieved = ([s for s in materials.retrieved if s.candidate.id not in recent_ids] if recent_ids
                 else list(materials.retrieved))
    limit = len(materials.recent) + len(retrieved) if budget is None else max(10, budget // 100)
    # Only the first ``limit`` items (recent turns first) are compared; the rest are kept as they are.
    head = max(limit - len(materials.recent), 0)
    items: list[tuple[str, Any]] = [("recent", t) for t in materials.recent]
    items += [("retrieved", s) for s in retrieved[:head]]

    def text_of(item: tuple[str, Any]) -> str:
        kind, obj = item
        if kind == "recent":
            return render_turn(obj.question, obj.answer)
        return "\n".join(p.text for p in obj.candidate.parts)

    def terms_of(item: tuple[str, Any]) -> Iterable[str]:
        # the same terms as analyze(text_of(item)): a newline never joins two words, and a
        # retrieved part's terms are the indexer's analyze(part) (or analyzed once, cached)
        kind, obj = item
        if kind == "recent":
            return analyzed(text_of(item))
        return itertools.chain.from_iterable(part_terms(p) for p in obj.candidate.parts)

    kept = dedupe(items, text_of, threshold=DUPLICATE_THRESHOLD, limit=limit, terms_of=terms_of)
    retrieved = [obj for kind, obj in kept if kind == "retrieved"] + retrieved[head:]
    memories = dedupe(list(materials.memories), lambda m: m.memory.content, threshold=DUPLICATE_THRESHOLD,
                      limit=limit, terms_of=lambda m: analyzed(m.memory.content))
    return Materials(summary=materials.summary, memories=memories, recent=materials.recent, retrieved=retrieved,
                     tools=materials.tools)


# --- loading, cache, the use case -----------------------------------------------------------
@dataclass(frozen=True)
class QueryState:
    """What a context depends on, read in one statement before the cache lookup."""

    session_agent: str | None
    session_user: str | None
    window_version: int
    summary_covers_seq: int
    latest_question: str | None
    profile: AgentProfile
    agent_version: int
    user_generation: int
    agent_generation: int


_STATE_SQL = """
select s.agent_id as s_agent, s.user_id as s_user,
       coalesce(w.version, 0) as window_version, coalesce(w.summary_covers_seq, 0) as covers,
       case when %(want_latest)s then (select question from turns where tenant_id = %(t)s and session_id = %(s)s
                                        order by seq desc limit 1) end as latest_question,
       a.profile, coalesce(a.version, 0) as agent_version,
       coalesce((select generation from search_generations where tenant_id = %(t)s and agent_id = %(a)s
                  and user_id = coalesce(%(u)s, s.user_id, '-')), 0) as user_gen,
       coalesce((select generation from search_generations where tenant_id = %(t)s and agent_id = %(a)s
                  and user_id = ''), 0) as agent_gen
  from (select 1) one
  left join sessions s on s.tenant_id = %(t)s and s.id = %(s)s
  left join context_windows w on w.tenant_id = %(t)s and w.session_id = %(s)s
  left join agents a on a.tenant_id = %(t)s and a.id = %(a)s
"""


def load_state(conn: Conn, tenant_id: str, req: QueryContextRequest) -> QueryState:
    row = conn.execute(_STATE_SQL, {
        "t": tenant_id, "s": req.session_id, "a": req.agent_id, "u": req.user_id,
        "want_latest": req.query is None and req.session_id is not None,
    }).fetchone()
    assert row is not None  # (select 1) always yields a row
    return QueryState(
        session_agent=row["s_agent"], session_user=row["s_user"], window_version=int(row["window_version"]),
        summary_covers_seq=int(row["covers"]), latest_question=row["latest_question"],
        profile=AgentProfile(**row["profile"]) if row["profile"] else AgentProfile(),
        agent_version=int(row["agent_version"]), user_generation=int(row["user_gen"]),
        agent_generation=int(row["agent_gen"]),
    )


@dataclass(frozen=True)
class Resolved:
    user_id: str | None
    query: str
    budget: int
    model_call: ModelCall | None


def resolve(rt: Runtime, req: QueryContextRequest, state: QueryState) -> Resolved:
    if req.session_id is not None:
        if state.session_agent is None:
            raise NotFound("session not found", details={"session_id": req.session_id})
        if state.session_agent != req.agent_id:
            raise ValidationFailed("session belongs to another agent", details=[{"loc": ["body", "session_id"]}])
        if req.user_id is not None and req.user_id != state.session_user:
            raise ValidationFailed("session belongs to another user", details=[{"loc": ["body", "user_id"]}])
    user_id = req.user_id if req.user_id is not None else state.session_user
    model_call = None
    if req.model_call_id is not None:
        model_call = state.profile.model_call(req.model_call_id)
        if model_call is None:
            raise NotFound("model call not found", details={"model_call_id": req.model_call_id})
    budget = req.token_budget if req.token_budget is not None else (model_call.token_budget if model_call else 0)
    if budget > rt.settings.max_token_budget:
        raise too_large("token_budget", rt.settings.max_token_budget, budget, "tokens")
    if req.query is not None:
        query = req.query
    elif req.session_id is None:
        raise ValidationFailed("query is required without session_id", details=[{"loc": ["body", "query"]}])
    else:
        query = state.latest_question or ""
    return Resolved(user_id=user_id, query=query, budget=budget, model_call=model_call)


class _QueryVectors:
    """Query embeddings by text (a query is often asked again with another budget or model
    call, and prepared contexts embed the latest question the next query repeats)."""

    def __init__(self, size: int = 1024) -> None:
        self._data: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def peek(self, rt: Runtime, text: str) -> Any:
        """The remembered vector of ``text``, or None (never embeds)."""
        try:
            key = (rt.embedder.name, text)
        except Exception:  # no embedder: ``get`` logs it
            return None
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        return None

    def get(self, rt: Runtime, text: str) -> Any:
        try:
            embedder = rt.embedder
            key = (embedder.name, text)
            with self._lock:
                if key in self._data:
                    self._data.move_to_end(key)
                    return self._data[key]
            vec = embedder.embed_query(text)
        except Exception:  # no model: retrieval still works lexically
            log.exception("query embedding failed; searching without vectors")
            return None
        with self._lock:
            self._data[key] = vec
            while len(self._data) > self._size:
                self._data.popitem(last=False)
        return vec


query_vectors = _QueryVectors()


def _embedder_name(rt: Runtime) -> str:
    return rt.settings.embedder


def _k_turns(req: QueryContextRequest, budget: int) -> int:
    return req.k if req.k is not None else max(10, min(200, budget // 25))


def _k_memories(req: QueryContextRequest, budget: int) -> int:
    return req.k if req.k is not None else max(5, min(100, budget // 40))


def load_session_materials(conn: Conn, tenant_id: str, req: QueryContextRequest, state: QueryState,
                           res: Resolved) -> Materials:
    """Summary, recent turns (after what the summary covers) and tool calls of the session."""
    wanted = set(req.include) if req.include is not None else set(SECTIONS)
    if req.session_id is None:
        return Materials()
    summary = None
    recent: list[Turn] = []
    tools: list[ToolCall] = []
    if "summary" in wanted:
        row = conn.execute("select summary, summary_covers_seq from context_windows"
                           " where tenant_id = %s and session_id = %s", [tenant_id, req.session_id]).fetchone()
        if row and row["summary"]:
            summary = Snippet(type="summary", content=row["summary"], score=1.0,
                              token_count=count_tokens(row["summary"]),
                              provenance=Provenance(session_id=req.session_id, seq=row["summary_covers_seq"]))
    if "history" in wanted:
        recent = turns.recent(conn, tenant_id, req.session_id, limit=max(10, min(200, res.budget // 30)),
                              after_seq=state.summary_covers_seq)
    if "tool" in wanted:
        tools = tool_calls.for_session(conn, tenant_id, req.session_id, limit=TOOL_CALLS_LIMIT)
    return Materials(summary=summary, recent=recent, tools=tools)


def _retrieves(req: QueryContextRequest, res: Resolved) -> bool:
    wanted = set(req.include) if req.include is not None else set(SECTIONS)
    return bool(res.query.strip()) and bool({"history", "memory"} & wanted)


def embed_query_soon(rt: Runtime, text: str) -> Any:
    """The query's vector: at once when it is remembered, else a future on the embedding pool,
    so the model runs while the session is read and the lexical statements run (the turn
    search reads the vector only once it needs it; docs/query.md)."""
    known = query_vectors.peek(rt, text)
    return known if known is not None else _embed_pool.submit(query_vectors.get, rt, text)


def retrieve(rt: Runtime, tenant_id: str, req: QueryContextRequest, res: Resolved,
             session: Materials, vector: Any = None) -> Materials:
    """Earlier turns (any session of the user) and memories for the query. The two searches
    run concurrently: both wait mostly on the database. ``vector``: from ``embed_query_soon``
    (embedded here when not given)."""
    wanted = set(req.include) if req.include is not None else set(SECTIONS)
    if not _retrieves(req, res):
        return session
    search = SearchQuery.build(res.query, vector if vector is not None else embed_query_soon(rt, res.query))
    scope = Scope(tenant_id=tenant_id, agent_id=req.agent_id, user_id=res.user_id)
    backend = search_backend(rt)
    memories_future = None
    if "memory" in wanted:
        memories_future = _search_pool.submit(backend.search_memories, scope, search, k=_k_memories(req, res.budget))
    retrieved: list[Scored] = []
    if "history" in wanted and res.user_id is not None:
        # ask for as many more as there are recent turns: those are dropped as duplicates
        retrieved = backend.search_turns(scope, search, k=_k_turns(req, res.budget) + len(session.recent)).hits
    memories = memories_future.result() if memories_future is not None else []
    return Materials(summary=session.summary, memories=memories, recent=session.recent, retrieved=retrieved,
                     tools=session.tools)


_search_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="context-search")
# A pool of its own: memory searches wait for query vectors, so they must never queue behind them.
_embed_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="context-embed")


def _cache_key(rt: Runtime, tenant_id: str, req: QueryContextRequest, state: QueryState, res: Resolved) -> str:
    return context_key(
        tenant_id, req.agent_id, res.user_id, req.session_id, window_version=state.window_version,
        user_generation=state.user_generation, agent_generation=state.agent_generation,
        agent_version=state.agent_version, query=res.query, token_budget=res.budget,
        model_call_id=req.model_call_id, include=req.include, k=req.k, embedder=_embedder_name(rt))


def _cache_get(rt: Runtime, key: str) -> bytes | None:
    try:
        return rt.cache.get(key)
    except Exception:  # a cache outage costs latency, never an answer
        log.exception("context cache get failed")
        return None


def _cache_set(rt: Runtime, key: str, value: bytes) -> None:
    try:
        rt.cache.set(key, value, rt.settings.cache_ttl_s)
    except Exception:
        log.exception("context cache set failed")


def context_for(rt: Runtime, tenant_id: str, req: QueryContextRequest, *, count: bool = True,
                ) -> QueryContextResponse:
    """The use case without authorization (the caller checked it): cache, else assemble.
    ``count=False`` keeps preparation out of the cache hit/miss metrics (they measure what
    agents experience)."""
    with rt.db.tenant(tenant_id) as conn:
        state = load_state(conn, tenant_id, req)
        res = resolve(rt, req, state)
        key = _cache_key(rt, tenant_id, req, state, res)
        cached = _cache_get(rt, key)
        if cached is not None:
            if count:
                metrics.add_metric(name="ContextCacheHit", unit=MetricUnit.Count, value=1)
            return QueryContextResponse.model_validate_json(cached).model_copy(update={"cache": "hit"})
        vector = embed_query_soon(rt, res.query) if _retrieves(req, res) else None
        session = load_session_materials(conn, tenant_id, req, state, res)
    materials = dedupe_materials(retrieve(rt, tenant_id, req, res, session, vector), res.budget)
    mc = res.model_call
    out = assemble(materials, res.budget, template=mc.template if mc else None,
                   shares=mc.section_shares if mc else None, include=req.include)
    response = QueryContextResponse(
        context=out.context, sections=out.sections, snippets=out.snippets, token_count=out.token_count,
        token_budget=res.budget, cache="miss", window_version=state.window_version, query=res.query,
        model_call_id=req.model_call_id)
    if count:
        metrics.add_metric(name="ContextCacheMiss", unit=MetricUnit.Count, value=1)
    _cache_set(rt, key, response.model_dump_json().encode())
    return response


def query_context(rt: Runtime, principal: Principal, req: QueryContextRequest) -> QueryContextResponse:
    require(principal, Action.read)
    require_agent(principal, req.agent_id)
    return context_for(rt, principal.tenant_id, req)

