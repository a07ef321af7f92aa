"""Shared test fixtures: a real embedded PostgreSQL (pgserver) and a real redis-server,
both started once per session; each test gets its own tenant so tests never see each
other's rows."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "ContextEngineTest")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("CONTEXT_ENGINE_ENVIRONMENT", "test")
os.environ.setdefault("CONTEXT_ENGINE_EMBEDDER", "hashing")
os.environ.setdefault("CONTEXT_ENGINE_USER_INDEX_LOAD", "sync")  # background loads: test_user_index.py

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def pg_owner_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Embedded PostgreSQL 16 + pgvector, migrated. DATABASE_ADMIN_URL overrides it."""
    from context_engine.db.migrate import migrate

    if os.environ.get("DATABASE_ADMIN_URL"):
        dsn = os.environ["DATABASE_ADMIN_URL"]
        migrate(dsn)
        yield dsn
        return
    from context_engine.db.embedded import start_embedded, stop_embedded

    data_dir = tmp_path_factory.mktemp("ce-data")
    dsn = start_embedded(data_dir)
    migrate(dsn)
    yield dsn
    stop_embedded(data_dir)


@pytest.fixture(scope="session")
def database(pg_owner_dsn: str):  # type: ignore[no-untyped-def]
    from context_engine.db.database import Database
    from context_engine.db.embedded import app_uri

    app_dsn = os.environ.get("DATABASE_URL") or app_uri(pg_owner_dsn)
    db = Database(app_dsn, owner_dsn=pg_owner_dsn, min_size=1, max_size=6)
    yield db
    db.close()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real redis-server on a free port (REDIS_URL overrides)."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not installed: run the README set-up (make setup)")
    port = free_port()
    proc = subprocess.Popen(  # noqa: S603
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(5)


@pytest.fixture
def runtime(database):  # type: ignore[no-untyped-def]
    """A runtime on the shared database with an in-process bus and LRU cache, installed
    as the process runtime so handlers use it."""
    from context_engine.cache import LruCache
    from context_engine.events.publisher import InProcessPublisher
    from context_engine.runtime import Runtime, set_runtime
    from context_engine.settings import Settings

    rt = Runtime(settings=Settings(), db=database, cache=LruCache(256), publisher=InProcessPublisher())
    set_runtime(rt)
    yield rt
    set_runtime(None)


@pytest.fixture
def tenant_id() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def admin(runtime, tenant_id):  # type: ignore[no-untyped-def]
    """An admin Principal of a fresh tenant."""
    from context_engine.auth import create_key
    from context_engine.models.domain import Principal, Role

    key_id, _ = create_key(runtime.db, tenant_id, Role.admin)
    return Principal(tenant_id=tenant_id, key_id=key_id, role=Role.admin)
