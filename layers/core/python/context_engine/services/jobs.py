from __future__ import annotations

from uuid import UUID

from context_engine.errors import NotFound
from context_engine.models.domain import Job, Principal
from context_engine.repos import jobs
from context_engine.runtime import Runtime
from context_engine.services.authz import Action, require

# Jobs whose result points at a person's whole data (an export's download link) are
# governance jobs: only those who may start them may read them.
GOVERNANCE_KINDS = frozenset({"export", "erase"})


def get_job(rt: Runtime, principal: Principal, job_id: UUID) -> Job:
    require(principal, Action.read)
    with rt.db.tenant(principal.tenant_id) as conn:
        job = jobs.get(conn, principal.tenant_id, job_id)
    if job is None:
        raise NotFound("job not found", details={"job_id": str(job_id)})
    if job.kind in GOVERNANCE_KINDS:
        require(principal, Action.govern)
    return job
