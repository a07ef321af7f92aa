"""A local stand-in for API Gateway HTTP API: turns each HTTP request into an API Gateway
v2 event, runs the Lambda authorizer, then calls the function that ``wiring.HTTP_ROUTES``
names — the very handler modules deployed to Lambda.

Like API Gateway: routes match on method + path template, a missing route is 404, the
payload limit is 10 MB, and the authorizer's context lands at
``requestContext.authorizer.lambda``. Unlike API Gateway (documented in README): a
rejected key answers 401 with our error body (API Gateway answers 403 ``Forbidden``).
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs

from context_engine.wiring import FUNCTIONS, HTTP_ROUTES, PUBLIC_ROUTES

GATEWAY_MAX_PAYLOAD = 10 * 1024 * 1024


def functions_dir() -> Path:
    env = os.environ.get("CONTEXT_ENGINE_FUNCTIONS_DIR")
    if env:
        return Path(env)
    # layers/core/python/context_engine/local/gateway.py → repository root
    return Path(__file__).resolve().parents[5] / "functions"


_loaded: dict[str, ModuleType] = {}


def load_function(name: str) -> ModuleType:
    """Import ``functions/<name>/handler.py`` under a unique module name, once."""
    if name not in _loaded:
        path = functions_dir() / name / "handler.py"
        spec = importlib.util.spec_from_file_location(f"ce_function_{name}", path)
        if spec is None or spec.loader is None:
            raise ImportError(f"no handler for function {name} at {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        _loaded[name] = module
    return _loaded[name]


@dataclass
class LocalLambdaContext:
    """The attributes of a Lambda context object that powertools reads."""

    function_name: str
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"
    log_group_name: str = "local"
    log_stream_name: str = "local"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:local:000000000000:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@dataclass(frozen=True)
class _Route:
    key: str
    method: str
    pattern: re.Pattern[str]
    function: str


def _compile(key: str, function: str) -> _Route:
    method, path = key.split(" ", 1)
    regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(path))
    return _Route(key, method, re.compile(f"^{regex}$"), function)


@dataclass
class GatewayResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def _error(status: int, code: str, message: str) -> GatewayResponse:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return GatewayResponse(status, {"content-type": "application/json"}, body)


class LocalGateway:
    def __init__(self) -> None:
        self.routes = [_compile(k, f) for k, f in HTTP_ROUTES.items()]
        for name in {*HTTP_ROUTES.values(), "authorizer"}:
            if name not in FUNCTIONS:
                raise ValueError(f"route wired to unknown function {name}")
            load_function(name)

    def match(self, method: str, path: str) -> tuple[_Route, dict[str, str]] | None:
        for r in self.routes:
            if r.method == method:
                m = r.pattern.match(path)
                if m:
                    return r, m.groupdict()
        return None

    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: bytes,
               source_ip: str = "127.0.0.1") -> GatewayResponse:
        path, _, query = raw_path.partition("?")
        if len(body) > GATEWAY_MAX_PAYLOAD:
            return _error(413, "payload_too_large", "request exceeds the gateway's 10 MB limit")
        found = self.match(method.upper(), path)
        if found is None:
            return _error(404, "route_not_found", "no such route")
        route, params = found
        event = self._event(route, method.upper(), path, query, headers, body, params, source_ip)
        if route.key not in PUBLIC_ROUTES:
            auth = self._authorize(event)
            if auth is None:
                return _error(401, "unauthorized", "missing or invalid API key")
            event["requestContext"]["authorizer"] = {"lambda": auth}
        result = load_function(route.function).handler(event, LocalLambdaContext(route.function))
        out_body = result.get("body") or ""
        raw = base64.b64decode(out_body) if result.get("isBase64Encoded") else out_body.encode()
        out_headers = {k.lower(): str(v) for k, v in (result.get("headers") or {}).items()}
        return GatewayResponse(int(result.get("statusCode", 200)), out_headers, raw)

    def _authorize(self, event: dict[str, Any]) -> dict[str, Any] | None:
        if not event["headers"].get("authorization"):
            return None
        auth_event = {**event, "type": "REQUEST", "identitySource": [event["headers"]["authorization"]],
                      "routeArn": f"arn:aws:execute-api:local:000000000000:local/$default/{event['routeKey']}"}
        result = load_function("authorizer").handler(auth_event, LocalLambdaContext("authorizer"))
        return result.get("context") if result.get("isAuthorized") else None

    @staticmethod
    def _event(route: _Route, method: str, path: str, query: str, headers: dict[str, str], body: bytes,
               params: dict[str, str], source_ip: str) -> dict[str, Any]:
        try:
            text, is_b64 = body.decode("utf-8"), False
        except UnicodeDecodeError:
            text, is_b64 = base64.b64encode(body).decode(), True
        qs = {k: ",".join(v) for k, v in parse_qs(query, keep_blank_values=True).items()}
        now = time.time()
        return {
            "version": "2.0",
            "routeKey": route.key,
            "rawPath": path,
            "rawQueryString": query,
            "headers": {k.lower(): v for k, v in headers.items()},
            "queryStringParameters": qs or None,
            "pathParameters": params or None,
            "requestContext": {
                "accountId": "000000000000", "apiId": "local", "domainName": "localhost", "domainPrefix": "localhost",
                "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": source_ip,
                         "userAgent": headers.get("user-agent", "")},
                "requestId": str(uuid.uuid4()), "routeKey": route.key, "stage": "$default",
                "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)), "timeEpoch": int(now * 1000),
            },
            "body": text if body else None,
            "isBase64Encoded": is_b64,
        }
