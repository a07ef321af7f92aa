"""API Gateway HTTP API: the routes of ``wiring.HTTP_ROUTES``, a Lambda authorizer on every
route except ``wiring.PUBLIC_ROUTES``, JSON access logs and stage throttling.

The authorizer answers with simple responses; API Gateway caches an answer per
``Authorization`` header for ``authorizer_cache_ttl_s`` (so a revoked key keeps working for
at most that long, and a burst from one key costs one authorizer call).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import jsii
from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra_cdk.config import StackConfig
from infra_cdk.nag import acknowledge

# One JSON object per request. No headers: the Authorization header never reaches the logs.
ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "ip": "$context.identity.sourceIp",
    "requestTime": "$context.requestTime",
    "routeKey": "$context.routeKey",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "latencyMs": "$context.responseLatency",
    "integrationLatencyMs": "$context.integrationLatency",
    "integrationError": "$context.integrationErrorMessage",
    "authorizerError": "$context.authorizer.error",
    "tenantId": "$context.authorizer.tenant_id",
}


@jsii.implements(apigwv2.IAccessLogSettings)
class _AccessLogSettings:
    def __init__(self, log_group: logs.ILogGroup) -> None:
        self._destination = apigwv2.LogGroupLogDestination(log_group)

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw.AccessLogFormat:
        return apigw.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FIELDS))


def parse_route(route: str) -> tuple[apigwv2.HttpMethod, str]:
    """``"GET /v1/x/{id}"`` → (HttpMethod.GET, "/v1/x/{id}")."""
    method, _, path = route.partition(" ")
    if not path.startswith("/"):
        raise ValueError(f"route {route!r} is not 'METHOD /path'")
    return apigwv2.HttpMethod[method.upper()], path


class Api(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        functions: Mapping[str, lambda_.IFunction],
        authorizer_function: lambda_.IFunction,
        routes: Mapping[str, str],
        public_routes: frozenset[str],
        config: StackConfig,
    ) -> None:
        super().__init__(scope, construct_id)
        unknown = {fn for fn in routes.values() if fn not in functions}
        if unknown:
            raise ValueError(f"HTTP_ROUTES name functions that do not exist: {sorted(unknown)}")
        if not public_routes <= set(routes):
            raise ValueError(f"PUBLIC_ROUTES not in HTTP_ROUTES: {sorted(public_routes - set(routes))}")

        self.http_api = apigwv2.HttpApi(
            self, "HttpApi", description="Context Engine HTTP API v1", create_default_stage=False
        )
        self.access_logs = logs.LogGroup(
            self, "AccessLogs", retention=config.retention, removal_policy=RemovalPolicy.DESTROY
        )
        self.stage = apigwv2.HttpStage(
            self,
            "DefaultStage",
            http_api=self.http_api,
            stage_name="$default",
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(
                rate_limit=config.api_throttle_rate, burst_limit=config.api_throttle_burst
            ),
            access_log_settings=_AccessLogSettings(self.access_logs),
        )
        self.authorizer = authorizers.HttpLambdaAuthorizer(
            "ApiKeyAuthorizer",
            authorizer_function,
            response_types=[authorizers.HttpLambdaResponseType.SIMPLE],
            identity_source=["$request.header.Authorization"],
            results_cache_ttl=Duration.seconds(config.authorizer_cache_ttl_s),
        )
        # One integration per function, shared by its routes.
        targets = {
            name: integrations.HttpLambdaIntegration(f"{name}Integration", functions[name])
            for name in dict.fromkeys(routes.values())
        }
        self.routes: dict[str, apigwv2.HttpRoute] = {}
        for route, function_name in routes.items():
            method, path = parse_route(route)
            public = route in public_routes
            (created,) = self.http_api.add_routes(
                path=path,
                methods=[method],
                integration=targets[function_name],
                authorizer=apigwv2.HttpNoneAuthorizer() if public else self.authorizer,
            )
            if public:
                acknowledge(
                    created,
                    {
                        "AwsSolutions-APIG4": f"{route} is public by design (wiring.PUBLIC_ROUTES): "
                        "health check and the OpenAPI document carry no tenant data.",
                    },
                )
            self.routes[route] = created

    @property
    def url(self) -> str:
        return self.stage.url
