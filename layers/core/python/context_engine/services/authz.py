"""Who may do what. Roles come from the API key; a key may be scoped to one agent.

A resource outside the caller's tenant or agent scope is reported as not found (404),
never forbidden: its existence is not disclosed.
"""

from __future__ import annotations

from enum import StrEnum

from context_engine.errors import Forbidden, NotFound
from context_engine.models.domain import Principal, Role


class Action(StrEnum):
    read = "read"
    write = "write"
    configure = "configure"
    audit = "audit"
    govern = "govern"  # export / erase / retention


ALLOWED: dict[Action, frozenset[Role]] = {
    Action.read: frozenset({Role.admin, Role.writer, Role.reader}),
    Action.write: frozenset({Role.admin, Role.writer}),
    Action.configure: frozenset({Role.admin}),
    Action.audit: frozenset({Role.admin, Role.auditor}),
    Action.govern: frozenset({Role.admin}),
}


def require(principal: Principal, action: Action) -> None:
    if principal.role not in ALLOWED[action]:
        raise Forbidden(f"role '{principal.role.value}' may not {action.value}")


def require_agent(principal: Principal, agent_id: str, what: str = "agent") -> None:
    if not principal.can_access_agent(agent_id):
        raise NotFound(f"{what} not found")
