"""Tenant settings (classification, privacy policy, retention) and applying the privacy
policy on write.

``protect`` is called by the write paths (turns, memories) inside their transaction,
before token counting, storage and indexing: what is stored, indexed, summarised, cached
and exported is the policy's output, never the raw value.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from context_engine.db.database import Conn
from context_engine.errors import NotFound
from context_engine.governance.keys import master_secret, tenant_hash_key
from context_engine.governance.models import PutTenantRequest, RetentionPolicy, TenantSettings
from context_engine.governance.settings import get_governance_settings
from context_engine.models.domain import Principal
from context_engine.privacy.policy import PrivacyOutcome, PrivacyPolicy, apply_policy, merge_counts
from context_engine.runtime import Runtime
from context_engine.services.authz import Action, require

log = logging.getLogger(__name__)


# --- settings ---------------------------------------------------------------------------
def _load(conn: Conn, tenant_id: str) -> dict[str, Any]:
    row = conn.execute(
        "select id, name, classification, privacy_policy, retention from tenants where id = %s", [tenant_id]
    ).fetchone()
    if row is None:
        raise NotFound("tenant not found")
    return dict(row)


def _settings(row: dict[str, Any]) -> TenantSettings:
    return TenantSettings(tenant_id=row["id"], name=row["name"], classification=row["classification"],
                          privacy_policy=PrivacyPolicy.model_validate(row["privacy_policy"] or {}),
                          retention=RetentionPolicy.model_validate(row["retention"] or {}))


def get_settings(rt: Runtime, principal: Principal) -> TenantSettings:
    """Admins and auditors read the tenant's governance settings."""
    require(principal, Action.audit)
    with rt.db.tenant(principal.tenant_id) as conn:
        return _settings(_load(conn, principal.tenant_id))


def put_settings(rt: Runtime, principal: Principal, req: PutTenantRequest) -> TenantSettings:
    require(principal, Action.govern)
    tenant = principal.tenant_id
    with rt.db.tenant(tenant) as conn:
        _load(conn, tenant)
        if req.classification is not None:
            conn.execute("update tenants set classification = %s where id = %s", [req.classification.value, tenant])
        if req.privacy_policy is not None:
            conn.execute("update tenants set privacy_policy = %s where id = %s",
                         [req.privacy_policy.model_dump_json(exclude_defaults=False), tenant])
        if req.retention is not None:
            conn.execute("update tenants set retention = %s where id = %s",
                         [req.retention.model_dump_json(exclude_none=True), tenant])
        return _settings(_load(conn, tenant))


def retention_of(conn: Conn, tenant_id: str) -> RetentionPolicy:
    row = conn.execute("select retention from tenants where id = %s", [tenant_id]).fetchone()
    return RetentionPolicy.model_validate((row or {}).get("retention") or {})


# --- privacy on write -------------------------------------------------------------------
@dataclass(frozen=True)
class Protected:
    """The policy's output for each named text, and the counts (never the values)."""

    texts: dict[str, str]
    counts: dict[str, dict[str, int]]

    @property
    def changed(self) -> bool:
        return any(action != "keep" for per in self.counts.values() for action in per)


def protect(rt: Runtime, conn: Conn, tenant_id: str, texts: dict[str, str]) -> Protected:
    """Apply the tenant's privacy policy to ``texts`` (the caller's transaction reads the
    policy, so a policy change applies from the next write on)."""
    row = conn.execute("select privacy_policy, privacy_salt from tenants where id = %s", [tenant_id]).fetchone()
    policy = PrivacyPolicy.model_validate((row or {}).get("privacy_policy") or {})
    if policy.is_noop:
        return Protected(texts=dict(texts), counts={})
    key = b""
    if policy.uses_hash:
        salt = bytes(row["privacy_salt"]) if row else b""
        key = tenant_hash_key(master_secret(get_governance_settings(), rt.settings.data_dir), tenant_id, salt)
    outcomes: dict[str, PrivacyOutcome] = {name: apply_policy(text, policy, hash_key=key)
                                           for name, text in texts.items()}
    merged = merge_counts(outcomes.values())
    summary = {entity.value: {action.value: n for action, n in per.items()} for entity, per in merged.items()}
    if merged:
        from context_engine.observability.powertools import metrics

        n = sum(v for per in summary.values() for v in per.values())
        metrics.add_metric(name="PiiEntitiesProcessed", unit=MetricUnit.Count, value=n)
        log.debug("privacy policy applied", extra={"tenant_id": tenant_id, "pii": summary})
    return Protected(texts={name: o.text for name, o in outcomes.items()}, counts=summary)
