"""Builds the powertools resolver for one function (only the routes wired to it), with
validation, the body-size limit and the error mapping."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from functools import cache
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware

from context_engine import __version__
from context_engine.api import errors, routes
from context_engine.settings import get_settings
from context_engine.wiring import HTTP_ROUTES


def _bind(app: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response:
    token = routes.current_app.set(app)
    try:
        return next_middleware(app)
    finally:
        routes.current_app.reset(token)


class ContextEngineResolver(APIGatewayHttpResolver):
    """Answers 413 before anything parses an oversized body (powertools' validation would
    otherwise run first and spend time and memory on it)."""

    def resolve(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        raw = event.get("body") or ""
        size = len(base64.b64decode(raw)) if event.get("isBase64Encoded") else len(raw.encode())
        limit = get_settings().max_body_bytes
        if size > limit:
            body = {"error": {"code": "payload_too_large", "message": f"request body is {size} bytes, limit {limit}",
                              "details": [{"loc": ["body"], "limit": limit, "actual": size, "unit": "bytes"}]}}
            return {"statusCode": 413, "headers": {"Content-Type": "application/json"},
                    "body": json.dumps(body), "isBase64Encoded": False}
        return super().resolve(event, context)


def build_api(function: str | None = None) -> APIGatewayHttpResolver:
    """The resolver for ``function`` (None: every route, e.g. for the OpenAPI document)."""
    app = ContextEngineResolver(enable_validation=True)
    for r in routes.REGISTRY:
        if function is None or HTTP_ROUTES.get(r.key) == function:
            app.route(r.resolver_rule, r.method, summary=r.summary)(r.view)
    app.use(middlewares=[_bind])
    errors.install(app)
    return app


@cache
def openapi_document() -> dict[str, Any]:
    full = build_api(None)
    schema: dict[str, Any] = full.get_openapi_schema(
        title="Context Engine API", version=__version__,
        description="The context layer an LLM agent calls before every model call.",
    ).model_dump(mode="json", by_alias=True, exclude_none=True)
    schema.setdefault("components", {})["securitySchemes"] = {
        "apiKey": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <api key>"}}
    schema["security"] = [{"apiKey": []}]
    return schema
