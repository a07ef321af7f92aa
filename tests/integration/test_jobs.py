"""Job status reads: governance jobs (export links) are admin-only."""

from __future__ import annotations

import uuid

import pytest

from context_engine.errors import Forbidden, NotFound
from context_engine.models.domain import Principal, Role
from context_engine.repos import jobs
from context_engine.services.jobs import get_job


def test_reader_sees_rebuild_jobs_but_not_export_jobs(runtime, admin) -> None:
    reader = Principal(tenant_id=admin.tenant_id, key_id="k-reader", role=Role.reader)
    with runtime.db.tenant(admin.tenant_id) as conn:
        rebuild = jobs.create(conn, admin.tenant_id, uuid.uuid4(), "rebuild", {"session_id": "s"}, "k")
        export = jobs.create(conn, admin.tenant_id, uuid.uuid4(), "export", {"user_id": "u"}, "k")
    assert get_job(runtime, reader, rebuild.id).kind == "rebuild"
    with pytest.raises(Forbidden):
        get_job(runtime, reader, export.id)
    assert get_job(runtime, admin, export.id).kind == "export"
    other = Principal(tenant_id=admin.tenant_id + "x", key_id="k", role=Role.admin)
    with pytest.raises(NotFound):
        get_job(runtime, other, export.id)
