"""Audit, GDPR and privacy resources (docs/governance.md).

What the wiring already gives (and this construct does not duplicate):

- the ``audit``, ``governance`` functions and their roles (``Functions``, from ``wiring.FUNCTIONS``);
- the audit queue with its DLQ feeding the ``audit_intake`` consumer, and the scheduled rules
  ``audit_append`` (every minute → ``audit``) and ``governance`` (hourly retention purge and
  job recovery → ``governance``) — the ``Pipeline`` construct builds every ``QUEUES`` and
  ``SCHEDULES`` entry.

What this construct adds:

- the **export bucket**: SSE-KMS with a customer-managed key (rotated yearly; exports hold
  everything about a person, so every decrypt is a CloudTrail event), all public access
  blocked, TLS enforced, objects expired after ``EXPORT_EXPIRY_DAYS``;
- the **governance jobs queue** (export/erase jobs; SSE, TLS only) with a DLQ and redrive,
  consumed by the governance function one job at a time;
- the **privacy master secret** the hash action's per-tenant keys derive from, readable only
  by the functions that write turns and memories;
- least-privilege grants: the governance function may write/read/delete ``exports/*`` only,
  use the key for that, send to its own jobs queue; nothing else gains anything;
- alarms on lost audit records and failing audit appends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from context_engine.governance.settings import GovernanceSettings
from context_engine.wiring import FUNCTIONS
from infra_cdk.nag import acknowledge

if TYPE_CHECKING:
    from infra_cdk.stack import Shared


def _logical_id(construct: Construct) -> str:
    """The CloudFormation logical ID of an L2 construct's resource (as cdk-nag names it)."""
    stack = Stack.of(construct)
    return str(stack.resolve(stack.get_logical_id(construct.node.default_child)))  # type: ignore[arg-type]

GOVERNANCE = "governance"
AUDIT = "audit"
# Functions that store turns or memories: they apply the tenant's privacy policy on write.
PRIVACY_WRITERS = ("write",)
EXPORT_PREFIX: str = GovernanceSettings.model_fields["export_prefix"].default
EXPORT_EXPIRY_DAYS = 7
JOB_MAX_RECEIVES = 3
METRICS_NAMESPACE = "ContextEngine"
SERVICE = "context-engine"


class Governance(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, shared: Shared) -> None:
        super().__init__(scope, construct_id)
        functions = shared.functions.by_name
        for name in (GOVERNANCE, AUDIT, *PRIVACY_WRITERS):
            if name not in functions:
                raise KeyError(f"wiring.FUNCTIONS has no {name!r} function")
        governance = functions[GOVERNANCE]
        watch = shared.observability

        # --- export bucket ------------------------------------------------------------------
        self.export_key = kms.Key(
            self, "ExportKey", enable_key_rotation=True, removal_policy=RemovalPolicy.RETAIN,
            description="GDPR exports (Context Engine)",
        )
        self.export_bucket = s3.Bucket(
            self,
            "ExportBucket",
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.export_key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=False,  # an erased user's export must really go away, not become a version
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="ExpireExports",
                    prefix=EXPORT_PREFIX,
                    expiration=Duration.days(EXPORT_EXPIRY_DAYS),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
        acknowledge(
            self.export_bucket,
            {
                "AwsSolutions-S1": "Exports are fetched through presigned URLs the governance function issues; "
                "each export is recorded in the tamper-evident audit log (user.exported) and every object read "
                "decrypts with the customer-managed key, which CloudTrail records. Server access logs would "
                "add a second copy of the object keys without adding who asked for the export.",
            },
        )
        # Exact actions on the export prefix only (the grant_* helpers add wildcard actions and bucket
        # listing). Presigned GETs act with the signer's permissions, hence GetObject; erasure
        # deletes earlier exports, hence DeleteObject.
        exports = self.export_bucket.arn_for_objects(f"{EXPORT_PREFIX}*")
        governance.add_to_role_policy(iam.PolicyStatement(
            sid="Exports", actions=["s3:PutObject", "s3:GetObject", "s3:DeleteObject"], resources=[exports]))
        governance.add_to_role_policy(iam.PolicyStatement(
            sid="ExportKey", actions=["kms:GenerateDataKey", "kms:Decrypt"], resources=[self.export_key.key_arn]))
        acknowledge(
            shared.functions.roles[GOVERNANCE],
            {
                f"AwsSolutions-IAM5[Resource::<{_logical_id(self.export_bucket)}.Arn>/{EXPORT_PREFIX}*]": (
                    "Objects under the exports/ prefix of the export bucket: one object per export job, "
                    "named by tenant and job id, so no narrower resource exists ahead of time."
                ),
            },
        )
        governance.add_environment("CONTEXT_ENGINE_EXPORT_BUCKET", self.export_bucket.bucket_name)
        governance.add_environment("CONTEXT_ENGINE_EXPORT_KMS_KEY_ID", self.export_key.key_arn)
        governance.add_environment("CONTEXT_ENGINE_EXPORT_PREFIX", EXPORT_PREFIX)

        # --- governance jobs queue ----------------------------------------------------------
        timeout_s = FUNCTIONS[GOVERNANCE].timeout_s
        self.jobs_dlq = sqs.Queue(
            self, "JobsDlq", retention_period=Duration.days(14), encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
        )
        acknowledge(self.jobs_dlq, {"AwsSolutions-SQS3": "This is the governance jobs queue's dead-letter queue."})
        self.jobs_queue = sqs.Queue(
            self,
            "JobsQueue",
            # AWS guidance: at least 6x the consumer's timeout, so a long export is not redelivered mid-run.
            visibility_timeout=Duration.seconds(6 * timeout_s),
            retention_period=Duration.days(4),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.jobs_dlq, max_receive_count=JOB_MAX_RECEIVES),
        )
        governance.add_event_source(
            sources.SqsEventSource(self.jobs_queue, batch_size=1, report_batch_item_failures=True, max_concurrency=2)
        )
        self.jobs_queue.grant_send_messages(governance)
        governance.add_environment("CONTEXT_ENGINE_GOVERNANCE_JOBS_QUEUE_URL", self.jobs_queue.queue_url)
        watch.watch_dead_letter_queue("governance-jobs", self.jobs_dlq)

        # --- privacy master secret ----------------------------------------------------------
        self.privacy_secret = secretsmanager.Secret(
            self,
            "PrivacyMasterSecret",
            description="Master secret of the privacy policy's hash action (per-tenant keys derive from it)",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=64, exclude_punctuation=True, include_space=False
            ),
            removal_policy=RemovalPolicy.RETAIN,
        )
        acknowledge(
            self.privacy_secret,
            {
                "AwsSolutions-SMG4": "Not rotated on purpose: hash tokens must stay stable to be joinable, and "
                "rotating would silently split every tenant's tokens. A tenant's tokens are made unlinkable by "
                "replacing its salt (tenants.privacy_salt) instead; see docs/governance.md.",
            },
        )
        for name in PRIVACY_WRITERS:
            self.privacy_secret.grant_read(functions[name])
            functions[name].add_environment("CONTEXT_ENGINE_PRIVACY_SECRET_ARN", self.privacy_secret.secret_arn)

        # --- alarms ------------------------------------------------------------------------
        for metric_name, what in (
            ("AuditRecordsLost", "a request's audit record could not be stored"),
            ("AuditAppendFailures", "a tenant's audit intake could not be appended to its chain"),
        ):
            watch.add_alarm(
                cloudwatch.Alarm(
                    self,
                    metric_name,
                    metric=cloudwatch.Metric(
                        namespace=METRICS_NAMESPACE, metric_name=metric_name, dimensions_map={"service": SERVICE},
                        period=Duration.minutes(5), statistic="Sum",
                    ),
                    threshold=1,
                    evaluation_periods=1,
                    comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                    treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                    alarm_description=f"Audit: {what}",
                )
            )
