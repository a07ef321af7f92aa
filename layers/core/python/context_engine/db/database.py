"""Connection pool and tenant-scoped transactions.

Every tenant query runs inside ``Database.tenant(tenant_id)``: a transaction whose
``app.tenant_id`` setting drives PostgreSQL row-level security. The SQL also filters
by ``tenant_id`` explicitly; RLS is defence in depth against a forgotten filter.
The application connects as ``ce_app`` (no BYPASSRLS); owner connections are only
for migrations and operator commands.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

Conn = psycopg.Connection[dict]  # type: ignore[type-arg]


class Database:
    def __init__(self, app_dsn: str, *, owner_dsn: str | None = None, min_size: int = 1, max_size: int = 8):
        self.owner_dsn = owner_dsn
        self.pool = ConnectionPool(
            app_dsn,
            min_size=min_size,
            max_size=max_size,
            kwargs={"row_factory": dict_row, "autocommit": False},
            open=True,
            name="context-engine",
        )

    @contextmanager
    def tenant(self, tenant_id: str) -> Iterator[Conn]:
        """One transaction scoped to one tenant (commit on success, rollback on error)."""
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("select set_config('app.tenant_id', %s, true)", [tenant_id])
            yield conn  # type: ignore[misc]  # the pool's row_factory is dict_row

    @contextmanager
    def unscoped(self) -> Iterator[Conn]:
        """A transaction with no tenant: only SECURITY DEFINER functions (key lookup,
        outbox relay, tenant listing) can see anything here."""
        with self.pool.connection() as conn, conn.transaction():
            yield conn  # type: ignore[misc]

    @contextmanager
    def owner(self) -> Iterator[Conn]:
        """Owner connection for operator commands (create tenant, create key)."""
        if not self.owner_dsn:
            raise RuntimeError("no owner DSN configured (DATABASE_ADMIN_URL)")
        with psycopg.connect(self.owner_dsn, row_factory=dict_row) as conn, conn.transaction():
            yield conn

    def close(self) -> None:
        self.pool.close()
