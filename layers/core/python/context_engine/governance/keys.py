"""Keys of the privacy policy's ``hash`` action.

Each tenant's key is HMAC-SHA256(master secret, "ce-privacy-hash-v1" ‖ tenant id ‖ salt):

- the **master secret** lives outside the database — in AWS a Secrets Manager secret
  (``CONTEXT_ENGINE_PRIVACY_SECRET_ARN``), locally a random 32-byte file created on first
  use in ``<data dir>/secrets/privacy-master.key`` (mode 0600). A database dump alone
  therefore cannot brute-force hashed phone numbers or card numbers back;
- the **salt** is random per tenant (``tenants.privacy_salt``, 0004_governance.sql), so
  two tenants' tokens never correlate, and replacing a tenant's salt makes its existing
  tokens unlinkable (crypto-shredding) without touching the master secret.

Tokens are stable for a tenant as long as neither changes, which is what makes hashed
values joinable (the same email gives the same token in every turn).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from pathlib import Path
from typing import Final

from context_engine.governance.settings import GovernanceSettings

KEY_CONTEXT: Final = b"ce-privacy-hash-v1"
MASTER_BYTES: Final = 32
MIN_MASTER_BYTES: Final = 32

_lock = threading.Lock()
_file_cache: dict[Path, bytes] = {}


def tenant_hash_key(master: bytes, tenant_id: str, salt: bytes) -> bytes:
    if len(master) < MIN_MASTER_BYTES:
        raise ValueError(f"the privacy master secret must be at least {MIN_MASTER_BYTES} bytes")
    message = KEY_CONTEXT + b"\x00" + tenant_id.encode() + b"\x00" + salt
    return hmac.new(master, message, hashlib.sha256).digest()


def local_master_secret(data_dir: Path) -> bytes:
    """The local master secret, created once (exclusive create: concurrent first uses agree)."""
    path = (Path(data_dir) / "secrets" / "privacy-master.key").resolve()
    with _lock:
        cached = _file_cache.get(path)
        if cached is not None:
            return cached
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            secret = path.read_bytes()
        else:
            secret = secrets.token_bytes(MASTER_BYTES)
            with os.fdopen(fd, "wb") as f:
                f.write(secret)
        if len(secret) < MIN_MASTER_BYTES:
            raise RuntimeError(f"{path} holds fewer than {MIN_MASTER_BYTES} bytes")
        _file_cache[path] = secret
        return secret


def aws_master_secret(secret_arn: str) -> bytes:
    """The secret's string value (Secrets Manager, cached for five minutes by powertools)."""
    from aws_lambda_powertools.utilities.parameters import get_secret

    value = get_secret(secret_arn, max_age=300)
    secret = value.encode() if isinstance(value, str) else bytes(value)
    if len(secret) < MIN_MASTER_BYTES:
        raise RuntimeError("the privacy master secret is shorter than 32 bytes")
    return secret


def master_secret(gov: GovernanceSettings, data_dir: Path) -> bytes:
    if gov.privacy_secret_arn:
        return aws_master_secret(gov.privacy_secret_arn)
    return local_master_secret(data_dir)
