"""API Gateway HTTP API Lambda authorizer (simple responses): API key → tenant, role, agent scope."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from context_engine.auth import authenticate
from context_engine.observability.powertools import logger
from context_engine.runtime import get_runtime


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    principal = authenticate(get_runtime().db, headers.get("authorization"))
    if principal is None:
        logger.info("api key rejected")
        return {"isAuthorized": False}
    logger.append_keys(tenant_id=principal.tenant_id, key_id=principal.key_id)
    return {"isAuthorized": True, "context": {
        "tenant_id": principal.tenant_id, "key_id": principal.key_id, "role": principal.role.value,
        "agent_id": principal.agent_id or ""}}
