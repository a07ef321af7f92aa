"""Deploy-time database administration: schema migrations and ``ce_app`` password rotation.

- Migrations: a custom resource whose properties include a digest of the migration files,
  so every deploy that adds a migration runs it exactly once (``migrate()`` is idempotent and
  takes an advisory lock). It depends on the cluster and the proxy; the stack makes every
  application function depend on it, so no function is created or updated before the schema
  it expects exists. Its function also sets the ``ce_app`` password and writes the proxy
  endpoint into the app secret.
- Rotation: the app secret rotates every 30 days with ``handlers/db_admin/rotate_app.py``
  (why not the hosted template: see that file).

Both functions live in the app tier and reach the Aurora writer directly (the only paths
besides RDS Proxy) and Secrets Manager through its endpoint; each has its own role.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from aws_cdk import CustomResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import custom_resources as cr
from constructs import Construct

from infra_cdk.config import StackConfig
from infra_cdk.constructs.data import DB_NAME, DB_PORT, Data
from infra_cdk.constructs.functions import ARCHITECTURE, RUNTIME, acknowledge_python_runtime, vpc_function_role
from infra_cdk.constructs.network import Network
from infra_cdk.nag import acknowledge

REPO_ROOT = Path(__file__).resolve().parents[2]
HANDLERS = REPO_ROOT / "infra_cdk" / "handlers" / "db_admin"
CORE_DB = REPO_ROOT / "layers" / "core" / "python" / "context_engine" / "db"


def migrations_digest() -> str:
    """Changes whenever a migration file or the migration runner changes."""
    h = hashlib.sha256()
    for path in [*sorted((CORE_DB / "migrations").glob("*.sql")), CORE_DB / "migrate.py"]:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


class DatabaseAdmin(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        network: Network,
        data: Data,
        layer: lambda_.ILayerVersion,
        config: StackConfig,
    ) -> None:
        super().__init__(scope, construct_id)
        self.security_group = ec2.SecurityGroup(
            self, "Sg", vpc=network.vpc, allow_all_outbound=False, description="Migrations and ce_app rotation"
        )
        network.allow_aws_apis(self.security_group)
        data.allow_database_admin(self.security_group, "migrations and ce_app rotation")
        code = lambda_.Code.from_asset(str(HANDLERS), exclude=["__pycache__", "*.pyc"])

        # --- migrations --------------------------------------------------------------------
        migrate_role = vpc_function_role(self, "MigrateRole", description="Runs schema migrations as the owner")
        self.migrate_function = self._function(
            "Migrate",
            "migrate.on_event",
            code,
            layer,
            migrate_role,
            network,
            config,
            description="Applies schema migrations; sets the ce_app password",
            timeout=Duration.minutes(10),
        )
        data.owner_secret.grant_read(migrate_role)
        data.app_secret.grant_read(migrate_role)
        data.app_secret.grant_write(migrate_role)

        provider_role = iam.Role(
            self,
            "ProviderRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Custom resource framework: invokes the migration function",
        )
        provider_logs = logs.LogGroup(
            self, "ProviderLogs", retention=config.retention, removal_policy=RemovalPolicy.DESTROY
        )
        provider_logs.grant_write(provider_role)
        provider = cr.Provider(
            self,
            "MigrationsProvider",
            on_event_handler=self.migrate_function,
            framework_on_event_role=provider_role,
            log_group=provider_logs,
        )
        migrate_id = Stack.of(self).get_logical_id(self.migrate_function.node.default_child)  # type: ignore[arg-type]
        acknowledge(
            provider_role,
            {
                f"AwsSolutions-IAM5[Resource::<{migrate_id}.Arn>:*]": (
                    "The provider framework may invoke any version of the migration function (CDK's own grant)."
                ),
            },
        )
        self.migrations = CustomResource(
            self,
            "Migrations",
            service_token=provider.service_token,
            resource_type="Custom::ContextEngineMigrations",
            properties={
                "MigrationsDigest": migrations_digest(),
                "EmbeddingDim": str(config.embedding_dim),
                "OwnerSecretArn": data.owner_secret.secret_arn,
                "AppSecretArn": data.app_secret.secret_arn,
                "ProxyEndpoint": data.proxy.endpoint,
                "Port": str(DB_PORT),
                "DatabaseName": DB_NAME,
            },
        )
        # The writer must accept connections and the proxy must exist before the schema step.
        self.migrations.node.add_dependency(data.cluster)
        self.migrations.node.add_dependency(data.proxy)

        # --- ce_app rotation ---------------------------------------------------------------
        rotate_role = vpc_function_role(
            self,
            "RotateRole",
            description="Rotates the ce_app password",
            also_wildcard="secretsmanager:GetRandomPassword (granted by RotationSchedule) has no resource type.",
        )
        self.rotate_function = self._function(
            "RotateApp",
            "rotate_app.handler",
            code,
            layer,
            rotate_role,
            network,
            config,
            description="Secrets Manager rotation of the ce_app secret",
            timeout=Duration.minutes(2),
            environment={"OWNER_SECRET_ARN": data.owner_secret.secret_arn},
        )
        data.owner_secret.grant_read(rotate_role)
        schedule = data.app_secret.add_rotation_schedule(
            "Rotation", rotation_lambda=self.rotate_function, automatically_after=Duration.days(30)
        )
        # The first rotation (right after creation) needs the ce_app role the migrations create.
        schedule.node.add_dependency(self.migrations)

    def _function(
        self,
        construct_id: str,
        handler: str,
        code: lambda_.Code,
        layer: lambda_.ILayerVersion,
        role: iam.Role,
        network: Network,
        config: StackConfig,
        *,
        description: str,
        timeout: Duration,
        environment: dict[str, str] | None = None,
    ) -> lambda_.Function:
        log_group = logs.LogGroup(
            self, f"{construct_id}Logs", retention=config.retention, removal_policy=RemovalPolicy.DESTROY
        )
        log_group.grant_write(role)
        fn = lambda_.Function(
            self,
            f"{construct_id}Function",
            description=description,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=handler,
            code=code,
            layers=[layer],
            memory_size=512,
            timeout=timeout,
            role=role,
            vpc=network.vpc,
            vpc_subnets=network.app_subnets,
            security_groups=[self.security_group],
            tracing=lambda_.Tracing.ACTIVE,
            log_group=log_group,
            environment=environment,
        )
        acknowledge_python_runtime(fn)
        return fn
