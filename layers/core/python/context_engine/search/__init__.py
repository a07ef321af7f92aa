"""Search backends (PostgreSQL full text + pgvector; OpenSearch in AWS) behind one interface.

``search_backend(rt)`` picks the backend the settings name; ``index_mirror(rt)`` is the
external index the indexer must also feed (None for PostgreSQL, whose search reads the
rows' own index columns). Submodules are imported lazily: the write path imports
``search.text`` and must not pay for numpy and the re-ranker at cold start.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from context_engine.runtime import Runtime
    from context_engine.search.base import IndexMirror, SearchBackend

__all__ = ["index_mirror", "search_backend", "user_index_cache"]

_opensearch: dict[tuple[str, str], Any] = {}
_user_indexes: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def _opensearch_settings(rt: Runtime) -> tuple[str, str] | None:
    """(url, index prefix) when the deployment searches OpenSearch: settings
    ``search_backend = "opensearch"``, ``opensearch_url``, ``opensearch_index_prefix``."""
    settings = rt.settings
    if settings.search_backend != "opensearch":
        return None
    url = settings.opensearch_url
    if not url:
        raise RuntimeError("search_backend is 'opensearch' but opensearch_url is not set")
    return str(url), str(settings.opensearch_index_prefix)


def _opensearch_backend(rt: Runtime, conf: tuple[str, str]) -> Any:
    from context_engine.search.opensearch import OpenSearchBackend

    with _lock:
        backend = _opensearch.get(conf)
        if backend is None:
            backend = OpenSearchBackend.from_url(conf[0], prefix=conf[1])
            backend.ensure_indices(rt.settings.embedding_dim)
            _opensearch[conf] = backend
        return backend


def search_backend(rt: Runtime) -> SearchBackend:
    conf = _opensearch_settings(rt)
    if conf is None:
        from context_engine.search.postgres import PostgresSearchBackend

        return PostgresSearchBackend(rt.db, user_index_cache(rt))  # cheap to build per call
    return _opensearch_backend(rt, conf)  # type: ignore[no-any-return]


def user_index_cache(rt: Runtime) -> Any:
    """The process's copy of users' turn vectors for ``rt``'s database (one per ``Database``,
    so runtimes on different databases never share one); None when turned off."""
    settings = rt.settings
    if settings.user_index_mb <= 0:
        return None
    with _lock:
        cache = _user_indexes.get(rt.db)
        if cache is None:
            from context_engine.search.user_index import UserIndexCache

            cache = UserIndexCache(settings.user_index_mb * 1024 * 1024, settings.embedding_dim,
                                   idle_s=settings.user_index_idle_s,
                                   background=rt.db if settings.user_index_load == "background" else None)
            _user_indexes[rt.db] = cache
        return cache


def index_mirror(rt: Runtime) -> IndexMirror | None:
    conf = _opensearch_settings(rt)
    return None if conf is None else _opensearch_backend(rt, conf)  # type: ignore[no-any-return]
