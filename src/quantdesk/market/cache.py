"""Cached hot reads (history, indicators) with versioned keys, so a sync invalidates in O(symbols).

Each symbol has a version token in the cache; every cached answer's key contains the token it
was computed under. A sync replaces the tokens of the symbols it wrote (and the market-wide
one), so older answers are simply never asked for again and expire on their own. This works
the same on Flask-Caching's SimpleCache and RedisCache, with no key scans. A token lost to
eviction is replaced by a fresh one, which can only cause a miss, never a stale hit.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

MARKET_WIDE = "*"  # the token of answers about many symbols (indices, sectors)
_PREFIX = "market:"


class CacheBackend(Protocol):
    """The part of Flask-Caching's `Cache` we use."""

    def get(self, key: str) -> Any: ...

    def set(self, key: str, value: Any, timeout: int | None = None) -> Any: ...

    def add(self, key: str, value: Any, timeout: int | None = None) -> Any: ...


class MarketCache:
    """Versioned get-or-compute over a cache backend; a cache failure only costs a recompute."""

    def __init__(self, backend: CacheBackend | None, *, timeout: int) -> None:
        self.backend = backend
        self.timeout = timeout

    def _token(self, backend: CacheBackend, scope: str) -> str:
        key = f"{_PREFIX}v:{scope}"
        token = backend.get(key)
        if token is None:
            fresh = uuid.uuid4().hex
            backend.add(key, fresh, timeout=0)  # no expiry; keeps a racing writer's token
            token = backend.get(key) or fresh
        return str(token)

    def get_or_compute(self, scope: str, parts: Iterable[Any], compute: Callable[[], T]) -> T:
        """The cached value for `parts` under `scope`'s current token, else `compute()`'s."""
        backend = self.backend
        if backend is None:
            return compute()
        try:
            digest = hashlib.sha1(repr(tuple(parts)).encode(), usedforsecurity=False).hexdigest()
            key = f"{_PREFIX}{scope}:{self._token(backend, scope)}:{digest}"
            hit = backend.get(key)
        except Exception as exc:  # a cache outage must not fail a read
            log.warning("market cache unavailable, computing: %s", exc)
            return compute()
        if hit is not None:
            return hit  # type: ignore[no-any-return]
        value = compute()
        try:
            backend.set(key, value, timeout=self.timeout)
        except Exception as exc:
            log.warning("market cache write failed: %s", exc)
        return value

    def invalidate(self, symbols: Iterable[str]) -> None:
        """Give `symbols` and the market-wide scope new tokens: their cached answers are gone."""
        if self.backend is None:
            return
        try:
            for scope in [*symbols, MARKET_WIDE]:
                self.backend.set(f"{_PREFIX}v:{scope}", uuid.uuid4().hex, timeout=0)
        except Exception as exc:  # the keys also hold the symbol's updated_at: no stale hit
            log.warning("market cache invalidation failed: %s", exc)
