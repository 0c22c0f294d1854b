"""The versioned market cache: hits, invalidation by a sync, and a cache outage costing no read."""

from __future__ import annotations

from typing import Any

from quantdesk.market.cache import MARKET_WIDE, MarketCache


class DictCache:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get_many(self, *keys: str) -> list[Any]:
        return [self.data.get(key) for key in keys]

    def set(self, key: str, value: Any, timeout: int | None = None) -> bool:
        self.data[key] = value
        return True

    def add(self, key: str, value: Any, timeout: int | None = None) -> bool:
        return self.data.setdefault(key, value) is value


class DownCache(DictCache):
    def get_many(self, *keys: str) -> list[Any]:
        raise ConnectionError("redis is down")

    def set(self, key: str, value: Any, timeout: int | None = None) -> bool:
        raise ConnectionError("redis is down")


def test_hits_until_the_symbol_is_invalidated() -> None:
    computed: list[str] = []

    def compute(tag: str) -> str:
        computed.append(tag)
        return f"value {len(computed)}"

    cache = MarketCache(DictCache(), timeout=60)
    assert cache.get_or_compute("AAPL", ("history", 1), lambda: compute("a")) == "value 1"
    assert cache.get_or_compute("AAPL", ("history", 1), lambda: compute("a")) == "value 1"
    assert cache.get_or_compute("AAPL", ("history", 2), lambda: compute("b")) == "value 2"
    assert cache.get_or_compute("MSFT", ("history", 1), lambda: compute("c")) == "value 3"
    assert cache.get_or_compute(MARKET_WIDE, ("sectors",), lambda: compute("d")) == "value 4"
    cache.invalidate(["AAPL"])
    assert cache.get_or_compute("AAPL", ("history", 1), lambda: compute("a")) == "value 5"
    assert cache.get_or_compute("MSFT", ("history", 1), lambda: compute("c")) == "value 3"
    assert cache.get_or_compute(MARKET_WIDE, ("sectors",), lambda: compute("d")) == "value 6"


def test_a_lost_token_is_a_miss_never_a_stale_hit() -> None:
    backend = DictCache()
    cache = MarketCache(backend, timeout=60)
    cache.get_or_compute("AAPL", ("x",), lambda: "old")
    for key in [k for k in backend.data if k.startswith("market:v:")]:
        del backend.data[key]  # evicted
    assert cache.get_or_compute("AAPL", ("x",), lambda: "new") == "new"


def test_a_cache_outage_only_costs_a_recompute() -> None:
    cache = MarketCache(DownCache(), timeout=60)
    assert cache.get_or_compute("AAPL", ("x",), lambda: "computed") == "computed"
    cache.invalidate(["AAPL"])  # logged, not raised: a sync's commit stands
    assert MarketCache(None, timeout=60).get_or_compute("AAPL", ("x",), lambda: 42) == 42


def test_a_sync_during_a_computation_leaves_no_stale_hit() -> None:
    """The token is read before computing: an answer computed from rows a sync then replaced
    is stored under the old token, so the next read recomputes instead of serving it."""
    cache = MarketCache(DictCache(), timeout=60)
    cache.get_or_compute("AAPL", ("x",), lambda: "first")  # the scope has a token now

    def compute_while_a_sync_lands() -> str:
        cache.invalidate(["AAPL"])
        return "from the older rows"

    assert cache.get_or_compute("AAPL", ("y",), compute_while_a_sync_lands) == (
        "from the older rows"
    )
    assert cache.get_or_compute("AAPL", ("y",), lambda: "fresh") == "fresh"
    assert cache.get_or_compute("AAPL", ("y",), lambda: "not asked") == "fresh"


def test_a_read_is_one_round_trip_to_the_backend() -> None:
    calls: list[tuple[str, ...]] = []

    class CountingCache(DictCache):
        def get_many(self, *keys: str) -> list[Any]:
            calls.append(keys)
            return super().get_many(*keys)

    cache = MarketCache(CountingCache(), timeout=60)
    cache.get_or_compute("AAPL", ("x",), lambda: "value")
    calls.clear()
    assert cache.get_or_compute("AAPL", ("x",), lambda: "not asked") == "value"
    assert len(calls) == 1
    assert len(calls[0]) == 2  # the token and the answer, together


def test_only_a_cache_is_shared() -> None:
    assert MarketCache(DictCache(), timeout=60, shared=True).shared
    assert not MarketCache(None, timeout=60, shared=True).shared
