"""Context cache keys: everything a QueryContext answer depends on, and nothing else.

    ctx:{tenant}:{agent}:{user}:{session}:w{window}:g{user_gen}.{agent_gen}:p{agent_version}:{digest}

- ``window``: the session's context-window version (bumped by every write to the session,
  tool-call change, compression, delete) — a write invalidates by construction;
- ``user_gen`` / ``agent_gen``: the (agent, user) and agent-wide generations that triggers
  bump on any change to the user's turns (any session), private memories, tool calls, and the
  agent's shared memories (0003_search.sql). A query without a session depends on all of
  them, so a write anywhere for that (agent, user) makes its old keys unreachable;
- ``agent_version``: the agent profile (templates, budgets, shares);
- ``digest``: sha256 of the query text, budget, model call, sections, k, the embedding
  model and ``ASSEMBLY_VERSION`` (bumped when the assembly code changes what it renders, so a
  deploy never serves contexts rendered by the old code).

Nothing is ever deleted to invalidate; stale entries expire by TTL. Explicit deletes by prefix
(``session_prefix``/``user_prefix``) are for erasure, where content must leave the cache now.
Components are escaped so that ids containing ':' cannot make two scopes' keys collide.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

ASSEMBLY_VERSION = "a1"
PREFIX = "ctx"


def _c(value: str | None) -> str:
    """One key component: '-' for none; '%' and ':' percent-encoded (ids rarely have them, and
    then the escaped form equals the id, so prefix deletes by raw ids keep working)."""
    if value is None:
        return "-"
    return value.replace("%", "%25").replace(":", "%3A")


def user_prefix(tenant_id: str, agent_id: str, user_id: str | None) -> str:
    return f"{PREFIX}:{_c(tenant_id)}:{_c(agent_id)}:{_c(user_id)}:"


def session_prefix(tenant_id: str, agent_id: str, user_id: str | None, session_id: str | None) -> str:
    return f"{user_prefix(tenant_id, agent_id, user_id)}{_c(session_id)}:"


def context_key(
    tenant_id: str,
    agent_id: str,
    user_id: str | None,
    session_id: str | None,
    *,
    window_version: int,
    user_generation: int,
    agent_generation: int,
    agent_version: int,
    query: str,
    token_budget: int,
    model_call_id: str | None,
    include: Sequence[str] | None,
    k: int | None,
    embedder: str,
) -> str:
    body = json.dumps(
        [ASSEMBLY_VERSION, query, token_budget, model_call_id, sorted(include) if include is not None else None, k,
         embedder],
        ensure_ascii=False, separators=(",", ":"),
    )
    digest = hashlib.sha256(body.encode("utf-8")).hexdigest()[:32]
    return (f"{session_prefix(tenant_id, agent_id, user_id, session_id)}w{window_version}:"
            f"g{user_generation}.{agent_generation}:p{agent_version}:{digest}")
