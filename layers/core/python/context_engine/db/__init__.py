"""PostgreSQL access: pool, tenant-scoped transactions, migrations, embedded server."""

from context_engine.db.database import Database

__all__ = ["Database"]
