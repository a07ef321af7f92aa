"""The VPC: two AZs, no NAT and no internet gateway by default, endpoints for every AWS API used."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytestmark = pytest.mark.infra

INTERFACE_SERVICES = {"secretsmanager", "events", "sqs", "bedrock-runtime", "xray"}


def service_name(endpoint: dict[str, Any]) -> str:
    """``com.amazonaws.<region>.<service>`` → ``<service>`` (the template joins the region in)."""
    return json.dumps(endpoint["Properties"]["ServiceName"]).rsplit(".", 1)[-1].strip('"]}')


def test_two_azs_two_tiers_no_internet_path(synth: Any) -> None:
    subnets = synth.of_type("AWS::EC2::Subnet")
    assert len(subnets) == 4  # app and data tiers in two AZs
    assert {s["Properties"]["MapPublicIpOnLaunch"] for s in subnets.values()} == {False}
    assert synth.of_type("AWS::EC2::NatGateway") == {}
    assert synth.of_type("AWS::EC2::InternetGateway") == {}
    routes = synth.of_type("AWS::EC2::Route")
    assert not [r for r in routes.values() if r["Properties"].get("DestinationCidrBlock") == "0.0.0.0/0"]


def test_vpc_endpoints_cover_the_apis_the_functions_call(synth: Any) -> None:
    endpoints = synth.of_type("AWS::EC2::VPCEndpoint").values()
    interface = {service_name(e) for e in endpoints if e["Properties"].get("VpcEndpointType") == "Interface"}
    gateway = {service_name(e) for e in endpoints if e["Properties"].get("VpcEndpointType") == "Gateway"}
    assert interface >= INTERFACE_SERVICES
    assert gateway == {"s3"}
    for endpoint in endpoints:
        if endpoint["Properties"].get("VpcEndpointType") == "Interface":
            assert endpoint["Properties"]["PrivateDnsEnabled"] is True


def test_flow_logs_and_a_closed_default_security_group(synth: Any) -> None:
    assert len(synth.of_type("AWS::EC2::FlowLog")) == 1
    assert len(synth.of_type("Custom::VpcRestrictDefaultSG")) == 1


def test_add_interface_endpoint_is_idempotent(synth: Any) -> None:
    from aws_cdk import aws_ec2 as ec2

    network = synth.stack.network
    existing = network.endpoints["Sqs"]
    assert network.add_interface_endpoint("Sqs", ec2.InterfaceVpcEndpointAwsService.SQS) is existing
