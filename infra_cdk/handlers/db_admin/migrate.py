"""Custom resource ``Custom::ContextEngineMigrations`` (provider framework ``onEvent``).

Create/Update:
1. apply pending migrations as the owner (``migrate()`` is idempotent and takes a lock);
2. make sure ``ce_app`` can log in with its secret: if neither the current nor a pending
   (mid-rotation) version logs in (first deploy, or a password changed by hand), set the
   current one. Never touching a working password keeps a deploy from undoing a rotation
   in flight;
3. complete the app secret with the RDS Proxy endpoint (the template cannot write it
   there: the proxy itself references that secret).
Delete: nothing; the data stays. Every step is idempotent.

The owner secret is rotated right after it is created, so the first connection may meet a
password in mid-change: connection failures are retried with a fresh read of the secret.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import boto3
import psycopg
from dbadmin_common import can_login, conninfo, read_secret, set_role_password

from context_engine.db.migrate import migrate

log = logging.getLogger()
log.setLevel(logging.INFO)

PHYSICAL_ID = "context-engine-schema"
CONNECT_ATTEMPTS = 6
RETRY_DELAY_S = 10.0


def on_event(event: dict[str, Any], _context: Any, *, sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    if event["RequestType"] == "Delete":
        return {"PhysicalResourceId": event.get("PhysicalResourceId", PHYSICAL_ID)}
    props = event["ResourceProperties"]
    secrets = boto3.client("secretsmanager")
    dbname = props["DatabaseName"]

    for attempt in range(1, CONNECT_ATTEMPTS + 1):
        owner = read_secret(secrets, props["OwnerSecretArn"])
        try:
            applied = migrate(conninfo(owner, dbname=dbname), embedding_dim=int(props["EmbeddingDim"]))
            break
        except psycopg.OperationalError as exc:
            if attempt == CONNECT_ATTEMPTS:
                raise
            log.warning("owner connection failed (attempt %d): %s; retrying", attempt, exc)
            sleep(RETRY_DELAY_S)
    log.info("migrations applied: %s", applied or "none pending")

    if ensure_app_login(secrets, props["AppSecretArn"], owner, dbname):
        log.info("ce_app password set from the app secret")

    app = read_secret(secrets, props["AppSecretArn"])
    complete = {**app, "host": props["ProxyEndpoint"], "port": int(props["Port"]), "dbname": dbname}
    if complete != app:
        secrets.put_secret_value(SecretId=props["AppSecretArn"], SecretString=json.dumps(complete))
        log.info("app secret now points at the proxy")
    return {"PhysicalResourceId": PHYSICAL_ID, "Data": {"Applied": ",".join(applied) or "none"}}


def ensure_app_login(secrets: Any, app_arn: str, owner: dict[str, Any], dbname: str) -> bool:
    """Set the app role's password from AWSCURRENT unless AWSCURRENT or AWSPENDING already
    logs in on the writer. True when it set the password."""
    current = read_secret(secrets, app_arn)
    candidates = [current]
    with contextlib.suppress(secrets.exceptions.ResourceNotFoundException):  # no rotation in flight
        candidates.append(read_secret(secrets, app_arn, stage="AWSPENDING"))
    for creds in candidates:
        try:
            can_login(conninfo(creds, host=owner["host"], dbname=dbname))
            return False
        except psycopg.OperationalError:
            continue
    set_role_password(conninfo(owner, dbname=dbname), current["username"], current["password"])
    return True
