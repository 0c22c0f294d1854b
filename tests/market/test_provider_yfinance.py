"""The yfinance provider against Yahoo's recorded chart JSON (`YfData.get` answers, no network)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from quantdesk.market.providers.base import (
    NotCovered,
    ProviderTimeout,
    RateLimited,
    SchemaChanged,
)
from quantdesk.market.providers.yfinance import YFinanceProvider
from tests.market import recorded as rec

JAN = (dt.date(2024, 1, 1), dt.date(2024, 1, 10))
Answer = Callable[[str, dict[str, Any]], Any]


class Yahoo:
    """Stands in for `yfinance.data.YfData.get`: a fresh copy of the chart JSON per call."""

    def __init__(self) -> None:
        self.answer: Answer = lambda url, params: rec.yahoo_chart(url.rsplit("/", 1)[-1])
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def get(self, url: str, params: Any = None, timeout: Any = 30) -> Any:
        self.calls.append((url, dict(params or {})))
        body = self.answer(url, dict(params or {}))
        if isinstance(body, BaseException):
            raise body
        return rec.YahooResponse(body, url=url)


@pytest.fixture
def yahoo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Yahoo]:
    import yfinance.cache
    import yfinance.data

    fake = Yahoo()
    monkeypatch.setattr(yfinance.data.YfData, "get", fake.get)

    class NoTzCache:  # the time-zone cache is a sqlite file per user: keep tests apart
        def lookup(self, ticker: str) -> None:
            return None

        def store(self, ticker: str, tz: str | None) -> None:
            return None

    monkeypatch.setattr(yfinance.cache, "get_tz_cache", NoTzCache)
    yield fake
    yfinance.data.YfData().cache_get.cache_clear()  # yfinance memoises past-range requests


@pytest.fixture
def provider(tmp_path: Path) -> YFinanceProvider:
    return YFinanceProvider(timeout=2.0, cache_dir=tmp_path / "yf")


def test_daily_bars_unadjusted_with_the_factor(yahoo: Yahoo, provider: YFinanceProvider) -> None:
    bars = provider.bars("AAPL", *JAN)
    assert [d.isoformat() for d in bars["date"]] == rec.DAYS[:4]
    assert bars["close"].tolist() == [185.64, 184.25, 181.91, 181.18]
    assert bars["volume"].tolist() == [82488700, 58414500, 71983600, 62303300]
    expected = np.array([184.73, 183.35, 181.02, 180.29]) / bars["close"].to_numpy()
    np.testing.assert_allclose(bars["adj_factor"], expected, rtol=1e-9)
    chart = [params for url, params in yahoo.calls if "period1" in params]
    assert chart[0]["interval"] == "1d"
    assert chart[0]["events"] == "div,splits,capitalGains"
    assert all(url.endswith("/v8/finance/chart/AAPL") for url, _ in yahoo.calls)


def test_names_come_from_the_chart_metadata(yahoo: Yahoo, provider: YFinanceProvider) -> None:
    (listing,) = provider.listings(["AAPL"])
    assert (listing.name, listing.exchange, listing.currency) == ("Apple Inc.", "NASDAQ", "USD")
    assert listing.market == "us"
    assert listing.listed_on == dt.date(1980, 12, 12)
    assert provider.listings(None) == []  # Yahoo has no list of everything


def test_a_range_without_sessions_is_empty(yahoo: Yahoo, provider: YFinanceProvider) -> None:
    def empty(url: str, params: dict[str, Any]) -> Any:
        if "period1" in params:  # the history request: Yahoo's answer for a quiet range
            return {
                "chart": {
                    "result": [
                        {
                            **rec.yahoo_chart("AAPL")["chart"]["result"][0],
                            "timestamp": [],
                            "indicators": {"quote": [{}]},
                        }
                    ],
                    "error": None,
                }
            }
        return rec.yahoo_chart("AAPL")

    yahoo.answer = empty
    assert provider.bars("AAPL", dt.date(2024, 1, 6), dt.date(2024, 1, 7)).empty


def test_an_unknown_ticker_is_not_covered(yahoo: Yahoo, provider: YFinanceProvider) -> None:
    yahoo.answer = lambda url, params: rec.yahoo_not_found("NOSUCH")
    with pytest.raises(NotCovered):
        provider.bars("NOSUCH", *JAN)
    assert not provider.covers("600519.SH")
    with pytest.raises(NotCovered):
        provider.bars("600519.SH", *JAN)


def test_rate_limits_and_timeouts_are_retryable(yahoo: Yahoo, provider: YFinanceProvider) -> None:
    from curl_cffi.requests.exceptions import Timeout
    from yfinance.exceptions import YFRateLimitError

    yahoo.answer = lambda url, params: YFRateLimitError()
    with pytest.raises(RateLimited) as limited:
        provider.bars("AAPL", *JAN)
    assert limited.value.retryable
    yahoo.answer = lambda url, params: Timeout("Operation timed out after 2000 ms")
    with pytest.raises(ProviderTimeout):
        provider.bars("MSFT", *JAN)


def test_a_changed_answer_is_an_error_not_an_empty_frame(
    yahoo: Yahoo, provider: YFinanceProvider
) -> None:
    def changed(url: str, params: dict[str, Any]) -> Any:
        body = rec.yahoo_chart("IBM")
        if "period1" in params:
            del body["chart"]["result"][0]["indicators"]["quote"][0]["volume"]
        return body

    yahoo.answer = changed
    with pytest.raises(SchemaChanged, match="volume") as raised:
        provider.bars("IBM", *JAN)
    assert not raised.value.retryable
