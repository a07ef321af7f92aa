"""Least privilege across the whole template, and cdk-nag with no unacknowledged findings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytestmark = pytest.mark.infra

# The only actions AWS offers no resource scoping for, per service that assumes the role.
WILDCARD_RESOURCE_ALLOWED: dict[str, set[str]] = {
    "lambda.amazonaws.com": {
        # Lambda attaches a VPC function through ENIs created with the execution role.
        "ec2:CreateNetworkInterface",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSubnets",
        "ec2:DeleteNetworkInterface",
        "ec2:AssignPrivateIpAddresses",
        "ec2:UnassignPrivateIpAddresses",
        # Active tracing.
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        # Secrets Manager rotation (RotationSchedule grants it to the ce_app rotation function).
        "secretsmanager:GetRandomPassword",
        # The sandbox's lookup of the S3 prefix list (a read-only Describe, no resource scoping).
        "ec2:DescribeManagedPrefixLists",
    },
    "ecs-tasks.amazonaws.com": {
        # Pulling the sandbox image: ECR's token call has no resource type.
        "ecr:GetAuthorizationToken",
    },
    "states.amazonaws.com": {
        # Step Functions logging to CloudWatch Logs goes through log deliveries (AWS documents "*").
        "logs:CreateLogDelivery",
        "logs:GetLogDelivery",
        "logs:UpdateLogDelivery",
        "logs:DeleteLogDelivery",
        "logs:ListLogDeliveries",
        "logs:PutResourcePolicy",
        "logs:DescribeResourcePolicies",
        "logs:DescribeLogGroups",
        # Tracing.
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "xray:GetSamplingRules",
        "xray:GetSamplingTargets",
    },
}


def identity_statements(synth: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """Statements of identity policies (inline role policies, policies, managed policies).

    Resource policies are left out on purpose: in a KMS key policy ``Resource: "*"`` means
    the key itself."""
    for logical_id, resource in synth.resources.items():
        props = resource.get("Properties", {})
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            for statement in props["PolicyDocument"]["Statement"]:
                yield logical_id, statement
        elif resource["Type"] == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                for statement in policy["PolicyDocument"]["Statement"]:
                    yield logical_id, statement


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_no_statement_allows_every_action(synth: Any) -> None:
    offenders = [
        (lid, s)
        for lid, s in identity_statements(synth)
        if any(a == "*" or a.endswith(":*") for a in as_list(s["Action"]))
    ]
    assert offenders == []


def assumed_by(synth: Any, policy_logical_id: str) -> set[str]:
    """Services that assume the role(s) a policy belongs to."""
    resource = synth.resources[policy_logical_id]
    roles = (
        [r["Ref"] for r in resource["Properties"].get("Roles", [])]
        if resource["Type"] != "AWS::IAM::Role"
        else [policy_logical_id]
    )
    services: set[str] = set()
    for role in roles:
        for statement in synth.resources[role]["Properties"]["AssumeRolePolicyDocument"]["Statement"]:
            services.update(as_list(statement.get("Principal", {}).get("Service", [])))
    return services


def test_wildcard_resources_only_where_aws_requires_them(synth: Any) -> None:
    wildcard_actions: dict[str, set[str]] = {}
    for lid, statement in identity_statements(synth):
        if "*" in as_list(statement.get("Resource", [])):
            wildcard_actions.setdefault(lid, set()).update(as_list(statement["Action"]))
    assert wildcard_actions, "expected the ENI and X-Ray statements at least"
    for lid, granted in wildcard_actions.items():
        services = assumed_by(synth, lid)
        allowed = set().union(*(WILDCARD_RESOURCE_ALLOWED.get(s, set()) for s in services))
        assert granted <= allowed, (lid, services, granted - allowed)


def test_no_security_group_admits_the_internet(synth: Any) -> None:
    open_rules: list[tuple[str, Any]] = []
    for lid, resource in synth.of_type("AWS::EC2::SecurityGroup").items():
        for rule in resource["Properties"].get("SecurityGroupIngress", []):
            if rule.get("CidrIp") == "0.0.0.0/0" or rule.get("CidrIpv6") == "::/0":
                open_rules.append((lid, rule))
    for lid, resource in synth.of_type("AWS::EC2::SecurityGroupIngress").items():
        props = resource["Properties"]
        if props.get("CidrIp") == "0.0.0.0/0" or props.get("CidrIpv6") == "::/0":
            open_rules.append((lid, props))
    assert open_rules == []


def test_application_security_groups_have_no_open_egress(synth: Any) -> None:
    """Functions and admin tasks reach only the endpoints, the proxy, the cache or the cluster."""
    groups = [*synth.stack.functions.security_groups.values(), synth.stack.db_admin.security_group]
    for sg in groups:
        props = synth.resources[synth.logical_id(sg)]["Properties"]
        for rule in props.get("SecurityGroupEgress", []):
            assert rule.get("CidrIp") in ("10.40.0.0/16", "255.255.255.255/32"), rule


def test_cdk_nag_aws_solutions_has_no_unacknowledged_findings(synth: Any) -> None:
    from aws_cdk.assertions import Annotations, Match
    from cdk_nag import AwsSolutionsChecks

    report = AwsSolutionsChecks(synth.app).validate_scope(synth.stack)
    findings = [(v.rule_name, v.severity, [r.construct_path for r in v.violating_resources]) for v in report.violations]
    assert report.success, findings
    assert not [f for f in findings if f[1] == "error"], findings
    errors = Annotations.from_stack(synth.stack).find_error("*", Match.any_value())
    assert errors == [], errors
