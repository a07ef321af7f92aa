"""The sandbox: tool code runs in an ECS Fargate task started by the ``sandbox_run`` workflow.

What this construct adds to the stack (the state machine itself, its log group and alarms,
``lambda:InvokeFunction`` on the sandbox function and ``states:StartExecution`` for it come
from the pipeline construct, which builds every ``wiring.WORKFLOWS`` entry):

- an S3 bucket for the code and the results (``requests/<run_id>.json``, ``results/<run_id>.json``):
  SSE-S3, TLS only, no public access, objects expire after a day (the workflow deletes them as
  soon as the result is stored), and a bucket policy that lets only the task role and the
  sandbox function read or write objects;
- the container image, built from ``sandbox_image/Dockerfile`` by ``cdk deploy`` (synth only
  stages the few files the Dockerfile copies; it needs no docker);
- an ECS cluster (Container Insights) and a Fargate task definition: ARM64, non-root user
  10001, read-only root file system, every capability dropped, not privileged, the only
  writable path a task-local ``/tmp`` volume, 1 vCPU / 3 GiB (the largest run: 2 GiB address
  space for the code plus the entrypoint), 21 GiB ephemeral storage (Fargate's minimum), logs to
  a log group with retention. No init process on purpose: the entrypoint stays PID 1, which the
  code (same uid) cannot kill;
- a security group whose only egress is HTTPS to the S3 gateway endpoint (objects and ECR
  layers) and to the ECR and CloudWatch Logs interface endpoints (image pull, logs); the subnets
  have no route anywhere else. The code itself cannot open sockets at all (seccomp, see
  docs/sandbox.md);
- a task role that may only read ``requests/*`` and write ``results/*``;
- on the state machine's role: ``ecs:RunTask`` of this task definition in this cluster only,
  stop/describe of this cluster's tasks, ``iam:PassRole`` of the two task roles to ECS only, and
  the managed EventBridge rule that ``runTask.sync`` needs;
- on the sandbox function: put ``requests/*``, get and list ``results/*``, delete both, HTTPS
  to S3, and the environment that says where tasks run (``CONTEXT_ENGINE_SANDBOX_*``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from aws_cdk import CfnOutput, Duration, Fn, IgnoreMode, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import custom_resources as cr
from constructs import Construct

from infra_cdk.nag import acknowledge

if TYPE_CHECKING:
    from infra_cdk.stack import Shared

REPO_ROOT = Path(__file__).resolve().parents[2]
FUNCTION = "sandbox"
CONTAINER = "sandbox"
REQUEST_PREFIX = "requests/"
RESULT_PREFIX = "results/"
SANDBOX_UID = "10001:10001"  # the image's user (sandbox_image/Dockerfile)
TASK_CPU = 1024
TASK_MEMORY_MIB = 3072
EPHEMERAL_STORAGE_GIB = 21
OBJECT_EXPIRY = Duration.days(1)
# The build context is the repository root; stage only what the Dockerfile copies. Big folders
# are named again at the end so the fingerprint does not walk them.
IMAGE_CONTEXT_EXCLUDE = [
    "*",
    "!sandbox_image/**",
    "!layers/core/python/context_engine/__init__.py",
    "!layers/core/python/context_engine/sandbox/**",
    "**/__pycache__",
    ".venv", ".git", "build", "cdk.out", "node_modules", ".context-engine", ".mypy_cache", ".ruff_cache",
    ".pytest_cache", ".hypothesis", "tests", "bench",
]
# The EventBridge rule Step Functions manages for runTask.sync (AWS documents this name).
SFN_ECS_RULE = "StepFunctionsGetEventsForECSTaskRule"


class Sandbox(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, shared: Shared,
                 state_machine: sfn.StateMachine) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        network = shared.network
        function = shared.functions.by_name[FUNCTION]
        function_role = shared.functions.roles[FUNCTION]

        # --- where the code and the results live ------------------------------------------
        self.bucket = s3.Bucket(
            self,
            "Objects",
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="ShortLived", expiration=OBJECT_EXPIRY, abort_incomplete_multipart_upload_after=OBJECT_EXPIRY
                )
            ],
            # Transient objects only (a day at most): nothing to keep when the stack goes.
            removal_policy=RemovalPolicy.DESTROY,
        )
        acknowledge(
            self.bucket,
            {
                "AwsSolutions-S1": "Objects live at most a day and hold tool code and output; access logs would "
                "keep their keys far longer. Only the task role and the sandbox function can touch objects "
                "(bucket policy); CloudTrail data events can record each access where required.",
            },
        )

        # --- the task ---------------------------------------------------------------------------
        self.cluster = ecs.Cluster(
            self, "Cluster", vpc=network.vpc, container_insights_v2=ecs.ContainerInsights.ENABLED
        )
        self.task_role = iam.Role(
            self,
            "TaskRole",
            assumed_by=iam.ServicePrincipal(
                "ecs-tasks.amazonaws.com",
                conditions={
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnLike": {"aws:SourceArn": stack.format_arn(service="ecs", resource="*")},
                },
            ),
            description="Sandbox task: read its request object, write its result object, nothing else",
        )
        self.task_role.add_to_policy(iam.PolicyStatement(
            sid="ReadRequests", actions=["s3:GetObject"],
            resources=[self.bucket.arn_for_objects(f"{REQUEST_PREFIX}*")]))
        self.task_role.add_to_policy(iam.PolicyStatement(
            sid="WriteResults", actions=["s3:PutObject"],
            resources=[self.bucket.arn_for_objects(f"{RESULT_PREFIX}*")]))
        acknowledge(
            self.task_role,
            {
                f"AwsSolutions-IAM5[Resource::<{_logical_id(self.bucket)}.Arn>/{REQUEST_PREFIX}*]": (
                    "A task reads the request object of the run it was started for; run ids are per execution."
                ),
                f"AwsSolutions-IAM5[Resource::<{_logical_id(self.bucket)}.Arn>/{RESULT_PREFIX}*]": (
                    "A task writes the result object of its run; run ids are per execution."
                ),
            },
        )

        self.task_definition = ecs.FargateTaskDefinition(
            self,
            "Task",
            cpu=TASK_CPU,
            memory_limit_mib=TASK_MEMORY_MIB,
            ephemeral_storage_gib=EPHEMERAL_STORAGE_GIB,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.ARM64, operating_system_family=ecs.OperatingSystemFamily.LINUX
            ),
            task_role=self.task_role,
            volumes=[ecs.Volume(name="tmp")],  # task-local storage, gone with the task
        )
        self.log_group = logs.LogGroup(
            self, "Logs", retention=shared.config.retention, removal_policy=RemovalPolicy.DESTROY
        )
        linux = ecs.LinuxParameters(self, "Linux", init_process_enabled=False)
        linux.drop_capabilities(ecs.Capability.ALL)
        self.container = self.task_definition.add_container(
            CONTAINER,
            container_name=CONTAINER,
            image=ecs.ContainerImage.from_asset(
                str(REPO_ROOT),
                file="sandbox_image/Dockerfile",
                exclude=IMAGE_CONTEXT_EXCLUDE,
                ignore_mode=IgnoreMode.DOCKER,
                platform=ecr_assets.Platform.LINUX_ARM64,
            ),
            essential=True,
            user=SANDBOX_UID,
            readonly_root_filesystem=True,
            privileged=False,
            linux_parameters=linux,
            # The entrypoint logs one status line per run (never the code or its output).
            logging=ecs.LogDrivers.aws_logs(stream_prefix="sandbox", log_group=self.log_group),
        )
        # The runner's private working directories (the image expects /tmp writable; see container.py).
        self.container.add_mount_points(
            ecs.MountPoint(container_path="/tmp", source_volume="tmp", read_only=False)  # noqa: S108
        )
        execution_role = self.task_definition.obtain_execution_role()
        acknowledge(
            execution_role,
            {
                "AwsSolutions-IAM5[Resource::*]": "ecr:GetAuthorizationToken supports no resource scoping; the "
                "image pull itself is scoped to the CDK asset repository.",
            },
        )

        # --- network: S3, ECR and CloudWatch Logs, nothing else ----------------------------
        s3_prefix_list = self._s3_prefix_list()
        self.security_group = ec2.SecurityGroup(
            self, "TaskSg", vpc=network.vpc, allow_all_outbound=False,
            description="Sandbox tasks: HTTPS to S3, ECR and CloudWatch Logs only",
        )
        self.security_group.add_egress_rule(
            ec2.Peer.prefix_list(s3_prefix_list), ec2.Port.tcp(443), "S3 gateway endpoint: run objects, ECR layers"
        )
        for name, service in (
            ("EcrApi", ec2.InterfaceVpcEndpointAwsService.ECR),
            ("EcrDocker", ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER),
            ("Logs", ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS),
        ):
            endpoint = network.add_interface_endpoint(name, service)
            for endpoint_sg in endpoint.connections.security_groups:
                self.security_group.add_egress_rule(
                    ec2.Peer.security_group_id(endpoint_sg.security_group_id), ec2.Port.tcp(443), f"{name} endpoint"
                )

        # --- the state machine may run exactly this task ------------------------------------
        cluster_condition = {"ArnEquals": {"ecs:cluster": self.cluster.cluster_arn}}
        state_machine.add_to_role_policy(iam.PolicyStatement(
            sid="RunSandboxTask", actions=["ecs:RunTask"], resources=[self.task_definition.task_definition_arn],
            conditions=cluster_condition))
        tasks_arn = stack.format_arn(service="ecs", resource="task", resource_name=f"{self.cluster.cluster_name}/*")
        state_machine.add_to_role_policy(iam.PolicyStatement(
            sid="WatchSandboxTasks", actions=["ecs:StopTask", "ecs:DescribeTasks"], resources=[tasks_arn],
            conditions=cluster_condition))
        state_machine.add_to_role_policy(iam.PolicyStatement(
            sid="PassSandboxTaskRoles", actions=["iam:PassRole"],
            resources=[self.task_role.role_arn, execution_role.role_arn],
            conditions={"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}))
        state_machine.add_to_role_policy(iam.PolicyStatement(
            sid="RunTaskSyncRule", actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
            resources=[stack.format_arn(service="events", resource="rule", resource_name=SFN_ECS_RULE)]))
        acknowledge(
            state_machine,
            {
                f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ecs:<AWS::Region>:<AWS::AccountId>:task/"
                f"<{_logical_id(self.cluster)}>/*]": (
                    "Task ids are only known once RunTask returns; stop/describe are limited to this cluster's "
                    "tasks (resource and ecs:cluster condition)."
                ),
            },
        )

        # --- the sandbox function: put requests, collect results, say where tasks run ------------
        function.add_to_role_policy(iam.PolicyStatement(
            sid="PutSandboxRequests", actions=["s3:PutObject"],
            resources=[self.bucket.arn_for_objects(f"{REQUEST_PREFIX}*")]))
        function.add_to_role_policy(iam.PolicyStatement(
            sid="ReadSandboxResults", actions=["s3:GetObject"],
            resources=[self.bucket.arn_for_objects(f"{RESULT_PREFIX}*")]))
        function.add_to_role_policy(iam.PolicyStatement(
            sid="DeleteSandboxObjects", actions=["s3:DeleteObject"],
            resources=[self.bucket.arn_for_objects(f"{REQUEST_PREFIX}*"),
                       self.bucket.arn_for_objects(f"{RESULT_PREFIX}*")]))
        # With ListBucket a missing result object is 404 (no result written), not 403.
        function.add_to_role_policy(iam.PolicyStatement(
            sid="ListSandboxResults", actions=["s3:ListBucket"], resources=[self.bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{RESULT_PREFIX}*"]}}))
        acknowledge(
            function_role,
            {
                f"AwsSolutions-IAM5[Resource::<{_logical_id(self.bucket)}.Arn>/{REQUEST_PREFIX}*]": (
                    "The function writes and deletes the request object of each run it starts (one key per run)."
                ),
                f"AwsSolutions-IAM5[Resource::<{_logical_id(self.bucket)}.Arn>/{RESULT_PREFIX}*]": (
                    "The function reads and deletes the result object of each run it collects (one key per run)."
                ),
            },
        )
        shared.functions.security_groups[FUNCTION].add_egress_rule(
            ec2.Peer.prefix_list(s3_prefix_list), ec2.Port.tcp(443), "S3 gateway endpoint: run objects"
        )
        subnets = network.vpc.select_subnets(subnet_group_name=network.app_subnets.subnet_group_name).subnet_ids
        for key, value in {
            "CONTEXT_ENGINE_SANDBOX_BUCKET": self.bucket.bucket_name,
            "CONTEXT_ENGINE_SANDBOX_CLUSTER_ARN": self.cluster.cluster_arn,
            "CONTEXT_ENGINE_SANDBOX_TASK_DEFINITION_ARN": self.task_definition.task_definition_arn,
            "CONTEXT_ENGINE_SANDBOX_CONTAINER_NAME": CONTAINER,
            "CONTEXT_ENGINE_SANDBOX_SUBNETS": Fn.join(",", subnets),
            "CONTEXT_ENGINE_SANDBOX_SECURITY_GROUPS": self.security_group.security_group_id,
            "CONTEXT_ENGINE_SANDBOX_REQUEST_PREFIX": REQUEST_PREFIX,
            "CONTEXT_ENGINE_SANDBOX_RESULT_PREFIX": RESULT_PREFIX,
        }.items():
            function.add_environment(key, value)

        # Only these two roles may touch objects, whatever other policies in the account say.
        self.bucket.add_to_resource_policy(iam.PolicyStatement(
            sid="OnlyTheSandboxTouchesObjects",
            effect=iam.Effect.DENY,
            principals=[iam.AnyPrincipal()],
            actions=["s3:GetObject", "s3:PutObject"],
            resources=[self.bucket.arn_for_objects("*")],
            conditions={"ArnNotEquals": {"aws:PrincipalArn": [self.task_role.role_arn, function_role.role_arn]}},
        ))

        CfnOutput(self, "SandboxBucketName", value=self.bucket.bucket_name)
        CfnOutput(self, "SandboxClusterName", value=self.cluster.cluster_name)

    def _s3_prefix_list(self) -> str:
        """The AWS-managed prefix list of S3 in this region, looked up at deploy time (synth stays
        offline; CloudFormation has no attribute for it)."""
        stack = Stack.of(self)
        call = cr.AwsSdkCall(
            service="EC2",
            action="describeManagedPrefixLists",
            parameters={"Filters": [{"Name": "prefix-list-name", "Values": [f"com.amazonaws.{stack.region}.s3"]}]},
            physical_resource_id=cr.PhysicalResourceId.of(f"s3-prefix-list-{stack.region}"),
            output_paths=["PrefixLists.0.PrefixListId"],
        )
        lookup = cr.AwsCustomResource(
            self,
            "S3PrefixList",
            on_create=call,
            on_update=call,
            install_latest_aws_sdk=False,
            policy=cr.AwsCustomResourcePolicy.from_statements([
                iam.PolicyStatement(actions=["ec2:DescribeManagedPrefixLists"], resources=["*"])]),
            log_group=logs.LogGroup(self, "S3PrefixListLogs", retention=logs.RetentionDays.ONE_WEEK,
                                    removal_policy=RemovalPolicy.DESTROY),
        )
        # AwsCustomResource runs on one singleton function per stack.
        provider = stack.node.try_find_child("AWS" + cr.AwsCustomResource.PROVIDER_FUNCTION_UUID.replace("-", ""))
        reasons = {
            "AwsSolutions-IAM5[Resource::*]": "ec2:DescribeManagedPrefixLists supports no resource scoping; the "
            "lookup only reads the S3 prefix list id.",
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AWSLambdaBasicExecutionRole]": "The CDK custom-resource function only writes its own logs.",
            "AwsSolutions-L1": "The runtime of CDK's AwsCustomResource function is chosen by aws-cdk-lib.",
        }
        acknowledge(lookup, reasons)
        if provider is not None:
            acknowledge(provider, reasons)
        return lookup.get_response_field("PrefixLists.0.PrefixListId")


def _logical_id(construct: Construct) -> str:
    stack = Stack.of(construct)
    return str(stack.resolve(stack.get_logical_id(construct.node.default_child)))  # type: ignore[arg-type]
