"""Alarms, one SNS topic they notify, and one dashboard.

Other constructs register what they own: ``watch_function``, ``watch_api``,
``watch_database``, ``watch_dead_letter_queue`` (each adds alarms and dashboard graphs) or,
for any other alarm, ``add_alarm`` (which sends its state changes to the topic).
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_rds as rds
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

PERIOD = Duration.minutes(5)
GE = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
# API 5xx per 5 minutes before paging: single errors show on the dashboard and in function alarms.
API_5XX_THRESHOLD = 5


class Observability(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, alarm_email: str = "") -> None:
        super().__init__(scope, construct_id)
        # A customer managed key: CloudWatch cannot publish to a topic under the AWS managed SNS key.
        key = kms.Key(self, "AlarmTopicKey", description="Context Engine alarm topic", enable_key_rotation=True)
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],  # in a key policy, "*" is this key
            )
        )
        self.topic = sns.Topic(
            self, "AlarmTopic", display_name="Context Engine alarms", master_key=key, enforce_ssl=True
        )
        if alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
        self._action = cw_actions.SnsAction(self.topic)
        self.alarms: list[cloudwatch.Alarm] = []
        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", default_interval=Duration.hours(3))

    def add_alarm(self, alarm: cloudwatch.Alarm) -> cloudwatch.Alarm:
        alarm.add_alarm_action(self._action)
        alarm.add_ok_action(self._action)
        self.alarms.append(alarm)
        return alarm

    def _alarm(
        self,
        scope: Construct,
        construct_id: str,
        metric: cloudwatch.IMetric,
        threshold: float,
        description: str,
        *,
        periods: int = 1,
    ) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            scope,
            construct_id,
            metric=metric,
            threshold=threshold,
            evaluation_periods=periods,
            comparison_operator=GE,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=description,
        )
        return self.add_alarm(alarm)

    def watch_function(self, name: str, fn: lambda_.Function, timeout: Duration) -> None:
        """Unhandled errors (handlers map domain errors to responses, so any is a bug), throttles,
        and p99 duration near the timeout."""
        scope = Construct(self, f"Fn-{name}")
        self._alarm(scope, "Errors", fn.metric_errors(period=PERIOD, statistic="Sum"), 1, f"{name}: unhandled errors")
        self._alarm(scope, "Throttles", fn.metric_throttles(period=PERIOD, statistic="Sum"), 1, f"{name}: throttled")
        self._alarm(
            scope,
            "NearTimeout",
            fn.metric_duration(period=PERIOD, statistic="p99"),
            timeout.to_milliseconds() * 0.8,
            f"{name}: p99 duration above 80% of the timeout",
            periods=3,
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title=f"{name}: invocations, errors, throttles",
                left=[
                    fn.metric_invocations(period=PERIOD),
                    fn.metric_errors(period=PERIOD),
                    fn.metric_throttles(period=PERIOD),
                ],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title=f"{name}: duration",
                left=[
                    fn.metric_duration(period=PERIOD, statistic="p50"),
                    fn.metric_duration(period=PERIOD, statistic="p95"),
                    fn.metric_duration(period=PERIOD, statistic="p99"),
                ],
                width=12,
            ),
        )

    def watch_api(self, api: apigwv2.HttpApi) -> None:
        self._alarm(
            self,
            "Api5xx",
            api.metric_server_error(period=PERIOD, statistic="Sum"),
            API_5XX_THRESHOLD,
            f"HTTP API: {API_5XX_THRESHOLD}+ 5xx responses in 5 minutes",
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="API: requests and errors",
                left=[
                    api.metric_count(period=PERIOD),
                    api.metric_client_error(period=PERIOD),
                    api.metric_server_error(period=PERIOD),
                ],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="API: latency",
                left=[
                    api.metric_latency(period=PERIOD, statistic="p50"),
                    api.metric_latency(period=PERIOD, statistic="p95"),
                    api.metric_integration_latency(period=PERIOD, statistic="p95"),
                ],
                width=12,
            ),
        )

    def watch_database(self, cluster: rds.DatabaseCluster) -> None:
        acu = cluster.metric("ACUUtilization", period=PERIOD, statistic="Average")
        self._alarm(self, "DbCapacity", acu, 90, "Aurora at 90% of its maximum ACUs (raise dbMaxAcu)", periods=3)
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Aurora: capacity and connections",
                left=[acu],
                right=[cluster.metric_database_connections(period=PERIOD)],
                width=24,
            )
        )

    def watch_dead_letter_queue(self, name: str, queue: sqs.IQueue) -> None:
        """Any message in a DLQ is an event a consumer gave up on."""
        visible = queue.metric_approximate_number_of_messages_visible(period=PERIOD, statistic="Maximum")
        self._alarm(
            Construct(self, f"Dlq-{name}"), "Messages", visible, 1, f"{name}: messages in the dead-letter queue"
        )
        self.dashboard.add_widgets(cloudwatch.GraphWidget(title=f"{name} DLQ", left=[visible], width=8))
