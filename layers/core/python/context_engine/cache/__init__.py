"""Context cache: Redis when configured (ElastiCache in AWS), else an in-process LRU.

Keys include the window version, so a write invalidates by construction; explicit
deletes are only needed for erasure.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Protocol


class Cache(Protocol):
    kind: str

    def get(self, key: str) -> bytes | None: ...
    def set(self, key: str, value: bytes, ttl_s: int) -> None: ...
    def delete_prefix(self, prefix: str) -> int: ...


class LruCache:
    kind = "lru"

    def __init__(self, max_entries: int = 2048) -> None:
        self._data: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._max = max_entries
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            item = self._data.get(key)
            if item is None:
                return None
            expires, value = item
            if expires < time.monotonic():
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return value

    def set(self, key: str, value: bytes, ttl_s: int) -> None:
        with self._lock:
            self._data[key] = (time.monotonic() + ttl_s, value)
            self._data.move_to_end(key)
            while len(self._data) > self._max:
                self._data.popitem(last=False)

    def delete_prefix(self, prefix: str) -> int:
        with self._lock:
            doomed = [k for k in self._data if k.startswith(prefix)]
            for k in doomed:
                del self._data[k]
            return len(doomed)


class RedisCache:
    kind = "redis"

    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)

    def get(self, key: str) -> bytes | None:
        value = self.client.get(key)
        return value if isinstance(value, bytes) else None

    def set(self, key: str, value: bytes, ttl_s: int) -> None:
        self.client.set(key, value, ex=ttl_s)

    def delete_prefix(self, prefix: str) -> int:
        n = 0
        for key in self.client.scan_iter(match=prefix.replace("*", r"\*") + "*", count=500):
            n += int(self.client.delete(key))
        return n


def build_cache(redis_url: str | None, lru_entries: int) -> Cache:
    return RedisCache(redis_url) if redis_url else LruCache(lru_entries)
