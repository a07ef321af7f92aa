"""Custom resource ``Custom::ContextEngineMigrations`` (provider framework ``onEvent``).

Create/Update: apply pending migrations as the owner, set the ``ce_app`` password from the
app secret, and complete the app secret with the RDS Proxy endpoint (the template cannot
write it there: the proxy itself references that secret). Delete: nothing, data stays.
Every step is idempotent, so a retried or repeated deployment changes nothing.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import boto3
from dbadmin_common import conninfo, read_secret, set_role_password

from context_engine.db.migrate import migrate

log = logging.getLogger()
log.setLevel(logging.INFO)

PHYSICAL_ID = "context-engine-schema"


def on_event(event: dict[str, Any], _context: Any) -> dict[str, Any]:
    request = event["RequestType"]
    if request == "Delete":
        return {"PhysicalResourceId": event.get("PhysicalResourceId", PHYSICAL_ID)}
    props = event["ResourceProperties"]
    secrets = boto3.client("secretsmanager")

    owner = read_secret(secrets, props["OwnerSecretArn"])
    owner_dsn = conninfo(owner, dbname=props["DatabaseName"])
    applied = migrate(owner_dsn, embedding_dim=int(props["EmbeddingDim"]))
    log.info("migrations applied: %s", applied or "none pending")

    app = read_secret(secrets, props["AppSecretArn"])
    set_role_password(owner_dsn, app["username"], app["password"])
    complete = {**app, "host": props["ProxyEndpoint"], "port": int(props["Port"]), "dbname": props["DatabaseName"]}
    if complete != app:
        secrets.put_secret_value(SecretId=props["AppSecretArn"], SecretString=json.dumps(complete))
        log.info("app secret now points at the proxy")
    return {"PhysicalResourceId": PHYSICAL_ID, "Data": {"Applied": ",".join(applied) or "none"}}
