"""Tool-call arguments, results and errors pass the tenant's privacy policy like turns do."""

from __future__ import annotations

import json

from context_engine.governance.models import PutTenantRequest
from context_engine.models.api import RegisterToolChainRequest, UpdateToolResultRequest
from context_engine.privacy.policy import PrivacyAction, PrivacyPolicy
from context_engine.services import tenants, tools

EMAIL = "jane.roe@example.org"
CARD = "4111 1111 1111 1111"


def stored_calls(rt, tenant: str) -> str:  # type: ignore[no-untyped-def]
    with rt.db.tenant(tenant) as conn:
        rows = conn.execute("select arguments, result, error from tool_calls where tenant_id = %s", [tenant])
        return json.dumps([dict(r) for r in rows.fetchall()])


def test_policy_applies_to_nested_tool_json(runtime, admin) -> None:
    tenants.put_settings(runtime, admin, PutTenantRequest(privacy_policy=PrivacyPolicy.uniform(PrivacyAction.REDACT)))
    tools.register_chain(runtime, admin, "s1", RegisterToolChainRequest(
        agent_id="a", user_id="u", calls=[
            {"call_id": "c1", "name": "crm", "arguments": {"to": EMAIL, "n": 3, "tags": ["x", f"card {CARD}"]}},
            {"call_id": "c2", "name": "pay"}]))
    tools.update_result(runtime, admin, "s1", "c1", UpdateToolResultRequest(
        status="succeeded", result={"contact": {"email": EMAIL, "score": 0.5}}))
    tools.update_result(runtime, admin, "s1", "c2", UpdateToolResultRequest(status="failed", error=f"declined {CARD}"))
    stored = stored_calls(runtime, admin.tenant_id)
    assert EMAIL not in stored and CARD not in stored
    assert "[EMAIL]" in stored and "[CARD]" in stored
    assert '"n": 3' in stored and '"score": 0.5' in stored  # non-string values untouched


def test_default_policy_keeps_tool_json_as_written(runtime, admin) -> None:
    tools.register_chain(runtime, admin, "s1", RegisterToolChainRequest(
        agent_id="a", user_id="u", calls=[{"call_id": "c1", "name": "crm", "arguments": {"to": EMAIL}}]))
    assert EMAIL in stored_calls(runtime, admin.tenant_id)
