"""The process-wide runtime: settings, database, cache, event publisher, embedder.

Built once per process (a Lambda cold start, or ``context-engine serve``) and shared by
every handler. AWS and the embedded default differ only in which adapters are built
here; handlers and the core never branch on the environment.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from context_engine.cache import Cache, build_cache
from context_engine.db.database import Database
from context_engine.events.envelope import EventEnvelope
from context_engine.events.publisher import EventBridgePublisher, InProcessPublisher, Publisher
from context_engine.repos import outbox
from context_engine.settings import Settings, get_settings

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    db: Database
    cache: Cache
    publisher: Publisher
    _embedder: Any = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # Published events whose outbox rows are not marked yet, by tenant (see publish_committed).
    _unmarked: dict[str, list[UUID]] = field(default_factory=dict, repr=False)
    _marks_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _marks_timer: threading.Timer | None = field(default=None, repr=False)
    mark_delay_s: float = 0.5

    @property
    def embedder(self) -> Any:
        """Loaded on first use: the write path never needs it, only indexing and queries."""
        if self._embedder is None:
            with self._lock:
                if self._embedder is None:
                    from context_engine.embeddings import build_embedder

                    # Titan's output size is configurable and must match the vector columns.
                    kw = {"dimensions": self.settings.embedding_dim} if self.settings.embedder == "bedrock" else {}
                    self._embedder = build_embedder(self.settings.embedder, **kw)
        return self._embedder

    def publish_committed(self, tenant_id: str, events: Sequence[EventEnvelope]) -> None:
        """Publish events whose outbox rows have committed; mark the accepted ones. A crash
        or a failure here loses nothing: the outbox relay republishes unmarked rows.

        Marking is deferred: accepted ids are collected and marked in one batch transaction
        ``mark_delay_s`` later (``flush_marks``), so a write pays one commit, not two. A row
        whose mark is lost (the process dies first, the batch fails) is republished by the
        relay once it is ``min_age_s`` old: at-least-once, as before; consumers deduplicate
        on event_id, so a redelivery has no second effect."""
        if not events:
            return
        try:
            failed = {e.event_id for e in self.publisher.publish(events)}
        except Exception:
            log.exception("publish failed; outbox relay will retry", extra={"count": len(events)})
            return
        accepted = [e.event_id for e in events if e.event_id not in failed]
        if not accepted:
            return
        with self._marks_lock:
            self._unmarked.setdefault(tenant_id, []).extend(accepted)
            if self._marks_timer is None:
                timer = threading.Timer(self.mark_delay_s, self._flush_marks_later)
                timer.daemon = True
                self._marks_timer = timer
                timer.start()

    def _flush_marks_later(self) -> None:
        with self._marks_lock:
            self._marks_timer = None
        self.flush_marks()

    def flush_marks(self) -> int:
        """Mark every published-but-unmarked outbox row now (one transaction per tenant, no
        WAL flush wait: a mark lost in a database crash only means one republish). Returns
        how many ids were marked or attempted."""
        with self._marks_lock:
            pending, self._unmarked = self._unmarked, {}
        if pending and self.db.pool.closed:
            # Shutting down: the relay republishes these rows; nothing to report as an error.
            log.info("pool closed; outbox marks left to the relay", extra={"count": sum(map(len, pending.values()))})
            return 0
        for tenant_id, ids in pending.items():
            try:
                with self.db.tenant(tenant_id) as conn:
                    conn.execute("set local synchronous_commit = off")
                    outbox.mark_published(conn, tenant_id, ids)
            except Exception:
                log.exception("marking outbox rows failed; the relay will republish them",
                              extra={"tenant_id": tenant_id, "count": len(ids)})
        return sum(len(ids) for ids in pending.values())


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def _dsn_from_secret(secret_arn: str) -> str:
    """Aurora via RDS Proxy: the secret holds host/port/username/password/dbname."""
    from aws_lambda_powertools.utilities.parameters import get_secret

    raw = get_secret(secret_arn, max_age=300)
    s = json.loads(raw if isinstance(raw, str) else raw.decode())
    from urllib.parse import quote

    return (f"postgresql://{quote(s['username'])}:{quote(s['password'])}@{s['host']}:{s.get('port', 5432)}"
            f"/{s.get('dbname', 'postgres')}?sslmode=require")


def build_runtime(settings: Settings | None = None, *, publisher: Publisher | None = None) -> Runtime:
    settings = settings or get_settings()
    owner_dsn = settings.database_admin_url
    if settings.database_url:
        app_dsn = settings.database_url
    elif settings.database_secret_arn:
        app_dsn = _dsn_from_secret(settings.database_secret_arn)
    else:
        from context_engine.db.embedded import app_uri, start_embedded

        owner_dsn = start_embedded(settings.data_dir)
        app_dsn = app_uri(owner_dsn)
    if settings.auto_migrate and owner_dsn:
        from context_engine.db.migrate import migrate

        migrate(owner_dsn, embedding_dim=settings.embedding_dim)
    db = Database(app_dsn, owner_dsn=owner_dsn, min_size=settings.pool_min_size, max_size=settings.pool_max_size)
    if publisher is None:
        publisher = (EventBridgePublisher(settings.event_bus_name, settings.event_source)
                     if settings.event_bus_name else InProcessPublisher())
    return Runtime(settings=settings, db=db, cache=build_cache(settings.redis_url, settings.lru_cache_entries),
                   publisher=publisher)


def get_runtime() -> Runtime:
    global _runtime
    if _runtime is None:
        with _runtime_lock:
            if _runtime is None:
                _runtime = build_runtime()
    return _runtime


def set_runtime(runtime: Runtime | None) -> None:
    """Install a runtime built elsewhere (local server, tests)."""
    global _runtime
    _runtime = runtime
