from __future__ import annotations

import pytest


@pytest.fixture
def redis_runtime(database, redis_url):  # type: ignore[no-untyped-def]
    """Like ``runtime`` but the cache is the real redis-server (ElastiCache in AWS)."""
    from context_engine.cache import RedisCache
    from context_engine.events.publisher import InProcessPublisher
    from context_engine.runtime import Runtime, set_runtime
    from context_engine.settings import Settings

    rt = Runtime(settings=Settings(), db=database, cache=RedisCache(redis_url), publisher=InProcessPublisher())
    set_runtime(rt)
    yield rt
    set_runtime(None)


@pytest.fixture(params=["lru", "redis"])
def any_runtime(request, runtime, redis_url, database):  # type: ignore[no-untyped-def]
    """Each cache test runs against the in-process LRU and against the real redis-server."""
    if request.param == "lru":
        return runtime
    from context_engine.cache import RedisCache

    runtime.cache = RedisCache(redis_url)
    return runtime
