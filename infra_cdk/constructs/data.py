"""State: Aurora PostgreSQL Serverless v2 behind RDS Proxy, and ElastiCache (Valkey).

Credentials:
- ``owner_secret``: the cluster's master user ``ce_owner`` (generated, rotated every 30 days
  by the hosted single-user rotation). Used only by the migration step and operators; it
  is deliberately *not* attached to the proxy, so no request path can log in as owner.
- ``app_secret``: the application role ``ce_app`` (created by the migrations, no BYPASSRLS).
  CDK generates the password; the migration step sets it on the role and writes the proxy
  endpoint into the secret's ``host`` (the proxy references this secret, so the template
  cannot, without a cycle). Rotation: see ``db_admin.py``. This is the only secret the
  proxy knows, and the only one the functions may read.
- ``cache_secret``: the ElastiCache AUTH token.

Every security group starts with no egress; access is opened peer by peer through
``allow_database`` / ``allow_cache`` / ``allow_database_admin``.
"""

from __future__ import annotations

import json

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticache as elasticache
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra_cdk.config import StackConfig
from infra_cdk.constructs.network import Network
from infra_cdk.nag import acknowledge

DB_NAME = "context_engine"
DB_PORT = 5432
CACHE_PORT = 6379
OWNER_USER = "ce_owner"
APP_USER = "ce_app"  # created by migrations/0001_init.sql
ENGINE_VERSION = rds.AuroraPostgresEngineVersion.VER_16_8
# Characters that would need escaping in a libpq URL or a shell; the runtime URL-quotes anyway.
PASSWORD_EXCLUDE = " %+~`#$&*()|[]{}:;<>?!'/@\"\\"


class Data(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, network: Network, config: StackConfig) -> None:
        super().__init__(scope, construct_id)
        vpc = network.vpc
        self._network = network

        # --- Aurora --------------------------------------------------------------------
        self.cluster_sg = ec2.SecurityGroup(
            self, "ClusterSg", vpc=vpc, allow_all_outbound=False, description="Aurora: proxy and admin tasks only"
        )
        self.proxy_sg = ec2.SecurityGroup(
            self, "ProxySg", vpc=vpc, allow_all_outbound=False, description="RDS Proxy: functions with needs_db"
        )
        cluster_id = f"{Stack.of(self).stack_name}-aurora".lower()
        # Created here, with retention, instead of letting RDS create it unbounded.
        postgres_logs = logs.LogGroup(
            self,
            "PostgresLogs",
            log_group_name=f"/aws/rds/cluster/{cluster_id}/postgresql",
            retention=config.retention,
            removal_policy=RemovalPolicy.DESTROY,
        )
        engine = rds.DatabaseClusterEngine.aurora_postgres(version=ENGINE_VERSION)
        writer = rds.ClusterInstance.serverless_v2(
            "Writer", publicly_accessible=False, enable_performance_insights=True
        )
        readers = [
            # Same capacity as the writer so a failover does not land on a cold, small instance.
            rds.ClusterInstance.serverless_v2(
                f"Reader{i + 1}", publicly_accessible=False, scale_with_writer=True, enable_performance_insights=True
            )
            for i in range(config.db_readers)
        ]
        self.cluster = rds.DatabaseCluster(
            self,
            "Cluster",
            engine=engine,
            cluster_identifier=cluster_id,
            credentials=rds.Credentials.from_generated_secret(OWNER_USER, exclude_characters=PASSWORD_EXCLUDE),
            default_database_name=DB_NAME,
            writer=writer,
            readers=readers,
            serverless_v2_min_capacity=config.db_min_acu,
            serverless_v2_max_capacity=config.db_max_acu,
            vpc=vpc,
            vpc_subnets=network.data_subnets,
            security_groups=[self.cluster_sg],
            port=DB_PORT,
            storage_encrypted=True,
            deletion_protection=config.deletion_protection,
            removal_policy=RemovalPolicy.SNAPSHOT,
            backup=rds.BackupProps(
                retention=Duration.days(config.backup_retention_days), preferred_window="03:00-04:00"
            ),
            preferred_maintenance_window="sun:04:30-sun:05:30",
            copy_tags_to_snapshot=True,
            iam_authentication=True,
            # TLS also for connections that bypass the proxy (migrations, rotation, operators).
            parameters={"rds.force_ssl": "1", "log_min_duration_statement": "1000"},
            cloudwatch_logs_exports=["postgresql"],
        )
        self.cluster.node.add_dependency(postgres_logs)
        self.owner_secret: secretsmanager.ISecret = self.cluster.secret  # type: ignore[assignment]

        # Rotation functions run in the app tier and reach Secrets Manager through its endpoint.
        self.cluster.add_rotation_single_user(
            automatically_after=Duration.days(30),
            exclude_characters=PASSWORD_EXCLUDE,
            vpc_subnets=network.app_subnets,
        )

        self.app_secret = secretsmanager.Secret(
            self,
            "AppSecret",
            description=f"Aurora credentials of the application role {APP_USER}; host = RDS Proxy endpoint",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=json.dumps(
                    {"username": APP_USER, "dbname": DB_NAME, "port": DB_PORT, "engine": "postgres"}
                ),
                generate_string_key="password",
                exclude_characters=PASSWORD_EXCLUDE,
                password_length=40,
            ),
        )
        self.proxy = rds.DatabaseProxy(
            self,
            "Proxy",
            proxy_target=rds.ProxyTarget.from_cluster(self.cluster),
            secrets=[self.app_secret],
            vpc=vpc,
            vpc_subnets=network.data_subnets,
            security_groups=[self.proxy_sg],
            require_tls=True,
            debug_logging=False,
            idle_client_timeout=Duration.minutes(30),
        )
        self.cluster.connections.allow_default_port_from(self.proxy, "RDS Proxy to Aurora")

        # --- ElastiCache (Valkey) -----------------------------------------------------
        self.cache_sg = ec2.SecurityGroup(
            self, "CacheSg", vpc=vpc, allow_all_outbound=False, description="ElastiCache: functions with needs_cache"
        )
        self.cache_secret = secretsmanager.Secret(
            self,
            "CacheAuthToken",
            description="ElastiCache AUTH token (16-128 printable characters, no punctuation)",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=json.dumps({}),
                generate_string_key="token",
                exclude_punctuation=True,
                password_length=64,
            ),
        )
        acknowledge(
            self.cache_secret,
            {
                "AwsSolutions-SMG4": "Secrets Manager has no rotation template for ElastiCache AUTH tokens; the token "
                "is rotated with ModifyReplicationGroup AuthTokenUpdateStrategy=ROTATE as "
                "described in docs/deploy.md.",
            },
        )
        subnet_group = elasticache.CfnSubnetGroup(
            self,
            "CacheSubnets",
            description="Context Engine cache (data tier)",
            subnet_ids=vpc.select_subnets(subnet_group_name=network.data_subnets.subnet_group_name).subnet_ids,
        )
        slow_log = logs.LogGroup(self, "CacheSlowLog", retention=config.retention, removal_policy=RemovalPolicy.DESTROY)
        failover = config.cache_replicas >= 1
        self.cache = elasticache.CfnReplicationGroup(
            self,
            "Cache",
            replication_group_description="Context Engine query cache",
            engine="valkey",
            engine_version="8.0",
            cache_node_type=config.cache_node_type,
            num_cache_clusters=1 + config.cache_replicas,
            automatic_failover_enabled=failover,
            multi_az_enabled=failover,
            cache_subnet_group_name=subnet_group.ref,
            security_group_ids=[self.cache_sg.security_group_id],
            port=CACHE_PORT,
            at_rest_encryption_enabled=True,
            transit_encryption_enabled=True,
            transit_encryption_mode="required",
            auth_token=self.cache_secret.secret_value_from_json("token").unsafe_unwrap(),
            auto_minor_version_upgrade=True,
            snapshot_retention_limit=0,  # a cache: Aurora is the system of record
            log_delivery_configurations=[
                elasticache.CfnReplicationGroup.LogDeliveryConfigurationRequestProperty(
                    destination_type="cloudwatch-logs",
                    log_format="json",
                    log_type="slow-log",
                    destination_details=elasticache.CfnReplicationGroup.DestinationDetailsProperty(
                        cloud_watch_logs_details=elasticache.CfnReplicationGroup.CloudWatchLogsDestinationDetailsProperty(
                            log_group=slow_log.log_group_name
                        )
                    ),
                )
            ],
        )
        self.cache_connections = ec2.Connections(security_groups=[self.cache_sg], default_port=ec2.Port.tcp(CACHE_PORT))
        acknowledge(
            self.cache,
            {
                "AwsSolutions-AEC5": "The default port is kept: the cache is reachable only from the security groups "
                "of functions with needs_cache, TLS and AUTH are required; a non-default port "
                "adds no protection here.",
            },
        )
        acknowledge(
            self.cluster,
            {
                "AwsSolutions-RDS11": "The default port is kept: only the proxy and the admin functions' security "
                "groups may connect, TLS is forced; a non-default port adds no protection.",
            },
        )

    # --- access, granted peer by peer ---------------------------------------------------

    @property
    def redis_url(self) -> str:
        """``rediss://`` URL with the AUTH token as a CloudFormation dynamic reference."""
        token = self.cache_secret.secret_value_from_json("token").unsafe_unwrap()
        host = self.cache.attr_primary_end_point_address
        port = self.cache.attr_primary_end_point_port
        return f"rediss://:{token}@{host}:{port}/0"

    def allow_database(self, peer: ec2.IConnectable, description: str = "application via RDS Proxy") -> None:
        """Network path to the proxy on 5432 (the function still needs the app secret)."""
        self.proxy.connections.allow_from(peer, ec2.Port.tcp(DB_PORT), description)

    def allow_database_admin(self, peer: ec2.IConnectable, description: str = "admin task to Aurora") -> None:
        """Direct path to the cluster, for migrations and credential rotation only."""
        self.cluster.connections.allow_default_port_from(peer, description)

    def allow_cache(self, peer: ec2.IConnectable, description: str = "application to ElastiCache") -> None:
        self.cache_connections.allow_default_port_from(peer, description)
