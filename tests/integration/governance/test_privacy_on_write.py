"""The tenant's privacy policy is applied on write, before storage and indexing: the stored
turn, its search text and index, memories, and the export never hold the raw value when the
policy says mask, redact or hash."""

from __future__ import annotations

import re
import uuid

import pytest

from context_engine.auth import create_key
from context_engine.governance.models import PutTenantRequest
from context_engine.models.domain import Principal, Role
from context_engine.privacy.detectors import EntityType
from context_engine.privacy.policy import PrivacyAction, PrivacyPolicy
from context_engine.services import tenants

EMAIL = "jane.roe@example.org"
CARD = "4111 1111 1111 1111"
PHONE = "+44 20 7946 0958"
IBAN = "GB82 WEST 1234 5698 7654 32"
TEXT = f"Write to {EMAIL}, charge {CARD}, call {PHONE}, pay into {IBAN}."

POLICY = PrivacyPolicy(default=PrivacyAction.KEEP, actions={
    EntityType.EMAIL: PrivacyAction.MASK, EntityType.PAYMENT_CARD: PrivacyAction.REDACT,
    EntityType.PHONE: PrivacyAction.HASH, EntityType.IBAN: PrivacyAction.HASH})


def stored_turn(rt, tenant: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    with rt.db.tenant(tenant) as conn:
        return dict(conn.execute("select question, answer, search_text, tsv::text as tsv, lex::text as lex"
                                 " from turns where tenant_id = %s order by created_at desc limit 1",
                                 [tenant]).fetchone())


def test_mask_redact_and_hash_apply_before_storage_and_indexing(writer, admin) -> None:  # type: ignore[no-untyped-def]
    rt, tenant = writer.rt, admin.tenant_id
    tenants.put_settings(rt, admin, PutTenantRequest(privacy_policy=POLICY))
    writer.turn("s1", "u1", TEXT, f"I will email {EMAIL}.")
    from context_engine.services import indexing

    indexing.index_pending(rt, tenant)
    row = stored_turn(rt, tenant)
    everything = " ".join(str(v) for v in row.values())
    for raw in (EMAIL, "jane.roe", CARD, "41111111", PHONE, "7946", IBAN, "WEST"):
        assert raw.lower() not in everything.lower(), f"{raw[:6]}... was stored"
    assert "j***@example.org" in row["question"] and "j***@example.org" in row["answer"]
    assert "[CARD]" in row["question"]
    assert re.search(r"\[PHONE:[0-9a-f]{12}\]", row["question"])
    assert re.search(r"\[IBAN:[0-9a-f]{12}\]", row["question"])
    assert row["lex"] is not None  # indexed — from the protected text only
    memory = writer.memory("u1", TEXT)
    assert EMAIL not in memory.content and CARD not in memory.content and "[CARD]" in memory.content


def test_hash_tokens_join_within_a_tenant_and_never_across(writer, admin) -> None:  # type: ignore[no-untyped-def]
    rt, tenant = writer.rt, admin.tenant_id
    hash_all = PutTenantRequest(privacy_policy=PrivacyPolicy.uniform(PrivacyAction.HASH))
    tenants.put_settings(rt, admin, hash_all)
    writer.turn("s1", "u1", f"call {PHONE}")
    writer.turn("s2", "u2", f"my number is {PHONE.replace(' ', '')}")  # other spelling, same number
    with rt.db.tenant(tenant) as conn:
        tokens = [re.search(r"\[PHONE:[0-9a-f]{12}\]", r["question"]).group() for r in conn.execute(
            "select question from turns where tenant_id = %s order by created_at", [tenant]).fetchall()]
    assert tokens[0] == tokens[1]

    other_tenant = f"t-{uuid.uuid4().hex[:12]}"
    key_id, _ = create_key(rt.db, other_tenant, Role.admin)
    other = Principal(tenant_id=other_tenant, key_id=key_id, role=Role.admin)
    tenants.put_settings(rt, other, hash_all)
    from tests.integration.governance.conftest import Writer

    Writer(rt, other).turn("s1", "u1", f"call {PHONE}")
    other_row = stored_turn(rt, other_tenant)
    other_token = re.search(r"\[PHONE:[0-9a-f]{12}\]", other_row["question"]).group()
    assert other_token != tokens[0]


def test_the_master_secret_lives_outside_the_database(writer, admin) -> None:  # type: ignore[no-untyped-def]
    rt = writer.rt
    tenants.put_settings(rt, admin, PutTenantRequest(privacy_policy=PrivacyPolicy.uniform(PrivacyAction.HASH)))
    writer.turn("s1", "u1", f"call {PHONE}")
    key_file = rt.settings.data_dir / "secrets" / "privacy-master.key"
    assert key_file.exists() and oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert len(key_file.read_bytes()) == 32


def test_without_a_policy_text_is_stored_as_written(writer, admin) -> None:  # type: ignore[no-untyped-def]
    writer.turn("s1", "u1", TEXT)
    assert stored_turn(writer.rt, admin.tenant_id)["question"] == TEXT


def test_tenant_settings_round_trip_and_validate(writer, admin) -> None:  # type: ignore[no-untyped-def]
    rt = writer.rt
    settings = tenants.put_settings(rt, admin, PutTenantRequest(privacy_policy=POLICY))
    assert settings.privacy_policy == POLICY and settings.retention.is_empty
    assert tenants.get_settings(rt, admin).privacy_policy == POLICY
    with pytest.raises(ValueError):
        PutTenantRequest.model_validate({"privacy_policy": {"actions": {"email": "shred"}}})
    with pytest.raises(ValueError):
        PutTenantRequest.model_validate({"retention": {"turns_days": 0}})
