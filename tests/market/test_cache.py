"""The versioned market cache: hits, invalidation by a sync, and a cache outage costing no read."""

from __future__ import annotations

from typing import Any

from quantdesk.market.cache import MARKET_WIDE, MarketCache


class DictCache:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def set(self, key: str, value: Any, timeout: int | None = None) -> bool:
        self.data[key] = value
        return True

    def add(self, key: str, value: Any, timeout: int | None = None) -> bool:
        return self.data.setdefault(key, value) is value


class DownCache(DictCache):
    def get(self, key: str) -> Any:
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
