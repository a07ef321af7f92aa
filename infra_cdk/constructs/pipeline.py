"""The event pipeline, built from ``context_engine.wiring`` (the local runtime reads the same):

- ``EVENT_RULES``: one EventBridge rule per entry on the domain bus (source + detail types)
  targeting an SQS queue, with a delivery DLQ for events EventBridge could not put there;
- ``QUEUES``: a queue per entry (SSE, TLS only) with its DLQ and redrive after
  ``max_receive_count`` receives, consumed by the named function through an event source
  mapping with ``ReportBatchItemFailures``; alarms on DLQ depth and on the oldest message;
- ``WORKFLOWS``: a Step Functions state machine from each ASL file, its ``${Placeholders}``
  substituted with the ARNs of the functions the wiring names; the functions in
  ``started_by`` may start it and get its ARN; alarms on failed/timed-out executions;
- ``SCHEDULES``: a scheduled rule per entry invoking its function (the outbox relay, ...).

The functions themselves come from the stack's ``Functions`` (one per ``wiring.FUNCTIONS``);
this construct only adds triggers and the grants they need.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from context_engine.pipeline.workflows import arn_env
from context_engine.wiring import EVENT_RULES, EVENT_SOURCE, QUEUES, SCHEDULES, WORKFLOWS
from infra_cdk.nag import acknowledge

if TYPE_CHECKING:
    from infra_cdk.stack import Shared

REPO_ROOT = Path(__file__).resolve().parents[2]
# A message older than this in a main queue means its consumer is not keeping up.
OLDEST_MESSAGE_MINUTES = 15
OLDEST_MESSAGE_ALARM = Duration.minutes(OLDEST_MESSAGE_MINUTES)


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _logical_id(construct: Construct) -> str:
    """The CloudFormation logical ID of an L2 construct's resource (as cdk-nag names it)."""
    stack = Stack.of(construct)
    return str(stack.resolve(stack.get_logical_id(construct.node.default_child)))  # type: ignore[arg-type]


class Pipeline(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, shared: Shared) -> None:
        super().__init__(scope, construct_id)
        functions = shared.functions.by_name
        watch = shared.observability
        retention = shared.config.retention

        # --- queues and their consumers ---------------------------------------------------
        self.queues: dict[str, sqs.Queue] = {}
        self.dead_letter_queues: dict[str, sqs.Queue] = {}
        for name, spec in QUEUES.items():
            dlq = sqs.Queue(
                self,
                f"{_camel(name)}Dlq",
                retention_period=Duration.days(spec.dlq_retention_days),
                encryption=sqs.QueueEncryption.SQS_MANAGED,
                enforce_ssl=True,
            )
            acknowledge(dlq, {"AwsSolutions-SQS3": "This is a dead-letter queue; it needs none of its own."})
            queue = sqs.Queue(
                self,
                f"{_camel(name)}Queue",
                visibility_timeout=Duration.seconds(spec.visibility_timeout_s),
                retention_period=Duration.days(spec.retention_days),
                encryption=sqs.QueueEncryption.SQS_MANAGED,
                enforce_ssl=True,
                dead_letter_queue=sqs.DeadLetterQueue(queue=dlq, max_receive_count=spec.max_receive_count),
            )
            functions[spec.consumer].add_event_source(
                sources.SqsEventSource(
                    queue,
                    batch_size=spec.batch_size,
                    max_batching_window=Duration.seconds(spec.max_batching_window_s),
                    report_batch_item_failures=True,
                    max_concurrency=spec.max_concurrency,
                )
            )
            watch.watch_dead_letter_queue(name, dlq)
            watch.add_alarm(
                cloudwatch.Alarm(
                    self,
                    f"{_camel(name)}Backlog",
                    metric=queue.metric_approximate_age_of_oldest_message(
                        period=Duration.minutes(5), statistic="Maximum"
                    ),
                    threshold=OLDEST_MESSAGE_ALARM.to_seconds(),
                    evaluation_periods=3,
                    comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                    treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                    alarm_description=f"{name} queue: oldest message older than {OLDEST_MESSAGE_MINUTES} min",
                )
            )
            self.queues[name], self.dead_letter_queues[name] = queue, dlq

        # --- rules: domain events → queues ------------------------------------------------
        self.delivery_dlq = sqs.Queue(
            self,
            "DeliveryDlq",
            retention_period=Duration.days(14),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
        )
        acknowledge(self.delivery_dlq, {"AwsSolutions-SQS3": "Dead-letter queue of the EventBridge targets."})
        watch.watch_dead_letter_queue("event-delivery", self.delivery_dlq)
        self.rules: dict[str, events.Rule] = {}
        for rule in EVENT_RULES.values():
            self.rules[rule.name] = events.Rule(
                self,
                f"{_camel(rule.name)}Rule",
                event_bus=shared.bus.bus,
                description=f"{', '.join(rule.detail_types)} → {rule.queue} queue",
                event_pattern=events.EventPattern(source=[EVENT_SOURCE], detail_type=list(rule.detail_types)),
                targets=[
                    targets.SqsQueue(
                        self.queues[rule.queue],
                        dead_letter_queue=self.delivery_dlq,
                        retry_attempts=20,
                        max_event_age=Duration.hours(24),
                    )
                ],
            )

        # --- workflows ----------------------------------------------------------------------
        self.state_machines: dict[str, sfn.StateMachine] = {}
        for name, spec in WORKFLOWS.items():
            log_group = logs.LogGroup(
                self, f"{_camel(name)}Logs", retention=retention, removal_policy=RemovalPolicy.DESTROY
            )
            # A fixed name gives an ARN known without referencing the machine: a function that both
            # runs tasks of a workflow and starts it (the sandbox) would otherwise be a cycle.
            machine_name = f"{Stack.of(self).stack_name}-{_camel(name)}"
            machine_arn = Stack.of(self).format_arn(
                service="states",
                resource="stateMachine",
                resource_name=machine_name,
                arn_format=ArnFormat.COLON_RESOURCE_NAME,
            )
            machine = sfn.StateMachine(
                self,
                _camel(name),
                state_machine_name=machine_name,
                # Inline rather than from_file (an S3 asset): the template shows the definition.
                definition_body=sfn.DefinitionBody.from_string((REPO_ROOT / spec.definition).read_text("utf-8")),
                definition_substitutions={k: functions[fn].function_arn for k, fn in spec.substitutions.items()},
                timeout=Duration.seconds(spec.timeout_s),
                tracing_enabled=True,
                # Execution data stays out of the logs: it names tenants, sessions and jobs.
                logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
            )
            for fn in spec.task_functions:
                functions[fn].grant_invoke(machine)
            for fn in spec.started_by:
                functions[fn].add_to_role_policy(
                    iam.PolicyStatement(actions=["states:StartExecution"], resources=[machine_arn])
                )
                functions[fn].add_environment(arn_env(spec), machine_arn)
            acknowledge(
                machine,
                {
                    **{
                        f"AwsSolutions-IAM5[Resource::<{_logical_id(functions[fn])}.Arn>:*]": (
                            f"Invokes {fn} (named) by any version or alias: what grant_invoke grants."
                        )
                        for fn in spec.task_functions
                    },
                    "AwsSolutions-IAM5[Resource::*]": (
                        "Vended log delivery (logs:*LogDelivery, DescribeLogGroups, *ResourcePolicies) and X-Ray "
                        "tracing support no resource scoping; AWS documents Resource * for both."
                    ),
                },
            )
            for metric, what in (
                (machine.metric_failed(period=Duration.minutes(5), statistic="Sum"), "failed"),
                (machine.metric_timed_out(period=Duration.minutes(5), statistic="Sum"), "timed out"),
            ):
                watch.add_alarm(
                    cloudwatch.Alarm(
                        self,
                        f"{_camel(name)}{_camel(what.replace(' ', '_'))}",
                        metric=metric,
                        threshold=1,
                        evaluation_periods=1,
                        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                        alarm_description=f"{name}: executions {what} (the job's error says why)",
                    )
                )
            self.state_machines[name] = machine
        if any(spec.started_by for spec in WORKFLOWS.values()):
            # The starters run in the isolated app tier: Step Functions through an interface endpoint.
            shared.network.add_interface_endpoint("StepFunctions", ec2.InterfaceVpcEndpointAwsService.STEP_FUNCTIONS)

        # --- schedules ------------------------------------------------------------------------
        self.schedules: dict[str, events.Rule] = {}
        for spec in SCHEDULES.values():
            self.schedules[spec.name] = events.Rule(
                self,
                f"{_camel(spec.name)}Schedule",
                description=f"every {spec.rate_minutes} min → {spec.function}",
                schedule=events.Schedule.rate(Duration.minutes(spec.rate_minutes)),
                targets=[
                    targets.LambdaFunction(
                        functions[spec.function], retry_attempts=2, dead_letter_queue=self.delivery_dlq
                    )
                ],
            )
