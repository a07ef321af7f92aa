"""Secrets and owner connections shared by the migration and rotation entry points."""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

DEFAULT_DB = "context_engine"


def read_secret(
    client: Any, secret_id: str, *, stage: str = "AWSCURRENT", version_id: str | None = None
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"SecretId": secret_id, "VersionStage": stage}
    if version_id:
        kwargs["VersionId"] = version_id
    value: dict[str, Any] = json.loads(client.get_secret_value(**kwargs)["SecretString"])
    return value


def conninfo(secret: dict[str, Any], *, host: str | None = None, dbname: str | None = None) -> str:
    """libpq connection string from an RDS-style secret; TLS required (rds.force_ssl=1 anyway)."""
    return make_conninfo(
        host=host or secret["host"],
        port=int(secret.get("port", 5432)),
        dbname=dbname or secret.get("dbname") or DEFAULT_DB,
        user=secret["username"],
        password=secret["password"],
        sslmode="require",
        connect_timeout=10,
    )


def set_role_password(owner_dsn: str, role: str, password: str) -> None:
    """The owner sets a login role's password (idempotent)."""
    statement = sql.SQL("alter role {} with login password {}").format(sql.Identifier(role), sql.Literal(password))
    with psycopg.connect(owner_dsn, autocommit=True) as conn:
        conn.execute(statement)


def can_login(dsn: str) -> None:
    """Raise unless these credentials open a session."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("select 1")
