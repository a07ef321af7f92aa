"""Versioned SQL migrations, applied automatically, idempotently and under a lock.

Files ``migrations/NNNN_name.sql`` run in order, each in its own transaction, and are
recorded in ``schema_migrations``. An advisory lock makes concurrent cold starts safe.
``{{embedding_dim}}`` in a file is replaced by the configured embedding dimension.
"""

from __future__ import annotations

import logging
from importlib import resources

import psycopg

log = logging.getLogger(__name__)

_LOCK_ID = 0x0C0E_7E47


def migration_files() -> list[tuple[str, str]]:
    folder = resources.files("context_engine.db") / "migrations"
    files = sorted((p for p in folder.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name)
    return [(p.name.removesuffix(".sql"), p.read_text(encoding="utf-8")) for p in files]


def migrate(owner_dsn: str, *, embedding_dim: int = 384) -> list[str]:
    """Apply pending migrations; return the names applied now."""
    applied_now: list[str] = []
    with psycopg.connect(owner_dsn, autocommit=True) as conn:
        conn.execute("select pg_advisory_lock(%s)", [_LOCK_ID])
        try:
            conn.execute(
                "create table if not exists schema_migrations ("
                " name text primary key, applied_at timestamptz not null default now())"
            )
            done = {r[0] for r in conn.execute("select name from schema_migrations")}
            for name, sql in migration_files():
                if name in done:
                    continue
                with conn.transaction():
                    conn.execute(sql.replace("{{embedding_dim}}", str(int(embedding_dim))).encode())
                    conn.execute("insert into schema_migrations(name) values (%s)", [name])
                log.info("migration applied", extra={"migration": name})
                applied_now.append(name)
        finally:
            conn.execute("select pg_advisory_unlock(%s)", [_LOCK_ID])
    return applied_now
