"""Cached hot reads (history, indicators) with versioned keys, so a sync invalidates in O(symbols).

Each symbol has a version token in the cache; every cached answer is stored with the token it
was computed under. A sync replaces the tokens of the symbols it wrote (and the market-wide
one), so older answers are never hits again and expire on their own. This works the same on
Flask-Caching's SimpleCache and RedisCache, with no key scans. A token lost to eviction is
replaced by a fresh one, which can only cause a miss, never a stale hit.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from quantdesk.extensions import Extensions

log = logging.getLogger(__name__)
T = TypeVar("T")

MARKET_WIDE = "*"  # the token of answers about many symbols (indices, sectors)
_PREFIX = "market:"


TOKEN_SECONDS = 7 * 86400  # a token unused this long goes: a later read just misses once


class CacheBackend(Protocol):
    """The part of Flask-Caching's `Cache` we use."""

    def get_many(self, *keys: str) -> list[Any]: ...

    def set(self, key: str, value: Any, timeout: int | None = None) -> Any: ...

    def add(self, key: str, value: Any, timeout: int | None = None) -> Any: ...


class MarketCache:
    """Versioned get-or-compute over a cache backend; a cache failure only costs a recompute.

    An answer is stored as `(token, value)` under a key without the token, and a read fetches
    the scope's token and the answer in one round trip (MGET on Redis): a hit is an answer
    stored under the current token. `shared` says every process sees the same tokens (Redis),
    so that a sync run anywhere invalidates everywhere; callers then may key an answer by the
    request alone, with no database query on a hit (market.service). An in-process cache
    cannot see another process's sync: its callers put the row's `updated_at` in the key.
    """

    def __init__(self, backend: CacheBackend | None, *, timeout: int, shared: bool = False) -> None:
        self.backend = backend
        self.timeout = timeout
        self.shared = shared and backend is not None

    def _new_token(self, backend: CacheBackend, token_key: str) -> str:
        fresh = uuid.uuid4().hex
        backend.add(token_key, fresh, timeout=TOKEN_SECONDS)  # keeps a racing writer's token
        token = backend.get_many(token_key)[0]
        return str(token or fresh)

    def get_or_compute(self, scope: str, parts: Iterable[Any], compute: Callable[[], T]) -> T:
        """The cached value for `parts` under `scope`'s current token, else `compute()`'s.

        The token is read before computing: a sync that lands during the computation gives
        the scope a new token, so what was computed from the older rows is never a hit.
        """
        backend = self.backend
        if backend is None:
            return compute()
        digest = hashlib.sha1(repr(tuple(parts)).encode(), usedforsecurity=False).hexdigest()
        key = f"{_PREFIX}{scope}:{digest}"
        token_key = f"{_PREFIX}v:{scope}"
        try:
            token, hit = backend.get_many(token_key, key)
            if token is None:
                token = self._new_token(backend, token_key)
            elif isinstance(hit, tuple) and len(hit) == 2 and hit[0] == token:
                return hit[1]  # type: ignore[no-any-return]
        except Exception as exc:  # a cache outage must not fail a read
            log.warning("market cache unavailable, computing: %s", exc)
            return compute()
        value = compute()
        try:
            backend.set(key, (str(token), value), timeout=self.timeout)
        except Exception as exc:
            log.warning("market cache write failed: %s", exc)
        return value

    def invalidate(self, symbols: Iterable[str]) -> None:
        """Give `symbols` and the market-wide scope new tokens: their cached answers are gone."""
        if self.backend is None:
            return
        try:
            for scope in [*symbols, MARKET_WIDE]:
                self.backend.set(f"{_PREFIX}v:{scope}", uuid.uuid4().hex, timeout=TOKEN_SECONDS)
        except Exception as exc:
            # A sync's commit stands. An in-process cache's keys also hold the symbol's
            # updated_at (no stale hit); a shared cache that missed this may answer from the
            # older rows until its entries expire (MARKET_CACHE_SECONDS).
            log.warning("market cache invalidation failed: %s", exc)


def market_cache(ext: Extensions) -> MarketCache:
    """The app's market cache: shared by every process when it is Redis (app._cache_config)."""
    return MarketCache(
        ext.cache, timeout=ext.settings.MARKET_CACHE_SECONDS, shared=bool(ext.settings.REDIS_URL)
    )
