"""Prepared contexts: assemble ahead, after a write, what the agent will ask for next.

The next query's text is not known ahead, so a model call's *default* context is defined
instead: a QueryContext with ``model_call_id`` and no ``query`` is assembled for the
session's latest question, with the model call's own token budget, template and shares.
``prepare_contexts`` assembles exactly those requests for every model call of the session's
agent and caches them under the keys the requests will compute; the agent's next
``{agent_id, session_id, model_call_id}`` request (no query, budget, include or k) is then
a cache hit. A later write bumps the window version or a generation, so a prepared
context is never served stale — it is just not reachable any more.

Called by the index consumer after ``index_turn`` (so the new turn is searchable when the
context is assembled); idempotent — a second call finds the contexts cached and does nothing.
"""

from __future__ import annotations

import logging

from aws_lambda_powertools.metrics import MetricUnit

from context_engine.models.api import QueryContextRequest
from context_engine.observability.powertools import metrics
from context_engine.repos import agents, sessions
from context_engine.runtime import Runtime
from context_engine.services.context import context_for

log = logging.getLogger(__name__)


def default_requests(rt: Runtime, tenant_id: str, session_id: str) -> list[QueryContextRequest]:
    """The default-query requests of every model call of the session's agent (none if the
    agent turned preparation off, has no model calls, or the session is gone)."""
    with rt.db.tenant(tenant_id) as conn:
        session = sessions.get(conn, tenant_id, session_id)
        if session is None:
            return []
        profile = agents.profile(conn, tenant_id, session.agent_id)
    if not profile.prepare_contexts:
        return []
    return [QueryContextRequest(agent_id=session.agent_id, user_id=session.user_id, session_id=session_id,
                                model_call_id=mc.id) for mc in profile.model_calls]


def prepare_contexts(rt: Runtime, tenant_id: str, session_id: str) -> int:
    """Assemble and cache the default context of each model call; returns how many were
    assembled now (0 when all were already cached)."""
    prepared = 0
    for req in default_requests(rt, tenant_id, session_id):
        response = context_for(rt, tenant_id, req, count=False)
        if response.cache == "miss":
            prepared += 1
    if prepared:
        metrics.add_metric(name="ContextsPrepared", unit=MetricUnit.Count, value=prepared)
    log.info("contexts prepared", extra={"session_id": session_id, "prepared": prepared})
    return prepared
