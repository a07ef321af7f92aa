"""The governance construct: an encrypted, private, expiring export bucket; the jobs queue with
its DLQ; the privacy secret readable only by the functions that write; grants scoped to the
export prefix; the audit and retention schedules from the wiring."""

from __future__ import annotations

import json
from typing import Any

import pytest
from infra_cdk.constructs.governance import EXPORT_EXPIRY_DAYS, EXPORT_PREFIX, JOB_MAX_RECEIVES, PRIVACY_WRITERS

from context_engine.wiring import FUNCTIONS, SCHEDULES

pytestmark = pytest.mark.infra


def lid(synth: Any, construct: Any) -> str:
    return str(synth.logical_id(construct))


def props(synth: Any, construct: Any) -> dict[str, Any]:
    return dict(synth.resources[lid(synth, construct)]["Properties"])


def role_statements(synth: Any, function: str) -> list[dict[str, Any]]:
    role_id = lid(synth, synth.stack.functions.roles[function])
    out = []
    for resource in synth.of_type("AWS::IAM::Policy").values():
        p = resource["Properties"]
        if {"Ref": role_id} in p["Roles"]:
            out.extend(p["PolicyDocument"]["Statement"])
    return out


def test_the_export_bucket_is_encrypted_private_tls_only_and_expiring(synth: Any) -> None:
    gov = synth.stack.governance
    bucket = props(synth, gov.export_bucket)
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert rule["ServerSideEncryptionByDefault"]["KMSMasterKeyID"] == {"Fn::GetAtt": [lid(synth, gov.export_key),
                                                                                      "Arn"]}
    assert bucket["PublicAccessBlockConfiguration"] == {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                                        "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
    (lifecycle,) = bucket["LifecycleConfiguration"]["Rules"]
    assert lifecycle["ExpirationInDays"] == EXPORT_EXPIRY_DAYS and lifecycle["Prefix"] == EXPORT_PREFIX
    assert "VersioningConfiguration" not in bucket
    policy = next(r["Properties"] for r in synth.of_type("AWS::S3::BucketPolicy").values()
                  if r["Properties"]["Bucket"] == {"Ref": lid(synth, gov.export_bucket)})
    deny_insecure = [s for s in policy["PolicyDocument"]["Statement"]
                     if s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}]
    assert deny_insecure
    assert props(synth, gov.export_key)["EnableKeyRotation"] is True


def test_only_the_governance_function_touches_exports_and_only_under_the_prefix(synth: Any) -> None:
    bucket_id = lid(synth, synth.stack.governance.export_bucket)
    for name in FUNCTIONS:
        s3 = [s for s in role_statements(synth, name) if bucket_id in json.dumps(s["Resource"])]
        if name != "governance":
            assert s3 == [], f"{name} may touch the export bucket"
            continue
        actions = {a for s in s3 for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])}
        assert actions == {"s3:PutObject", "s3:DeleteObject", "s3:GetObject"}
        assert not any(a.startswith(("s3:List", "s3:GetBucket")) for a in actions)
        for s in s3:
            for resource in s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]:
                assert f"/{EXPORT_PREFIX}*" in json.dumps(resource), resource


def test_jobs_queue_has_a_dlq_and_feeds_the_governance_function(synth: Any) -> None:
    gov = synth.stack.governance
    q = props(synth, gov.jobs_queue)
    assert q["RedrivePolicy"]["maxReceiveCount"] == JOB_MAX_RECEIVES
    assert q["VisibilityTimeout"] >= 6 * FUNCTIONS["governance"].timeout_s and q["SqsManagedSseEnabled"] is True
    mapping = next(m["Properties"] for m in synth.of_type("AWS::Lambda::EventSourceMapping").values()
                   if m["Properties"]["EventSourceArn"] == {"Fn::GetAtt": [lid(synth, gov.jobs_queue), "Arn"]})
    assert mapping["FunctionName"] == {"Ref": lid(synth, synth.stack.functions.by_name["governance"])}
    assert mapping["BatchSize"] == 1 and mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    env = props(synth, synth.stack.functions.by_name["governance"])["Environment"]["Variables"]
    assert env["CONTEXT_ENGINE_GOVERNANCE_JOBS_QUEUE_URL"] == {"Ref": lid(synth, gov.jobs_queue)}
    assert env["CONTEXT_ENGINE_EXPORT_BUCKET"] == {"Ref": lid(synth, gov.export_bucket)}


def test_the_privacy_secret_is_readable_only_by_the_writers(synth: Any) -> None:
    secret_id = lid(synth, synth.stack.governance.privacy_secret)
    for name in FUNCTIONS:
        reads = [s for s in role_statements(synth, name)
                 if "secretsmanager:GetSecretValue" in json.dumps(s["Action"]) and secret_id in json.dumps(s)]
        env = props(synth, synth.stack.functions.by_name[name])["Environment"]["Variables"]
        if name in PRIVACY_WRITERS:
            assert reads and env["CONTEXT_ENGINE_PRIVACY_SECRET_ARN"] == {"Ref": secret_id}
        else:
            assert not reads and "CONTEXT_ENGINE_PRIVACY_SECRET_ARN" not in env


def test_the_audit_and_retention_schedules_run_their_functions(synth: Any) -> None:
    pipeline = synth.stack.pipeline
    for name in ("audit_append", "governance"):
        spec = SCHEDULES[name]
        rule = props(synth, pipeline.schedules[name])
        assert rule["ScheduleExpression"] in (f"rate({spec.rate_minutes} minutes)", "rate(1 minute)",
                                              f"rate({spec.rate_minutes // 60} hour)")
        (target,) = rule["Targets"]
        assert target["Arn"] == {"Fn::GetAtt": [lid(synth, synth.stack.functions.by_name[spec.function]), "Arn"]}
