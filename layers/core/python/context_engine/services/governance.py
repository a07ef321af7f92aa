"""GDPR export and erase, and the scheduled governance run (retention, stalled jobs).

Both GDPR operations are jobs: the request answers 202 with the job id, the work runs in
the governance function (locally a background thread) and ``GET /v1/jobs/{id}`` shows the
result. Only a tenant-wide admin key may start them: an agent-scoped key would otherwise
reach data of agents outside its scope.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal
from uuid import UUID, uuid4

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from context_engine.audit.models import SYSTEM_ACTOR, SYSTEM_ROLE, AuditEntry
from context_engine.errors import Forbidden
from context_engine.governance import erase, export, retention
from context_engine.governance import jobs as runner
from context_engine.governance.models import GovernanceJobAccepted, JobInvocation
from context_engine.governance.settings import GovernanceSettings, get_governance_settings
from context_engine.models.domain import Job, Principal
from context_engine.repos import jobs
from context_engine.runtime import Runtime, get_runtime
from context_engine.services import audit
from context_engine.services.authz import Action, require

log = logging.getLogger(__name__)


def _require_tenant_wide_admin(principal: Principal) -> None:
    require(principal, Action.govern)
    if principal.agent_id is not None:
        raise Forbidden("export and erase need a tenant-wide admin key (this key is scoped to one agent)")


def _resource(principal: Principal, user_id: str, request_id: str | None) -> dict[str, Any]:
    return {"user_id": user_id, "requested_by": principal.key_id, "request_id": request_id}


def request_export(rt: Runtime, principal: Principal, user_id: str, *, request_id: str | None = None
                   ) -> GovernanceJobAccepted:
    _require_tenant_wide_admin(principal)
    tenant = principal.tenant_id
    with rt.db.tenant(tenant) as conn:
        job = jobs.create(conn, tenant, uuid4(), export.JOB_KIND,
                          _resource(principal, user_id, request_id), principal.key_id)
    runner.submit(rt, get_governance_settings(), tenant, job.id, _run_in_background)
    return GovernanceJobAccepted(job_id=job.id, status=job.status)


def request_erase(rt: Runtime, principal: Principal, user_id: str, *, request_id: str | None = None
                  ) -> GovernanceJobAccepted:
    """Idempotent: an unfinished erasure of the same user is resumed rather than doubled."""
    _require_tenant_wide_admin(principal)
    tenant = principal.tenant_id
    with rt.db.tenant(tenant) as conn:
        conn.execute("select pg_advisory_xact_lock(hashtextextended('ce_erase:' || %s || ':' || %s, 0))",
                     [tenant, user_id])  # two concurrent DELETEs of one user agree on one job
        row = conn.execute(
            "select id from jobs where tenant_id = %s and kind = %s and resource->>'user_id' = %s"
            " and status <> 'succeeded' order by created_at desc limit 1",
            [tenant, erase.JOB_KIND, user_id]).fetchone()
        if row is not None:
            job = jobs.get(conn, tenant, row["id"])
        else:
            job = jobs.create(conn, tenant, uuid4(), erase.JOB_KIND, _resource(principal, user_id, request_id),
                              principal.key_id)
    assert job is not None
    runner.submit(rt, get_governance_settings(), tenant, job.id, _run_in_background)
    return GovernanceJobAccepted(job_id=job.id, status=job.status)


# --- running ----------------------------------------------------------------------------
def _run_export(rt: Runtime, tenant: str, job: Job, gov: GovernanceSettings) -> None:
    user = str(job.resource["user_id"])
    with rt.db.tenant(tenant) as conn:
        document = export.build_document(conn, tenant, user, job_id=job.id)
    result = export.write_export(export.export_store(rt, gov), tenant, job.id, document)
    with rt.db.tenant(tenant) as conn:
        jobs.set_status(conn, tenant, job.id, "succeeded", result=result.model_dump(mode="json"))
        audit.record_in(conn, tenant, [AuditEntry(
            id=f"export:{job.id}", actor=SYSTEM_ACTOR, role=SYSTEM_ROLE, action="user.exported",
            resource_type="user", resource_id=user, request_id=job.resource.get("request_id"),
            details={"user_id": user, "job_id": str(job.id), "requested_by": job.resource.get("requested_by"),
                     "counts": result.counts, "bytes": result.bytes, "storage": result.location.kind})])


def run_job(rt: Runtime, tenant_id: str, job_id: UUID, *, after_step: erase.StepHook | None = None) -> Job | None:
    """Run (or resume) one governance job. None when there was nothing to run (finished, or
    another runner holds it). A failure is recorded on the job and raised."""
    gov = get_governance_settings()
    job = runner.claim(rt, tenant_id, job_id, gov)
    if job is None:
        return None
    try:
        if job.kind == erase.JOB_KIND:
            erase.run(rt, tenant_id, job, gov, after_step=after_step)
        else:
            _run_export(rt, tenant_id, job, gov)
    except Exception as exc:
        error = {"code": "job_failed", **runner.error_summary(exc)}
        runner.fail(rt, tenant_id, job.id, error)
        log.error("governance job failed", extra={"tenant_id": tenant_id, "job_id": str(job_id), "kind": job.kind,
                                                  "error": error})
        raise
    with rt.db.tenant(tenant_id) as conn:
        return jobs.get(conn, tenant_id, job.id)


def _run_in_background(rt: Runtime, tenant_id: str, job_id: UUID) -> None:
    try:
        run_job(rt, tenant_id, job_id)
    except Exception:  # recorded on the job and logged by run_job; the schedule retries erasures
        return


def run_schedule(rt: Runtime) -> dict[str, Any]:
    """The scheduled governance run: retention purges, then jobs whose runner died."""
    gov = get_governance_settings()
    purged = retention.purge_all(rt, gov)
    resumed = 0
    for tenant, job_id in runner.to_resume(rt, gov):
        try:
            if run_job(rt, tenant, job_id) is not None:
                resumed += 1
        except Exception:  # recorded on the job and logged by run_job; keep resuming the others
            log.warning("resumed governance job failed", extra={"tenant_id": tenant, "job_id": str(job_id)})
    return {"purged_tenants": len(purged), "resumed_jobs": resumed}


# --- the governance function's three kinds of events ---------------------------------------
EventKind = Literal["http", "jobs", "schedule"]


def event_kind(event: Mapping[str, Any]) -> EventKind:
    """API Gateway request, a batch from the governance jobs queue, or the scheduled run."""
    if "requestContext" in event and "routeKey" in event:
        return "http"
    records = event.get("Records")
    if isinstance(records, list) and records and all(r.get("eventSource") == "aws:sqs" for r in records):
        return "jobs"
    if event.get("source") == "aws.events" and event.get("detail-type") == "Scheduled Event":
        return "schedule"
    raise ValueError("not an API request, governance job batch or scheduled event")


def consume_job_batch(event: dict[str, Any], context: Any, rt: Runtime | None = None) -> dict[str, Any]:
    """Run the jobs named by a batch from the governance jobs queue; a failed job is reported
    as a batch item failure, so SQS redelivers it (and moves it to the DLQ in the end)."""
    runtime = rt or get_runtime()

    def record_handler(record: SQSRecord) -> None:
        job = JobInvocation.model_validate_json(record.body)
        run_job(runtime, job.tenant_id, job.job_id)

    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return dict(process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                         context=context))
