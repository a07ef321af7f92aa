"""HTTP API: every wired route, the authorizer everywhere except the public routes, logs, throttling."""

from __future__ import annotations

import json
from typing import Any

import pytest
from infra_cdk.constructs.api import parse_route

from context_engine.wiring import FUNCTIONS, HTTP_ROUTES, PUBLIC_ROUTES

pytestmark = pytest.mark.infra


def routes_by_key(synth: Any) -> dict[str, dict[str, Any]]:
    return {r["Properties"]["RouteKey"]: r["Properties"] for r in synth.of_type("AWS::ApiGatewayV2::Route").values()}


def integration_function(synth: Any, route: dict[str, Any]) -> str:
    """Logical ID of the Lambda function a route's integration invokes."""
    integration_id = route["Target"]["Fn::Join"][1][1]["Ref"]
    uri = synth.resources[integration_id]["Properties"]["IntegrationUri"]
    return str(uri["Fn::GetAtt"][0])


def test_every_wired_route_exists_and_targets_its_function(synth: Any) -> None:
    routes = routes_by_key(synth)
    assert set(routes) == set(HTTP_ROUTES)
    for key, function_name in HTTP_ROUTES.items():
        expected = synth.logical_id(synth.stack.functions.by_name[function_name])
        assert integration_function(synth, routes[key]) == expected, key


def test_non_public_routes_use_the_lambda_authorizer_and_public_ones_do_not(synth: Any) -> None:
    (authorizer_id,) = synth.of_type("AWS::ApiGatewayV2::Authorizer")
    routes = routes_by_key(synth)
    assert PUBLIC_ROUTES and set(HTTP_ROUTES) > PUBLIC_ROUTES
    for key, route in routes.items():
        if key in PUBLIC_ROUTES:
            assert route["AuthorizationType"] == "NONE", key
            assert "AuthorizerId" not in route, key
        else:
            assert route["AuthorizationType"] == "CUSTOM", key
            assert route["AuthorizerId"] == {"Ref": authorizer_id}, key


def test_authorizer_uses_simple_responses_on_the_authorization_header_with_a_cache(synth: Any) -> None:
    (authorizer,) = synth.of_type("AWS::ApiGatewayV2::Authorizer").values()
    props = authorizer["Properties"]
    assert props["AuthorizerType"] == "REQUEST"
    assert props["EnableSimpleResponses"] is True
    assert props["AuthorizerPayloadFormatVersion"] == "2.0"
    assert props["IdentitySource"] == ["$request.header.Authorization"]
    assert props["AuthorizerResultTtlInSeconds"] == 60
    authorizer_fn = synth.logical_id(synth.stack.functions.by_name["authorizer"])
    assert authorizer_fn in json.dumps(props["AuthorizerUri"])
    assert "authorizer" in FUNCTIONS and "authorizer" not in HTTP_ROUTES.values()


def test_stage_has_json_access_logs_without_headers_and_throttling(synth: Any) -> None:
    (stage,) = synth.of_type("AWS::ApiGatewayV2::Stage").values()
    props = stage["Properties"]
    assert props["StageName"] == "$default" and props["AutoDeploy"] is True
    log_group = props["AccessLogSettings"]["DestinationArn"]["Fn::GetAtt"][0]
    assert synth.resources[log_group]["Properties"]["RetentionInDays"] == 30
    fields = json.loads(props["AccessLogSettings"]["Format"])
    assert fields["requestId"] == "$context.requestId" and fields["status"] == "$context.status"
    assert not any("header" in str(v).lower() for v in fields.values())
    assert props["DefaultRouteSettings"] == {"ThrottlingBurstLimit": 200, "ThrottlingRateLimit": 100}


def test_route_keys_parse() -> None:
    method, path = parse_route("DELETE /v1/sessions/{session_id}/turns/{turn_id}")
    assert method.value == "DELETE" and path == "/v1/sessions/{session_id}/turns/{turn_id}"
    with pytest.raises(ValueError):
        parse_route("GET v1/health")
