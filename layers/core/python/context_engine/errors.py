"""Domain exceptions. One place (``api.errors``) maps them to HTTP; the core never
builds HTTP responses and nobody matches on message strings."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base class: ``code`` is the stable machine-readable error code clients see."""

    code = "error"
    status = 500

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class BadRequest(DomainError):
    code, status = "bad_request", 400


class Unauthorized(DomainError):
    code, status = "unauthorized", 401


class Forbidden(DomainError):
    code, status = "forbidden", 403


class NotFound(DomainError):
    """Also used for other tenants' resources: they answer 404, never 403."""

    code, status = "not_found", 404


class Conflict(DomainError):
    code, status = "conflict", 409


class PayloadTooLarge(DomainError):
    code, status = "payload_too_large", 413


class ValidationFailed(DomainError):
    code, status = "validation_error", 422


class RateLimited(DomainError):
    code, status = "rate_limited", 429

    def __init__(self, message: str, *, retry_after_s: int, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.retry_after_s = retry_after_s


class DependencyUnavailable(DomainError):
    code, status = "unavailable", 503


def too_large(field: str, limit: int, actual: int, unit: str = "characters") -> PayloadTooLarge:
    return PayloadTooLarge(
        f"{field} is too large: {actual} {unit}, limit {limit}",
        details=[{"loc": field.split("."), "limit": limit, "actual": actual, "unit": unit}],
    )
