"""The OpenSearch domain (infra_cdk/constructs/search.py) on the shared template, whose fixture
selects ``searchBackend=opensearch`` (tests/infra/conftest.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from infra_cdk.config import StackConfig
from infra_cdk.constructs.search import HTTP_ACTIONS, SEARCH_FUNCTIONS, domain_name_for

from context_engine import wiring

pytestmark = pytest.mark.infra


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.fixture(scope="module")
def domain(synth: Any) -> tuple[str, dict[str, Any]]:
    domains = synth.of_type("AWS::OpenSearchService::Domain")
    assert len(domains) == 1, list(domains)
    ((lid, resource),) = domains.items()
    assert lid == synth.logical_id(synth.stack.search.domain)
    return lid, resource


def props(domain: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return domain[1]["Properties"]


def getatt(synth: Any, construct: Any, attr: str = "Arn") -> dict[str, Any]:
    return {"Fn::GetAtt": [synth.logical_id(construct), attr]}


# --- config ----------------------------------------------------------------------------------
def test_postgres_is_the_default_and_the_backend_is_validated() -> None:
    assert StackConfig().search_backend == "postgres" and not StackConfig().opensearch
    assert StackConfig(search_backend="opensearch").opensearch
    with pytest.raises(ValueError, match="searchBackend"):
        StackConfig(search_backend="elasticsearch")
    with pytest.raises(ValueError, match="searchDataNodes"):
        StackConfig(search_data_nodes=3)
    with pytest.raises(ValueError, match="searchMasterNodes"):
        StackConfig(search_master_nodes=2)


def test_cdk_json_defaults_match_the_config() -> None:
    from infra_cdk.app import cdk_json_context

    ctx, d = cdk_json_context(), StackConfig()
    assert ctx["searchBackend"] == d.search_backend == "postgres"
    assert (ctx["searchDataNodes"], ctx["searchMasterNodes"], ctx["searchVolumeGb"]) == (
        d.search_data_nodes, d.search_master_nodes, d.search_volume_gb)
    assert (ctx["searchInstanceType"], ctx["searchMasterInstanceType"]) == (
        d.search_instance_type, d.search_master_instance_type)


def test_domain_names_are_valid() -> None:
    assert domain_name_for("ContextEngine") == "contextengine-search"
    for stack in ("ContextEngine", "Context-Engine-Production-EU-West-1", "9Lives", "ce"):
        name = domain_name_for(stack)
        assert 3 <= len(name) <= 28 and name[0].isalpha() and name == name.lower(), name


# --- the domain ------------------------------------------------------------------------------
def test_engine_is_opensearch_2_with_knn(domain: Any) -> None:
    version = props(domain)["EngineVersion"]
    assert version.startswith("OpenSearch_2."), version  # k-NN plugin with the Lucene engine
    assert domain[1]["UpdatePolicy"] == {"EnableVersionUpgrade": True}  # upgrades in place


def test_two_az_zone_awareness_in_the_data_subnets(synth: Any, domain: Any) -> None:
    cluster = props(domain)["ClusterConfig"]
    assert cluster["ZoneAwarenessEnabled"] is True
    assert cluster["ZoneAwarenessConfig"] == {"AvailabilityZoneCount": 2}
    assert cluster["InstanceCount"] % 2 == 0 and cluster["InstanceCount"] >= 2
    assert cluster["MultiAZWithStandbyEnabled"] is False  # needs three AZs; the VPC has two
    assert cluster["DedicatedMasterEnabled"] is True and cluster["DedicatedMasterCount"] == 3
    vpc = props(domain)["VPCOptions"]
    data = synth.stack.network.vpc.select_subnets(subnet_group_name="data").subnets
    assert vpc["SubnetIds"] == [{"Ref": synth.logical_id(s)} for s in data] and len(data) == 2
    assert vpc["SecurityGroupIds"] == [getatt(synth, synth.stack.search.security_group, "GroupId")]


def test_encrypted_at_rest_and_in_transit_https_only_tls12(domain: Any) -> None:
    p = props(domain)
    assert p["EncryptionAtRestOptions"]["Enabled"] is True
    assert p["NodeToNodeEncryptionOptions"] == {"Enabled": True}
    assert p["DomainEndpointOptions"]["EnforceHTTPS"] is True
    assert p["DomainEndpointOptions"]["TLSSecurityPolicy"] == "Policy-Min-TLS-1-2-2019-07"


def test_no_public_access_and_no_basic_auth(domain: Any) -> None:
    p = props(domain)
    assert "VPCOptions" in p  # a VPC domain has no public endpoint
    assert "AdvancedSecurityOptions" not in p or not p["AdvancedSecurityOptions"].get("InternalUserDatabaseEnabled")
    assert "CognitoOptions" not in p


def test_access_policy_admits_only_the_search_functions_roles(synth: Any, domain: Any) -> None:
    statements = props(domain)["AccessPolicies"]["Statement"]
    assert [s["Effect"] for s in statements] == ["Allow"]
    (statement,) = statements
    principals = as_list(statement["Principal"]["AWS"])
    assert principals == [getatt(synth, synth.stack.functions.roles[n]) for n in SEARCH_FUNCTIONS]
    assert "*" not in json.dumps(principals)
    assert sorted(as_list(statement["Action"])) == sorted(HTTP_ACTIONS)
    resource = json.dumps(statement["Resource"])
    assert f":domain/{props(domain)['DomainName']}/*" in resource
    assert "Condition" not in statement


def test_security_group_admits_443_only_from_the_search_functions(synth: Any) -> None:
    sg = synth.logical_id(synth.stack.search.security_group)
    sg_props = synth.resources[sg]["Properties"]
    assert not sg_props.get("SecurityGroupIngress")  # no CIDR rules at all
    ingress = [r["Properties"] for r in synth.of_type("AWS::EC2::SecurityGroupIngress").values()
               if r["Properties"]["GroupId"] == {"Fn::GetAtt": [sg, "GroupId"]}]
    expected = [getatt(synth, synth.stack.functions.security_groups[n], "GroupId") for n in SEARCH_FUNCTIONS]
    assert sorted(map(json.dumps, (r["SourceSecurityGroupId"] for r in ingress))) == sorted(map(json.dumps, expected))
    assert {(r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in ingress} == {("tcp", 443, 443)}
    # the domain initiates nothing: only CDK's placeholder egress rule
    assert [e["CidrIp"] for e in sg_props["SecurityGroupEgress"]] == ["255.255.255.255/32"]


def test_slow_and_error_logs_go_to_cloudwatch_with_retention(synth: Any, domain: Any) -> None:
    publishing = props(domain)["LogPublishingOptions"]
    assert set(publishing) == {"SEARCH_SLOW_LOGS", "INDEX_SLOW_LOGS", "ES_APPLICATION_LOGS"}
    expected_days = synth.stack.config.log_retention_days
    log_groups = []
    for option in publishing.values():
        assert option["Enabled"] is True
        lid = option["CloudWatchLogsLogGroupArn"]["Fn::GetAtt"][0]
        group = synth.resources[lid]
        assert group["Type"] == "AWS::Logs::LogGroup"
        assert group["Properties"]["RetentionInDays"] == expected_days
        log_groups.append(lid)
    # The service may write there through a native resource policy (no Lambda-backed custom resource),
    # created before the domain.
    (policy_lid,) = [k for k, v in synth.of_type("AWS::Logs::ResourcePolicy").items()
                     if all(g in json.dumps(v) for g in log_groups)]
    assert policy_lid in as_list(domain[1]["DependsOn"])
    document = json.dumps(synth.resources[policy_lid]["Properties"]["PolicyDocument"])
    assert "es.amazonaws.com" in document and "aws:SourceAccount" in document


def test_removal_policy(domain: Any) -> None:
    # Derived from Aurora (snapshotted on deletion); holds personal data that must not outlive the stack.
    assert domain[1]["DeletionPolicy"] == "Delete"
    assert domain[1]["UpdateReplacePolicy"] == "Delete"


# --- who may use it --------------------------------------------------------------------------
def opensearch_statements(synth: Any) -> dict[str, list[dict[str, Any]]]:
    """Identity statements with any es: action, by role logical id."""
    out: dict[str, list[dict[str, Any]]] = {}
    for resource in synth.of_type("AWS::IAM::Policy").values():
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
            if any(str(a).startswith("es:") for a in as_list(statement["Action"])):
                for role in resource["Properties"]["Roles"]:
                    out.setdefault(role["Ref"], []).append(statement)
    for lid, resource in synth.of_type("AWS::IAM::Role").items():
        for policy in resource["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                if any(str(a).startswith("es:") for a in as_list(statement["Action"])):
                    out.setdefault(lid, []).append(statement)
    return out


def test_only_the_search_functions_get_http_actions_on_the_domain(synth: Any, domain: Any) -> None:
    granted = opensearch_statements(synth)
    roles = {synth.logical_id(synth.stack.functions.roles[n]): n for n in SEARCH_FUNCTIONS}
    assert set(granted) == set(roles)
    for statements in granted.values():
        (statement,) = statements
        assert statement["Effect"] == "Allow"
        assert sorted(as_list(statement["Action"])) == sorted(HTTP_ACTIONS)
        assert as_list(statement["Resource"]) == [{"Fn::Join": ["", [{"Fn::GetAtt": [domain[0], "Arn"]}, "/*"]]}]


def test_search_functions_are_configured_for_the_domain_and_no_other_is(synth: Any, domain: Any) -> None:
    url = {"Fn::Join": ["", ["https://", {"Fn::GetAtt": [domain[0], "DomainEndpoint"]}]]}
    for name in wiring.FUNCTIONS:
        fn = synth.resources[synth.logical_id(synth.stack.functions.by_name[name])]
        env = fn["Properties"]["Environment"]["Variables"]
        if name in SEARCH_FUNCTIONS:
            assert env["CONTEXT_ENGINE_SEARCH_BACKEND"] == "opensearch", name
            assert env["CONTEXT_ENGINE_OPENSEARCH_URL"] == url, name
        else:
            assert "CONTEXT_ENGINE_SEARCH_BACKEND" not in env and "CONTEXT_ENGINE_OPENSEARCH_URL" not in env, name


def test_domain_alarms_notify_the_topic(synth: Any, domain: Any) -> None:
    topic = {"Ref": synth.logical_id(synth.stack.observability.topic)}
    alarms = [a["Properties"] for a in synth.of_type("AWS::CloudWatch::Alarm").values()
              if a["Properties"].get("Namespace") == "AWS/ES"]
    assert {a["MetricName"] for a in alarms} >= {"ClusterStatus.red", "ClusterIndexWritesBlocked",
                                                  "FreeStorageSpace", "JVMMemoryPressure"}
    for alarm in alarms:
        assert topic in alarm["AlarmActions"]
        dims = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
        assert dims["DomainName"] == {"Ref": domain[0]}
