"""The one mapping from exceptions to HTTP responses: ``{error: {code, message, details?}}``.

Clients never see a stack trace; a 500 carries the request id so an operator can find
the logged exception.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from context_engine.errors import DomainError, RateLimited

logger = Logger(service="context-engine", child=True)


def error_response(status: int, code: str, message: str, details: Any = None,
                   headers: dict[str, str] | None = None) -> Response:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    if details is not None:
        body["error"]["details"] = details
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON,
                    body=json.dumps(body, default=str), headers=headers or {})


def _field_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Field paths as lists, e.g. ``["body", "question"]`` or ``["query", "limit"]``."""
    return [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in errors]


def install(app: APIGatewayHttpResolver) -> None:
    @app.exception_handler(DomainError)
    def _domain(exc: DomainError) -> Response:
        headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, RateLimited) else None
        if exc.status >= 500:
            logger.exception("domain error", extra={"code": exc.code})
        return error_response(exc.status, exc.code, exc.message, exc.details, headers)

    @app.exception_handler(RequestValidationError)
    def _validation(exc: RequestValidationError) -> Response:
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(400, "malformed_json", "request body is not valid JSON")
        details = _field_errors(errors)
        fields = ", ".join(".".join(str(p) for p in d["loc"]) for d in details[:5])
        return error_response(422, "validation_error", f"invalid request: {fields}", details)

    @app.not_found
    def _not_found(_: Exception) -> Response:
        return error_response(404, "route_not_found", "no such route")

    @app.exception_handler(Exception)
    def _unexpected(exc: Exception) -> Response:
        logger.exception("unhandled error")
        request_id = app.current_event.request_context.request_id if app.current_event else None
        return error_response(500, "internal_error", "internal error", {"request_id": request_id})
