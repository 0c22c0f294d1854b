"""Expiring keys in Redis, or in this process when no REDIS_URL is set: the token blocklist's store.

One small interface so the same auth code runs in the embedded default and in production.

The blocklist is a copy of revocations kept in the database, loaded ("warmed") when the store
is new. Redis may lose it (a restart without persistence, a flush): the marker key that
`mark_warm()` sets is then gone with the rest, `lookup` answers None, and the copy is loaded
again before any token is believed.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol, cast

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

# Every Redis client of the app (blocklist, pub/sub, rate limits): a dead or hung Redis fails a
# call within seconds, not after redis-py's default three retries with up to 10 s of backoff.
# The one immediate retry reconnects a pooled connection that a Redis restart broke.
REDIS_TIMEOUT_SECONDS = 2


def redis_options() -> dict[str, object]:
    """Keyword arguments for `redis.Redis.from_url` (and stores built on it) with bounded waits."""
    return {
        "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
        "socket_timeout": REDIS_TIMEOUT_SECONDS,
        "retry": Retry(NoBackoff(), 1),
    }


class KeyStore(Protocol):
    def set(self, key: str, ttl_seconds: int) -> None: ...

    def lookup(self, *keys: str) -> bool | None:
        """Whether any of `keys` exists; None if the store is not warm (never marked, or it
        lost its keys since). One round trip on Redis: it is asked on every request."""
        ...

    def is_warm(self) -> bool: ...

    def mark_warm(self) -> None: ...

    def ping(self) -> None: ...


class MemoryKeyStore:
    """Keys with expiry in a dict; right for one process (the embedded default)."""

    def __init__(self) -> None:
        self._expiry: dict[str, float] = {}
        self._lock = threading.Lock()
        self._warm = False

    def set(self, key: str, ttl_seconds: int) -> None:
        with self._lock:
            self._expiry[key] = time.monotonic() + max(1, ttl_seconds)

    def _alive(self, key: str) -> bool:
        with self._lock:
            expires = self._expiry.get(key)
            if expires is None:
                return False
            if expires <= time.monotonic():
                del self._expiry[key]
                return False
            return True

    def lookup(self, *keys: str) -> bool | None:
        if not self._warm:
            return None
        return any(self._alive(key) for key in keys)

    def ping(self) -> None:
        return None

    def is_warm(self) -> bool:
        return self._warm

    def mark_warm(self) -> None:
        self._warm = True


class RedisKeyStore:
    """Keys with expiry in Redis, shared by every web worker."""

    def __init__(self, client: redis.Redis, prefix: str = "quantdesk:") -> None:
        self._client = client
        self._prefix = prefix

    def set(self, key: str, ttl_seconds: int) -> None:
        self._client.set(self._prefix + key, "1", ex=max(1, ttl_seconds))

    def lookup(self, *keys: str) -> bool | None:
        marker, *values = cast(
            list[bytes | None],
            self._client.mget(self._prefix + _WARM_MARKER, *(self._prefix + key for key in keys)),
        )
        if marker is None:
            return None
        return any(value is not None for value in values)

    def ping(self) -> None:
        self._client.ping()

    def is_warm(self) -> bool:
        return bool(self._client.exists(self._prefix + _WARM_MARKER))

    def mark_warm(self) -> None:
        self._client.set(self._prefix + _WARM_MARKER, "1")  # no expiry: only a loss removes it


_WARM_MARKER = "keystore:warm"


def redis_client(url: str) -> redis.Redis:
    # Short timeouts: a dead Redis must fail a request (or readiness) fast, not hang it.
    return redis.Redis.from_url(url, **redis_options())
