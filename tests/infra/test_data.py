"""Aurora, RDS Proxy, ElastiCache and who may reach them."""

from __future__ import annotations

from typing import Any

import pytest

from context_engine.wiring import FUNCTIONS

pytestmark = pytest.mark.infra


def only(resources: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    assert len(resources) == 1, sorted(resources)
    return next(iter(resources.items()))


def ingress_sources(synth: Any, security_group_id: str) -> set[str]:
    """Logical IDs of the security groups allowed into ``security_group_id``; CIDRs as strings."""
    sources: set[str] = set()
    for rule in synth.of_type("AWS::EC2::SecurityGroupIngress").values():
        props = rule["Properties"]
        if props["GroupId"] == {"Fn::GetAtt": [security_group_id, "GroupId"]}:
            peer = props.get("SourceSecurityGroupId")
            sources.add(peer["Fn::GetAtt"][0] if peer else props.get("CidrIp") or props.get("CidrIpv6"))
    inline = synth.resources[security_group_id]["Properties"].get("SecurityGroupIngress", [])
    sources.update(r.get("CidrIp") or r.get("CidrIpv6") or str(r.get("SourceSecurityGroupId")) for r in inline)
    return sources


def test_aurora_is_postgres_16_serverless_v2_encrypted_and_protected(synth: Any) -> None:
    _, cluster = only(synth.of_type("AWS::RDS::DBCluster"))
    props = cluster["Properties"]
    assert props["Engine"] == "aurora-postgresql"
    assert props["EngineVersion"].startswith("16.")
    assert props["StorageEncrypted"] is True
    assert props["DeletionProtection"] is True
    assert props["BackupRetentionPeriod"] >= 7
    assert props["EnableIAMDatabaseAuthentication"] is True
    assert props["EnableCloudwatchLogsExports"] == ["postgresql"]
    assert props["ServerlessV2ScalingConfiguration"] == {"MinCapacity": 0.5, "MaxCapacity": 8}
    assert cluster["DeletionPolicy"] == "Snapshot"
    instances = synth.of_type("AWS::RDS::DBInstance").values()
    assert {i["Properties"]["DBInstanceClass"] for i in instances} == {"db.serverless"}
    assert len(instances) == 2  # writer + one reader in the other AZ
    assert all(i["Properties"]["PubliclyAccessible"] is False for i in instances)
    _, params = only(synth.of_type("AWS::RDS::DBClusterParameterGroup"))
    assert params["Properties"]["Family"] == "aurora-postgresql16"
    assert params["Properties"]["Parameters"]["rds.force_ssl"] == "1"


def test_owner_secret_is_generated_and_rotated(synth: Any) -> None:
    # The cluster's secret is the target attachment (it adds host/port) over the generated secret.
    owner = synth.logical_id(synth.stack.data.owner_secret)
    attachment = synth.resources[owner]
    assert attachment["Type"] == "AWS::SecretsManager::SecretTargetAttachment"
    generated = synth.resources[attachment["Properties"]["SecretId"]["Ref"]]["Properties"]["GenerateSecretString"]
    assert '"username":"ce_owner"' in generated["SecretStringTemplate"]
    schedules = synth.of_type("AWS::SecretsManager::RotationSchedule").values()
    rotated = {s["Properties"]["SecretId"]["Ref"] for s in schedules}
    assert rotated == {owner, synth.logical_id(synth.stack.data.app_secret)}


def test_proxy_requires_tls_and_knows_only_the_app_secret(synth: Any) -> None:
    _, proxy = only(synth.of_type("AWS::RDS::DBProxy"))
    props = proxy["Properties"]
    assert props["RequireTLS"] is True
    assert props["EngineFamily"] == "POSTGRESQL"
    # The owner credentials never pass through the proxy the functions use.
    assert props["Auth"] == [
        {
            "AuthScheme": "SECRETS",
            "IAMAuth": "DISABLED",
            "SecretArn": {"Ref": synth.logical_id(synth.stack.data.app_secret)},
        }
    ]
    app_secret = synth.resources[synth.logical_id(synth.stack.data.app_secret)]["Properties"]["GenerateSecretString"]
    assert '"username": "ce_app"' in app_secret["SecretStringTemplate"]


def test_cache_has_transit_encryption_and_an_auth_token_from_secrets_manager(synth: Any) -> None:
    _, group = only(synth.of_type("AWS::ElastiCache::ReplicationGroup"))
    props = group["Properties"]
    assert props["TransitEncryptionEnabled"] is True
    assert props["TransitEncryptionMode"] == "required"
    assert props["AtRestEncryptionEnabled"] is True
    token_secret = synth.logical_id(synth.stack.data.cache_secret)
    assert props["AuthToken"] == {
        "Fn::Join": ["", ["{{resolve:secretsmanager:", {"Ref": token_secret}, ":SecretString:token::}}"]]
    }
    assert props["MultiAZEnabled"] is True and props["AutomaticFailoverEnabled"] is True
    _, subnets = only(synth.of_type("AWS::ElastiCache::SubnetGroup"))
    data_subnets = {s["Ref"] for s in subnets["Properties"]["SubnetIds"]}
    assert data_subnets and all("dataSubnet" in s for s in data_subnets)


def test_database_paths_are_opened_peer_by_peer(synth: Any) -> None:
    data, functions = synth.stack.data, synth.stack.functions
    fn_sgs = {name: synth.logical_id(sg) for name, sg in functions.security_groups.items()}
    # Proxy: exactly the functions with needs_db.
    assert ingress_sources(synth, synth.logical_id(data.proxy_sg)) == {
        fn_sgs[n] for n, spec in FUNCTIONS.items() if spec.needs_db
    }
    # Cluster: the proxy, the admin functions and the owner rotation; never a request function.
    cluster_sources = ingress_sources(synth, synth.logical_id(data.cluster_sg))
    assert synth.logical_id(data.proxy_sg) in cluster_sources
    assert synth.logical_id(synth.stack.db_admin.security_group) in cluster_sources
    assert not cluster_sources & set(fn_sgs.values())
    assert len(cluster_sources) == 3
    # Cache: exactly the functions with needs_cache.
    assert ingress_sources(synth, synth.logical_id(data.cache_sg)) == {
        fn_sgs[n] for n, spec in FUNCTIONS.items() if spec.needs_cache
    }
