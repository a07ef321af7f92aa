"""One Lambda per ``wiring.FUNCTIONS`` entry, each with its own role and security group.

Permissions come only from the FunctionSpec flags:

- every function: its own log group (write), ENIs in the VPC and X-Ray (AWS requires
  ``Resource: *`` for both), HTTPS to the VPC endpoints;
- ``needs_db``: network path to RDS Proxy and read on the ``ce_app`` secret only;
- ``needs_cache``: network path to ElastiCache and ``REDIS_URL``;
- ``needs_events``: ``events:PutEvents`` on the bus only, and ``CONTEXT_ENGINE_EVENT_BUS_NAME``;
- ``needs_bedrock``: ``bedrock:InvokeModel`` on the embedding and summary model ARNs only.

Constructs that plug in later (pipeline, audit, sandbox) look functions up in ``by_name``
and add their own grants (queue consume, ``states:StartExecution``, ...) to ``fn.role``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from context_engine.embeddings.bedrock import MODEL_ID as EMBEDDING_MODEL_ID
from context_engine.wiring import FunctionSpec
from infra_cdk.config import StackConfig
from infra_cdk.constructs.bus import EventBus
from infra_cdk.constructs.data import Data
from infra_cdk.constructs.network import Network
from infra_cdk.nag import acknowledge

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNTIME = lambda_.Runtime.PYTHON_3_12  # the layer is built for cp312 (scripts/build_layer.py)
ARCHITECTURE = lambda_.Architecture.ARM_64
# What the Lambda service does with the execution role to attach a VPC function (these
# actions support no resource-level scoping for Describe*, and AWS documents "*").
ENI_ACTIONS = [
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
]
# Sized for one request at a time per execution environment, behind RDS Proxy.
POOL_ENV = {"CONTEXT_ENGINE_POOL_MIN_SIZE": "1", "CONTEXT_ENGINE_POOL_MAX_SIZE": "2"}


def vpc_function_role(scope: Construct, construct_id: str, *, description: str, also_wildcard: str = "") -> iam.Role:
    """An execution role with only the VPC ENI permissions; callers add the rest. ``also_wildcard``
    names any other action the caller grants on ``*`` because AWS allows nothing narrower."""
    role = iam.Role(
        scope, construct_id, assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"), description=description
    )
    role.add_to_policy(iam.PolicyStatement(sid="VpcNetworkInterfaces", actions=ENI_ACTIONS, resources=["*"]))
    acknowledge(
        role,
        {
            "AwsSolutions-IAM5[Resource::*]": "Lambda needs ec2 ENI actions on * to attach a VPC function, and "
            "xray:PutTraceSegments/PutTelemetryRecords support no resource scoping."
            + (f" {also_wildcard}" if also_wildcard else ""),
        },
    )
    return role


def acknowledge_python_runtime(fn: lambda_.Function) -> None:
    acknowledge(
        fn,
        {
            "AwsSolutions-L1": "Python 3.12 is pinned on purpose: the shared layer's binary wheels "
            "(psycopg, pydantic-core, numpy) are built for cp312/aarch64.",
        },
    )


class Functions(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        specs: Mapping[str, FunctionSpec],
        network: Network,
        data: Data,
        bus: EventBus,
        layer: lambda_.ILayerVersion,
        config: StackConfig,
    ) -> None:
        super().__init__(scope, construct_id)
        unknown = set(config.reserved_concurrency) - set(specs)
        if unknown:
            raise ValueError(f"reservedConcurrency names unknown functions: {sorted(unknown)}")
        self._network, self._data, self._bus, self._layer, self._config = network, data, bus, layer, config
        self.by_name: dict[str, lambda_.Function] = {}
        self.roles: dict[str, iam.Role] = {}
        self.security_groups: dict[str, ec2.SecurityGroup] = {}
        for spec in specs.values():
            self.add(spec)

    def model_arns(self) -> list[str]:
        stack = Stack.of(self)
        return [
            stack.format_arn(service="bedrock", account="", resource="foundation-model", resource_name=model_id)
            for model_id in dict.fromkeys([EMBEDDING_MODEL_ID, self._config.summary_model_id])
        ]

    def environment(self, spec: FunctionSpec) -> dict[str, str]:
        """Settings the function reads (context_engine.settings), only what its flags allow."""
        cfg = self._config
        env = {
            "POWERTOOLS_SERVICE_NAME": "context-engine",
            "POWERTOOLS_METRICS_NAMESPACE": "ContextEngine",
            "POWERTOOLS_LOG_LEVEL": "INFO",
            "CONTEXT_ENGINE_ENVIRONMENT": "aws",
            # Schema changes run once per deploy (db_admin.py), never on a request's cold start.
            "CONTEXT_ENGINE_AUTO_MIGRATE": "false",
            "CONTEXT_ENGINE_EMBEDDER": "bedrock",
            "CONTEXT_ENGINE_EMBEDDING_DIM": str(cfg.embedding_dim),
            "CONTEXT_ENGINE_SUMMARIZER": "bedrock",
            "CONTEXT_ENGINE_BEDROCK_SUMMARY_MODEL_ID": cfg.summary_model_id,
            **POOL_ENV,
        }
        if spec.needs_db:
            env["CONTEXT_ENGINE_DATABASE_SECRET_ARN"] = self._data.app_secret.secret_arn
        if spec.needs_cache:
            env["REDIS_URL"] = self._data.redis_url
        if spec.needs_events:
            env["CONTEXT_ENGINE_EVENT_BUS_NAME"] = self._bus.bus.event_bus_name
        env.update(spec.extra)
        return env

    def add(self, spec: FunctionSpec) -> lambda_.Function:
        """Build one function from its spec (also for constructs that declare specs of their own)."""
        if spec.name in self.by_name:
            raise ValueError(f"function {spec.name!r} defined twice")
        code_dir = REPO_ROOT / spec.code_dir
        if not (code_dir / "handler.py").is_file():
            raise FileNotFoundError(f"wiring.FUNCTIONS[{spec.name!r}] has no handler at {code_dir}/handler.py")
        scope = Construct(self, spec.name)
        role = vpc_function_role(scope, "Role", description=f"{spec.name}: least privilege from its wiring flags")
        sg = ec2.SecurityGroup(
            scope, "Sg", vpc=self._network.vpc, allow_all_outbound=False, description=f"Lambda {spec.name}"
        )
        self._network.allow_aws_apis(sg)
        log_group = logs.LogGroup(scope, "Logs", retention=self._config.retention, removal_policy=RemovalPolicy.DESTROY)
        fn = lambda_.Function(
            scope,
            "Function",
            description=spec.description,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=spec.handler,
            code=lambda_.Code.from_asset(str(code_dir), exclude=["__pycache__", "*.pyc"]),
            layers=[self._layer],
            memory_size=spec.memory_mb,
            timeout=Duration.seconds(spec.timeout_s),
            role=role,
            vpc=self._network.vpc,
            vpc_subnets=self._network.app_subnets,
            security_groups=[sg],
            tracing=lambda_.Tracing.ACTIVE,
            log_group=log_group,
            environment=self.environment(spec),
            reserved_concurrent_executions=self._config.reserved_concurrency.get(spec.name),
        )
        log_group.grant_write(role)
        if spec.needs_db:
            self._data.allow_database(fn, f"{spec.name} via RDS Proxy")
            self._data.app_secret.grant_read(role)
        if spec.needs_cache:
            self._data.allow_cache(fn, f"{spec.name} to ElastiCache")
        if spec.needs_events:
            self._bus.bus.grant_put_events_to(role)
        if spec.needs_bedrock:
            role.add_to_policy(
                iam.PolicyStatement(sid="BedrockModels", actions=["bedrock:InvokeModel"], resources=self.model_arns())
            )
        acknowledge_python_runtime(fn)
        self.by_name[spec.name] = fn
        self.roles[spec.name] = role
        self.security_groups[spec.name] = sg
        return fn
