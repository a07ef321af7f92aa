"""Secrets Manager rotation of the ``ce_app`` secret (single user, four steps).

Why not the hosted template: the secret's ``host`` is the RDS Proxy endpoint (what the
functions connect to), and a password can only be set and tested on the database itself.
So this function changes the password as the owner and tests it directly against the
Aurora writer (the owner secret's host), then promotes the new version; RDS Proxy reads
the promoted secret for new connections. Environment: ``OWNER_SECRET_ARN``.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import boto3
from dbadmin_common import can_login, conninfo, read_secret, set_role_password

log = logging.getLogger()
log.setLevel(logging.INFO)

# The same exclusions CDK uses when it generates the secret (infra_cdk/constructs/data.py).
EXCLUDE_CHARACTERS = " %+~`#$&*()|[]{}:;<>?!'/@\"\\"
PASSWORD_LENGTH = 40


def handler(event: dict[str, Any], _context: Any, client: Any | None = None) -> None:
    arn, token, step = event["SecretId"], event["ClientRequestToken"], event["Step"]
    secrets = client or boto3.client("secretsmanager")
    metadata = secrets.describe_secret(SecretId=arn)
    if not metadata.get("RotationEnabled"):
        raise ValueError(f"rotation is not enabled on {arn}")
    stages = metadata.get("VersionIdsToStages", {})
    if token not in stages:
        raise ValueError(f"version {token} is not a version of {arn}")
    if "AWSCURRENT" in stages[token]:
        log.info("version %s is already AWSCURRENT", token)
        return
    if "AWSPENDING" not in stages[token]:
        raise ValueError(f"version {token} is not AWSPENDING")
    steps = {
        "createSecret": create_secret,
        "setSecret": set_secret,
        "testSecret": test_secret,
        "finishSecret": finish_secret,
    }
    if step not in steps:
        raise ValueError(f"unknown rotation step {step!r}")
    steps[step](secrets, arn, token, stages)


def create_secret(secrets: Any, arn: str, token: str, _stages: dict[str, list[str]]) -> None:
    try:
        read_secret(secrets, arn, stage="AWSPENDING", version_id=token)
        return  # created by an earlier attempt of this rotation
    except secrets.exceptions.ResourceNotFoundException:
        pass
    current = read_secret(secrets, arn)
    password = secrets.get_random_password(ExcludeCharacters=EXCLUDE_CHARACTERS, PasswordLength=PASSWORD_LENGTH)
    pending = {**current, "password": password["RandomPassword"]}
    secrets.put_secret_value(
        SecretId=arn, ClientRequestToken=token, SecretString=json.dumps(pending), VersionStages=["AWSPENDING"]
    )
    log.info("created pending version %s", token)


def _owner(secrets: Any) -> dict[str, Any]:
    return read_secret(secrets, os.environ["OWNER_SECRET_ARN"])


def set_secret(secrets: Any, arn: str, token: str, _stages: dict[str, list[str]]) -> None:
    pending = read_secret(secrets, arn, stage="AWSPENDING", version_id=token)
    set_role_password(conninfo(_owner(secrets), dbname=pending.get("dbname")), pending["username"], pending["password"])
    log.info("password of %s set on the database", pending["username"])


def test_secret(secrets: Any, arn: str, token: str, _stages: dict[str, list[str]]) -> None:
    pending = read_secret(secrets, arn, stage="AWSPENDING", version_id=token)
    writer = _owner(secrets)["host"]  # the database itself, not the proxy in pending["host"]
    can_login(conninfo(pending, host=writer))
    log.info("pending credentials of %s log in", pending["username"])


def finish_secret(secrets: Any, arn: str, token: str, stages: dict[str, list[str]]) -> None:
    current = next((version for version, labels in stages.items() if "AWSCURRENT" in labels), None)
    if current == token:
        return
    secrets.update_secret_version_stage(
        SecretId=arn, VersionStage="AWSCURRENT", MoveToVersionId=token, RemoveFromVersionId=current
    )
    log.info("version %s is now AWSCURRENT", token)
