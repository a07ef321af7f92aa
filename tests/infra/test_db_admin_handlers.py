"""The migration and rotation handlers against a real PostgreSQL (embedded) and moto's Secrets Manager."""

from __future__ import annotations

import importlib.util
import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

pytestmark = pytest.mark.integration

HANDLERS = Path(__file__).resolve().parents[2] / "infra_cdk" / "handlers" / "db_admin"


def load(name: str) -> ModuleType:
    if str(HANDLERS) not in sys.path:
        sys.path.insert(0, str(HANDLERS))  # as in Lambda: the asset root is on sys.path
    spec = importlib.util.spec_from_file_location(f"db_admin_{name}", HANDLERS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    import boto3
    from moto import mock_aws

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="us-east-1")


@pytest.fixture
def arns(secrets: Any, pg_owner_dsn: str) -> dict[str, str]:
    """An owner secret for the embedded server and a fresh ce_app secret as CDK creates it."""
    parts = conninfo_to_dict(pg_owner_dsn)
    owner = {
        "username": parts["user"],
        "password": parts.get("password") or "",
        "host": parts["host"],
        "port": int(parts.get("port") or 5432),
        "engine": "postgres",
    }
    app = {
        "username": "ce_app",
        "password": f"pw-{uuid.uuid4().hex}",
        "dbname": parts["dbname"],
        "port": 5432,
        "engine": "postgres",
    }
    return {
        "owner": secrets.create_secret(Name=f"owner-{uuid.uuid4().hex}", SecretString=json.dumps(owner))["ARN"],
        "app": secrets.create_secret(Name=f"app-{uuid.uuid4().hex}", SecretString=json.dumps(app))["ARN"],
        "dbname": parts["dbname"],
    }


def app_password_hash(pg_owner_dsn: str) -> str | None:
    with psycopg.connect(pg_owner_dsn) as conn:
        row = conn.execute("select rolpassword from pg_authid where rolname = 'ce_app'").fetchone()
    return row[0] if row else None


def read(secrets: Any, arn: str, **kw: Any) -> dict[str, Any]:
    # Always by stage: moto answers an unstaged read from its creation-time default version.
    kw.setdefault("VersionStage", "AWSCURRENT")
    return json.loads(secrets.get_secret_value(SecretId=arn, **kw)["SecretString"])  # type: ignore[no-any-return]


def migration_event(arns: dict[str, str], request: str = "Create") -> dict[str, Any]:
    props = {
        "OwnerSecretArn": arns["owner"],
        "AppSecretArn": arns["app"],
        "ProxyEndpoint": "proxy.internal",
        "Port": "5432",
        "DatabaseName": arns["dbname"],
        "EmbeddingDim": "384",
    }
    return {"RequestType": request, "PhysicalResourceId": "context-engine-schema", "ResourceProperties": props}


def refuse_logins(*_args: Any) -> None:
    """The embedded server trusts local logins; this stands in for a role without a password."""
    raise psycopg.OperationalError("password authentication failed")


def test_first_migration_event_sets_the_app_password_and_points_the_secret_at_the_proxy(
    secrets: Any, arns: dict[str, str], pg_owner_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrate = load("migrate")
    monkeypatch.setattr(migrate, "can_login", refuse_logins)
    before_secret, before_hash = read(secrets, arns["app"]), app_password_hash(pg_owner_dsn)

    result = migrate.on_event(migration_event(arns), None)

    assert result["PhysicalResourceId"] == migrate.PHYSICAL_ID
    assert result["Data"]["Applied"] == "none"  # the session fixture migrated already: idempotent
    assert app_password_hash(pg_owner_dsn) not in (None, before_hash)
    after = read(secrets, arns["app"])
    assert after == {**before_secret, "host": "proxy.internal", "port": 5432, "dbname": arns["dbname"]}


def test_a_working_app_login_is_left_alone_and_nothing_is_rewritten(
    secrets: Any, arns: dict[str, str], pg_owner_dsn: str
) -> None:
    migrate = load("migrate")
    migrate.on_event(migration_event(arns), None)  # completes the secret
    versions = len(secrets.list_secret_version_ids(SecretId=arns["app"])["Versions"])
    before_hash = app_password_hash(pg_owner_dsn)

    migrate.on_event(migration_event(arns, "Update"), None)

    assert app_password_hash(pg_owner_dsn) == before_hash  # no ALTER ROLE: a rotation may be in flight
    assert len(secrets.list_secret_version_ids(SecretId=arns["app"])["Versions"]) == versions
    deleted = migrate.on_event({"RequestType": "Delete", "PhysicalResourceId": "x", "ResourceProperties": {}}, None)
    assert deleted == {"PhysicalResourceId": "x"}


def test_owner_connection_failures_are_retried_with_a_fresh_secret(
    secrets: Any, arns: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    migrate = load("migrate")
    real_migrate, calls, pauses = migrate.migrate, [], []

    def flaky(dsn: str, **kw: Any) -> list[str]:
        calls.append(dsn)
        if len(calls) == 1:
            raise psycopg.OperationalError("password authentication failed for user")
        return list(real_migrate(dsn, **kw))

    monkeypatch.setattr(migrate, "migrate", flaky)
    migrate.on_event(migration_event(arns), None, sleep=pauses.append)
    assert len(calls) == 2 and pauses == [migrate.RETRY_DELAY_S]


def test_rotation_steps_change_the_password_and_promote_the_new_version(
    secrets: Any, arns: dict[str, str], pg_owner_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rotate = load("rotate_app")
    monkeypatch.setenv("OWNER_SECRET_ARN", arns["owner"])
    old = read(secrets, arns["app"])
    old_hash = app_password_hash(pg_owner_dsn)
    token = str(uuid.uuid4())

    def stages() -> dict[str, list[str]]:
        return secrets.describe_secret(SecretId=arns["app"])["VersionIdsToStages"]  # type: ignore[no-any-return]

    rotate.create_secret(secrets, arns["app"], token, stages())
    rotate.create_secret(secrets, arns["app"], token, stages())  # a retried step changes nothing
    pending = read(secrets, arns["app"], VersionId=token, VersionStage="AWSPENDING")
    assert pending["password"] != old["password"] and pending["username"] == "ce_app"

    rotate.set_secret(secrets, arns["app"], token, stages())
    assert app_password_hash(pg_owner_dsn) != old_hash
    rotate.test_secret(secrets, arns["app"], token, stages())
    rotate.finish_secret(secrets, arns["app"], token, stages())

    assert "AWSCURRENT" in stages()[token]
    assert read(secrets, arns["app"])["password"] == pending["password"]


def test_rotation_refuses_a_secret_without_rotation_enabled(secrets: Any, arns: dict[str, str]) -> None:
    rotate = load("rotate_app")
    event = {"SecretId": arns["app"], "ClientRequestToken": str(uuid.uuid4()), "Step": "createSecret"}
    with pytest.raises(ValueError, match="rotation is not enabled"):
        rotate.handler(event, None, client=secrets)
