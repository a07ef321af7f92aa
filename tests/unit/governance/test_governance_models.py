"""Privacy hash keys, retention and tenant settings validation, erase progress accounting."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from pydantic import ValidationError

from context_engine.governance.keys import MASTER_BYTES, local_master_secret, tenant_hash_key
from context_engine.governance.models import EraseProgress, PutTenantRequest, RetentionPolicy
from context_engine.privacy.detectors import EntityType
from context_engine.privacy.policy import PrivacyAction, PrivacyPolicy, apply_policy

MASTER = b"m" * 32


def test_tenant_keys_differ_by_tenant_and_salt_and_need_a_long_master() -> None:
    k = tenant_hash_key(MASTER, "t1", b"salt-1")
    assert k == tenant_hash_key(MASTER, "t1", b"salt-1") and len(k) == 32
    assert k != tenant_hash_key(MASTER, "t2", b"salt-1")
    assert k != tenant_hash_key(MASTER, "t1", b"salt-2")
    assert k != tenant_hash_key(b"n" * 32, "t1", b"salt-1")
    with pytest.raises(ValueError):
        tenant_hash_key(b"short", "t1", b"salt-1")


def test_rotating_the_salt_makes_old_tokens_unlinkable() -> None:
    policy = PrivacyPolicy.uniform(PrivacyAction.HASH)
    text = "mail jane@example.com"
    before = apply_policy(text, policy, hash_key=tenant_hash_key(MASTER, "t1", b"old")).text
    after = apply_policy(text, policy, hash_key=tenant_hash_key(MASTER, "t1", b"new")).text
    assert before != after and "jane" not in before + after


def test_the_local_master_secret_is_created_once_with_private_permissions(tmp_path: Path) -> None:
    results: list[bytes] = []
    threads = [threading.Thread(target=lambda: results.append(local_master_secret(tmp_path))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and len(results[0]) == MASTER_BYTES
    path = tmp_path / "secrets" / "privacy-master.key"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert local_master_secret(tmp_path) == path.read_bytes()


def test_a_truncated_master_secret_file_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "elsewhere" / "secrets"
    folder.mkdir(parents=True)
    (folder / "privacy-master.key").write_bytes(b"too short")
    with pytest.raises(RuntimeError):
        local_master_secret(tmp_path / "elsewhere")


def test_retention_and_tenant_settings_validate() -> None:
    assert RetentionPolicy().is_empty
    assert not RetentionPolicy(turns_days=30).is_empty
    for bad in ({"turns_days": 0}, {"memories_days": 100_000}, {"forever": True}):
        with pytest.raises(ValidationError):
            RetentionPolicy.model_validate(bad)
    req = PutTenantRequest.model_validate({"classification": "restricted",
                                           "privacy_policy": {"actions": {"payment_card": "redact"}}})
    assert req.privacy_policy is not None
    assert req.privacy_policy.action_for(EntityType.PAYMENT_CARD) is PrivacyAction.REDACT
    with pytest.raises(ValidationError):
        PutTenantRequest.model_validate({"classification": "secret"})
    with pytest.raises(ValidationError):
        PutTenantRequest.model_validate({"name": "renamed"})


def test_erase_progress_sums_the_steps() -> None:
    p = EraseProgress(steps={"memories": {"memories": 2}, "mixed_sessions": {"turns": 1, "tool_calls": 0},
                             "sessions": {"sessions": 1, "turns": 3, "tool_calls": 1}})
    assert p.counts == {"memories": 2, "turns": 4, "tool_calls": 1, "sessions": 1}
