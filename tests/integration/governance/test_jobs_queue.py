"""The AWS job path: a GDPR request puts a job message on the governance jobs queue (moto SQS);
the governance function consumes it, reports failed jobs as batch item failures, and its
scheduled run purges and resumes."""

from __future__ import annotations

import boto3
from moto import mock_aws

from context_engine.governance.settings import get_governance_settings
from context_engine.local.gateway import LocalLambdaContext, load_function
from context_engine.pipeline.aws_events import scheduled_event, sqs_batch, sqs_record
from context_engine.repos import jobs
from context_engine.services import governance


def test_jobs_travel_through_the_queue_to_the_governance_function(writer, admin, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    rt, tenant = writer.rt, admin.tenant_id
    writer.turn("s1", "u1", "hello", "hi")
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="governance-jobs")["QueueUrl"]
        monkeypatch.setenv("CONTEXT_ENGINE_GOVERNANCE_JOBS_QUEUE_URL", url)
        get_governance_settings.cache_clear()
        accepted = governance.request_erase(rt, admin, "u1")
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert len(messages) == 1
    with rt.db.tenant(tenant) as conn:
        assert jobs.get(conn, tenant, accepted.job_id).status == "queued"  # type: ignore[union-attr]

    good = sqs_record(messages[0]["Body"], "governance-jobs")
    poison = sqs_record('{"kind": "governance_job", "tenant_id": "x"}', "governance-jobs")
    handler = load_function("governance").handler
    result = handler(sqs_batch([good, poison]), LocalLambdaContext("governance"))
    assert result == {"batchItemFailures": [{"itemIdentifier": poison["messageId"]}]}
    with rt.db.tenant(tenant) as conn:
        job = jobs.get(conn, tenant, accepted.job_id)
        left = conn.execute("select count(*) n from turns where tenant_id = %s", [tenant]).fetchone()["n"]
    assert job is not None and job.status == "succeeded" and left == 0
    # A redelivered message finds the job finished and does nothing.
    assert handler(sqs_batch([good]), LocalLambdaContext("governance")) == {"batchItemFailures": []}


def test_the_scheduled_governance_run(gov_runtime) -> None:  # type: ignore[no-untyped-def]
    result = load_function("governance").handler(scheduled_event("governance"), LocalLambdaContext("governance"))
    assert set(result) == {"purged_tenants", "resumed_jobs"}
