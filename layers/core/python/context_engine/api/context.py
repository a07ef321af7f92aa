"""Request-scoped helpers: the caller (from the authorizer's context) and responses."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from pydantic import BaseModel

from context_engine.errors import Unauthorized
from context_engine.models.domain import Principal, Role


def principal_of(app: APIGatewayHttpResolver) -> Principal:
    """API Gateway puts the Lambda authorizer's context at requestContext.authorizer.lambda;
    the local gateway does the same. Handlers never see the key itself."""
    ctx: dict[str, Any] = (
        (app.current_event.raw_event.get("requestContext") or {}).get("authorizer") or {}
    ).get("lambda") or {}
    try:
        return Principal(tenant_id=ctx["tenant_id"], key_id=ctx["key_id"], role=Role(ctx["role"]),
                         agent_id=ctx.get("agent_id") or None)
    except (KeyError, ValueError) as exc:
        raise Unauthorized("missing or invalid credentials") from exc


def json_response(model: BaseModel | dict[str, Any], status: int = 200,
                  headers: dict[str, str] | None = None) -> Response[Any]:
    """The body stays a model: powertools validates it against the view's ``Response[Model]``
    annotation (which also documents it in OpenAPI) and serialises it."""
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=model,
                    headers=headers or {})
