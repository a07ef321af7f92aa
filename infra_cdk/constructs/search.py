"""The OpenSearch domain (``searchBackend=opensearch``): BM25 + k-NN over the turn and memory
indices the index consumer mirrors rows into (``context_engine.search.opensearch``).

Built only when the config selects the OpenSearch backend (the stack composes it then); the
PostgreSQL backend needs nothing here. What it adds:

- a domain in the VPC's isolated ``data`` subnets, two AZs with zone awareness, OpenSearch
  2.x (k-NN plugin, Lucene HNSW), encryption at rest, node-to-node encryption, HTTPS only
  with TLS 1.2, no public endpoint;
- IAM-only access: the domain's resource policy names the roles of the functions that search
  or index (``SEARCH_FUNCTIONS``) and nothing else — no anonymous principal, no basic auth;
  requests are SigV4-signed by the client (``OpenSearchBackend.from_url``);
- its own security group admitting 443 from those functions' security groups only;
- search/index slow logs and error (application) logs to CloudWatch Logs with the stack's
  retention, through a native ``AWS::Logs::ResourcePolicy`` (no custom resource);
- ``es:ESHttp{Get,Head,Post,Put,Delete}`` on ``<domain>/*`` for exactly those functions, and
  their ``CONTEXT_ENGINE_SEARCH_BACKEND`` / ``CONTEXT_ENGINE_OPENSEARCH_URL`` settings;
- alarms: cluster red, writes blocked, low free storage, JVM memory pressure.

The domain has a fixed name (derived from the stack name) so its resource policy can name its
own ARN without a custom resource; engine upgrades therefore run in place
(``enable_version_upgrade``), and a change that would replace the domain must be done by
hand (docs/deploy.md). Removal policy DESTROY: the index is derived from Aurora (the system of
record, snapshotted on deletion) and holds copies of personal data that must not outlive the
stack outside the reach of erase.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from aws_cdk import Duration, RemovalPolicy, Stack, Token
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_opensearchservice as opensearch
from constructs import Construct

from infra_cdk.nag import acknowledge

if TYPE_CHECKING:
    from infra_cdk.stack import Shared

# Functions that call the domain: query (QueryContext, memory search), index (mirrors turns and
# memories, prepares contexts), governance (erase and retention delete users' documents).
# ``write`` deletes rows only (DeleteContext, memory delete) and never calls OpenSearch.
SEARCH_FUNCTIONS = ("query", "index", "governance")
HTTP_ACTIONS = ["es:ESHttpGet", "es:ESHttpHead", "es:ESHttpPost", "es:ESHttpPut", "es:ESHttpDelete"]
ENGINE_VERSION = opensearch.EngineVersion.OPENSEARCH_2_19
HTTPS = ec2.Port.tcp(443)
FREE_STORAGE_MIB_ALARM = 2048


def domain_name_for(stack_name: str) -> str:
    """3-28 characters, a lowercase letter first, then lowercase letters, digits and hyphens."""
    base = re.sub(r"[^a-z0-9-]", "", stack_name.lower()).lstrip("-0123456789") or "ce"
    return f"{base[:21].rstrip('-')}-search"


def _logical_id(construct: Construct) -> str:
    stack = Stack.of(construct)
    return str(stack.resolve(stack.get_logical_id(construct.node.default_child)))  # type: ignore[arg-type]


class Search(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, shared: Shared) -> None:
        super().__init__(scope, construct_id)
        config, network = shared.config, shared.network
        functions = shared.functions.by_name
        for name in SEARCH_FUNCTIONS:
            if name not in functions:
                raise KeyError(f"wiring.FUNCTIONS has no {name!r} function")
        stack = Stack.of(self)
        if Token.is_unresolved(stack.stack_name):
            raise ValueError("the search domain's name derives from the stack name, which must be a literal")
        self.domain_name = domain_name_for(stack.stack_name)

        self.security_group = ec2.SecurityGroup(
            self, "Sg", vpc=network.vpc, allow_all_outbound=False,
            description="OpenSearch: HTTPS from the functions that search or index",
        )
        self.log_groups = {
            kind: logs.LogGroup(self, f"{kind}Logs", retention=config.retention, removal_policy=RemovalPolicy.DESTROY)
            for kind in ("SearchSlow", "IndexSlow", "Error")
        }
        # What CDK would otherwise do with a Lambda-backed custom resource.
        logs_policy = logs.ResourcePolicy(
            self,
            "LogsPolicy",
            policy_statements=[
                iam.PolicyStatement(
                    principals=[iam.ServicePrincipal("es.amazonaws.com")],
                    actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                    resources=[f"{g.log_group_arn}" for g in self.log_groups.values()],
                    conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
                )
            ],
        )
        masters = config.search_master_nodes
        self.domain = opensearch.Domain(
            self,
            "Domain",
            domain_name=self.domain_name,
            version=ENGINE_VERSION,
            enable_version_upgrade=True,
            capacity=opensearch.CapacityConfig(
                data_nodes=config.search_data_nodes,
                data_node_instance_type=config.search_instance_type,
                master_nodes=masters or None,
                master_node_instance_type=config.search_master_instance_type if masters else None,
                # Multi-AZ with standby needs three AZs; the VPC has two.
                multi_az_with_standby_enabled=False,
            ),
            ebs=opensearch.EbsOptions(volume_size=config.search_volume_gb, volume_type=ec2.EbsDeviceVolumeType.GP3),
            zone_awareness=opensearch.ZoneAwarenessConfig(enabled=True, availability_zone_count=2),
            vpc=network.vpc,
            vpc_subnets=[network.data_subnets],
            security_groups=[self.security_group],
            encryption_at_rest=opensearch.EncryptionAtRestOptions(enabled=True),
            node_to_node_encryption=True,
            enforce_https=True,
            tls_security_policy=opensearch.TLSSecurityPolicy.TLS_1_2,
            logging=opensearch.LoggingOptions(
                slow_search_log_enabled=True,
                slow_search_log_group=self.log_groups["SearchSlow"],
                slow_index_log_enabled=True,
                slow_index_log_group=self.log_groups["IndexSlow"],
                app_log_enabled=True,
                app_log_group=self.log_groups["Error"],
            ),
            suppress_logs_resource_policy=True,
            off_peak_window_enabled=True,
            enable_auto_software_update=True,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.domain.node.add_dependency(logs_policy)
        self.url = f"https://{self.domain.domain_endpoint}"

        roles = [shared.functions.roles[name] for name in SEARCH_FUNCTIONS]
        # IAM-only access: a resource policy naming exactly these roles (set on the L1, so the
        # domain needs no Lambda-backed custom resource to apply it). The domain's own ARN is
        # built from its fixed name: a GetAtt of itself would be circular.
        cfn = self.domain.node.default_child
        assert isinstance(cfn, opensearch.CfnDomain)
        cfn.access_policies = {
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "SearchFunctions",
                "Effect": "Allow",
                "Principal": {"AWS": [r.role_arn for r in roles]},
                "Action": HTTP_ACTIONS,
                "Resource": stack.format_arn(service="es", resource="domain", resource_name=f"{self.domain_name}/*"),
            }],
        }

        domain_paths = f"{self.domain.domain_arn}/*"
        for name in SEARCH_FUNCTIONS:
            fn, role = functions[name], shared.functions.roles[name]
            self.domain.connections.allow_from(fn, HTTPS, f"{name} to OpenSearch")
            role.add_to_policy(iam.PolicyStatement(sid="OpenSearchHttp", actions=HTTP_ACTIONS,
                                                   resources=[domain_paths]))
            fn.add_environment("CONTEXT_ENGINE_SEARCH_BACKEND", "opensearch")
            fn.add_environment("CONTEXT_ENGINE_OPENSEARCH_URL", self.url)
            acknowledge(role, {
                f"AwsSolutions-IAM5[Resource::<{_logical_id(self.domain)}.Arn>/*]": (
                    "HTTP paths of the one search domain: the indices are created by the application "
                    "(ensure_indices) and the requests address _msearch, _bulk and _delete_by_query, so "
                    "no narrower resource exists ahead of time."
                ),
            })

        acknowledge(self.domain, {
            "AwsSolutions-OS3": "The domain has no public endpoint: it lives in the isolated data subnets, its "
            "security group admits 443 only from the search functions' security groups, and its resource "
            "policy admits only their roles (SigV4). An IP allow-list would add nothing to that.",
            **({} if masters else {
                "AwsSolutions-OS4": "searchMasterNodes=0 was chosen in the deployment config (a small or dev "
                "domain); production keeps the default of 3 dedicated master nodes.",
            }),
        })

        watch = shared.observability
        alarms = [
            ("ClusterRed", self.domain.metric_cluster_status_red(period=Duration.minutes(1)), 1, 1,
             "OpenSearch cluster status red: a primary shard is unassigned (searches fail or miss turns)"),
            ("WritesBlocked", self.domain.metric_cluster_index_writes_blocked(period=Duration.minutes(5)), 1, 1,
             "OpenSearch blocks index writes: the index consumer's mirror writes fail"),
            ("JvmPressure", self.domain.metric_jvm_memory_pressure(period=Duration.minutes(5)), 85, 3,
             "OpenSearch JVM memory pressure above 85% for 15 minutes"),
        ]
        for cid, metric, threshold, periods, description in alarms:
            watch.add_alarm(cloudwatch.Alarm(
                self, cid, metric=metric, threshold=threshold, evaluation_periods=periods,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING, alarm_description=description,
            ))
        watch.add_alarm(cloudwatch.Alarm(
            self, "LowStorage",
            metric=self.domain.metric_free_storage_space(period=Duration.minutes(5), statistic="Minimum"),
            threshold=FREE_STORAGE_MIB_ALARM, evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=f"OpenSearch free storage on a node below {FREE_STORAGE_MIB_ALARM} MiB",
        ))
