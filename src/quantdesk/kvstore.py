"""Expiring keys in Redis, or in this process when no REDIS_URL is set: the token blocklist's store.

One small interface so the same auth code runs in the embedded default and in production.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

import redis


class KeyStore(Protocol):
    def set(self, key: str, ttl_seconds: int) -> None: ...

    def exists(self, key: str) -> bool: ...

    def ping(self) -> None: ...


class MemoryKeyStore:
    """Keys with expiry in a dict; right for one process (the embedded default)."""

    def __init__(self) -> None:
        self._expiry: dict[str, float] = {}
        self._lock = threading.Lock()

    def set(self, key: str, ttl_seconds: int) -> None:
        with self._lock:
            self._expiry[key] = time.monotonic() + max(1, ttl_seconds)

    def exists(self, key: str) -> bool:
        with self._lock:
            expires = self._expiry.get(key)
            if expires is None:
                return False
            if expires <= time.monotonic():
                del self._expiry[key]
                return False
            return True

    def ping(self) -> None:
        return None


class RedisKeyStore:
    """Keys with expiry in Redis, shared by every web worker."""

    def __init__(self, client: redis.Redis, prefix: str = "quantdesk:") -> None:
        self._client = client
        self._prefix = prefix

    def set(self, key: str, ttl_seconds: int) -> None:
        self._client.set(self._prefix + key, "1", ex=max(1, ttl_seconds))

    def exists(self, key: str) -> bool:
        return bool(self._client.exists(self._prefix + key))

    def ping(self) -> None:
        self._client.ping()


def redis_client(url: str) -> redis.Redis:
    # Short timeouts: a dead Redis must fail a request (or readiness) fast, not hang it.
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
