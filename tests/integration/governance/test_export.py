"""GDPR export: one JSON document with everything about the user, as a local file or an S3
object (moto) with a presigned URL; the job shows where it is."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from context_engine.audit.models import AuditEntry
from context_engine.governance import jobs as job_runner
from context_engine.governance.models import PutTenantRequest
from context_engine.governance.settings import get_governance_settings
from context_engine.models.api import PutAgentRequest
from context_engine.models.domain import Classification
from context_engine.repos import jobs
from context_engine.services import agents, audit, governance, tenants


def seed(writer, tenant: str) -> None:  # type: ignore[no-untyped-def]
    rt = writer.rt
    agents.put_agent(rt, writer.principal, "agent-1", PutAgentRequest(classification=Classification.restricted))
    tenants.put_settings(rt, writer.principal, PutTenantRequest(classification=Classification.confidential))
    writer.turn("s1", "u1", "Where is my parcel?", "It ships Monday.")
    writer.turn("s1", "u1", "Thanks!", "You're welcome.")
    writer.tool_call("s1", "u1", "track-1", {"parcel": "P-77"}, {"status": "in transit"})
    writer.memory("u1", "u1 orders parcels often")
    writer.turn("s2", "u2", "Unrelated question from u2", "Unrelated answer")
    writer.memory("u2", "u2 memory")
    with rt.db.tenant(tenant) as conn:
        conn.execute("update context_windows set summary = 'u1 asked about a parcel.', summary_seqs = '{1}',"
                     " summary_covers_seq = 1 where tenant_id = %s and session_id = 's1'", [tenant])
    audit.record(rt, tenant, [
        AuditEntry(actor="key_x", role="reader", action="context.query", resource_type="context",
                   resource_id="s1", details={"user_id": "u1"}),
        AuditEntry(actor="key_x", role="reader", action="session.read", resource_type="session", resource_id="s1"),
        AuditEntry(actor="key_x", role="reader", action="session.read", resource_type="session", resource_id="s2"),
    ])
    audit.append_pending(rt, tenant)


def check_document(doc: dict) -> None:  # type: ignore[type-arg]
    assert doc["format"] == "context-engine.user-export.v1" and doc["user_id"] == "u1"
    assert [s["id"] for s in doc["sessions"]] == ["s1"]
    s1 = doc["sessions"][0]
    assert [t["question"] for t in s1["turns"]] == ["Where is my parcel?", "Thanks!"]
    assert s1["tool_calls"][0]["arguments"] == {"parcel": "P-77"}
    assert s1["tool_calls"][0]["result"] == {"status": "in transit"}
    assert s1["context_window"]["summary"] == "u1 asked about a parcel."
    assert [m["content"] for m in doc["memories"]] == ["u1 orders parcels often"]
    assert doc["classification"] == {"tenant": "confidential",
                                     "agents": {"agent-1": {"classification": "restricted",
                                                            "effective": "restricted"}}}
    about = {(r["action"], r["resource_id"]) for r in doc["audit_records"]}
    assert ("context.query", "s1") in about and ("session.read", "s1") in about
    assert ("session.read", "s2") not in about
    assert "Unrelated" not in json.dumps(doc) and "u2 memory" not in json.dumps(doc)
    assert doc["counts"]["turns"] == 2 and doc["counts"]["summaries"] == 1


def test_export_to_a_local_file(writer, admin) -> None:  # type: ignore[no-untyped-def]
    rt, tenant = writer.rt, admin.tenant_id
    seed(writer, tenant)
    accepted = governance.request_export(rt, admin, "u1")
    assert accepted.status == "queued"
    job_runner.wait_local(30)  # the local runner: a background thread
    with rt.db.tenant(tenant) as conn:
        job = jobs.get(conn, tenant, accepted.job_id)
    assert job is not None and job.status == "succeeded", job
    path = Path(job.result["location"]["path"])
    assert path.is_relative_to(Path(rt.settings.data_dir).resolve() / "exports")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert job.result["url"] == path.as_uri()
    doc = json.loads(path.read_bytes())
    check_document(doc)
    assert job.result["counts"] == doc["counts"]
    # The export itself is audited (counts, no content).
    audit.append_pending(rt, tenant)
    with rt.db.tenant(tenant) as conn:
        row = conn.execute("select details from audit_log where tenant_id = %s and action = 'user.exported'",
                           [tenant]).fetchone()
    assert row["details"]["counts"]["turns"] == 2


@pytest.mark.parametrize("with_kms", [False, True])
def test_export_to_s3_with_a_presigned_url(writer, admin, manual_jobs, monkeypatch, with_kms) -> None:  # type: ignore[no-untyped-def]
    rt, tenant = writer.rt, admin.tenant_id
    seed(writer, tenant)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="ce-exports")
        monkeypatch.setenv("CONTEXT_ENGINE_EXPORT_BUCKET", "ce-exports")
        key_id = None
        if with_kms:
            key_id = boto3.client("kms", region_name="us-east-1").create_key()["KeyMetadata"]["KeyId"]
            monkeypatch.setenv("CONTEXT_ENGINE_EXPORT_KMS_KEY_ID", key_id)
        get_governance_settings.cache_clear()
        accepted = governance.request_export(rt, admin, "u1")
        job = governance.run_job(rt, tenant, accepted.job_id)
        assert job is not None and job.status == "succeeded"
        loc = job.result["location"]
        assert loc["kind"] == "s3" and loc["bucket"] == "ce-exports"
        assert loc["key"] == f"exports/{tenant}/{accepted.job_id}.json" and "u1" not in loc["key"]
        assert "X-Amz-Signature" in job.result["url"] or "Signature" in job.result["url"]
        assert job.result["url_expires_at"]
        obj = s3.get_object(Bucket="ce-exports", Key=loc["key"])
        assert obj["ServerSideEncryption"] == ("aws:kms" if with_kms else "AES256")
        if with_kms:
            assert key_id in obj["SSEKMSKeyId"]
        check_document(json.loads(obj["Body"].read()))
