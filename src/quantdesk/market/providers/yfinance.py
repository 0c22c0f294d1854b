"""The `yfinance` provider: US daily bars and names from Yahoo's chart API, imported lazily.

One chart request per call (`Ticker.history`, unadjusted, with actions); the adjusted close
gives the adjustment factor. yfinance hides failures by default (it logs "possibly delisted"
and returns an empty frame), which would make an outage look like a quiet day: we switch its
exceptions on and sort them into our provider errors. Its time-zone cache goes under VAR_DIR.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from quantdesk.market import symbols as sym
from quantdesk.market.providers.base import (
    Listing,
    NotCovered,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    SchemaChanged,
    call_with_deadline,
    empty_bars,
)

log = logging.getLogger(__name__)

# Yahoo's exchange codes in the chart metadata.
EXCHANGES = {
    "NMS": "NASDAQ",
    "NGM": "NASDAQ",
    "NCM": "NASDAQ",
    "NYQ": "NYSE",
    "PCX": "NYSE ARCA",
    "ASE": "NYSE AMERICAN",
    "BTS": "CBOE",
}
_COLUMNS = {"Open": "open", "High": "high", "Low": "low", "Close": "close", "Volume": "volume"}
_META_KEYS = (
    "longName",
    "shortName",
    "exchangeName",
    "instrumentType",
    "currency",
    "firstTradeDate",
)
_configured: set[str] = set()
_configure_lock = threading.Lock()


def _yfinance(cache_dir: Path) -> Any:
    """yfinance, configured once per process: exceptions on, caches in our folder."""
    import yfinance

    with _configure_lock:
        if str(cache_dir) not in _configured:
            cache_dir.mkdir(parents=True, exist_ok=True)
            yfinance.set_tz_cache_location(str(cache_dir))
            yfinance.config.debug.hide_exceptions = False
            _configured.add(str(cache_dir))
    return yfinance


def classify(exc: BaseException) -> ProviderError:
    if isinstance(exc, ProviderError):
        return exc
    name = type(exc).__name__
    text = f"yahoo: {name}: {exc}"
    if name == "YFRateLimitError":
        return RateLimited(text)
    if name == "YFTzMissingError":
        return NotCovered(text)
    if "Timeout" in name or "timed out" in str(exc).lower():
        return ProviderTimeout(text)
    if isinstance(exc, KeyError | IndexError | TypeError | AttributeError):
        return SchemaChanged(text)
    return ProviderUnavailable(text)


class YFinanceProvider:
    """US stocks and ETFs from Yahoo Finance through yfinance."""

    name = "yfinance"

    def __init__(self, *, timeout: float, cache_dir: Path) -> None:
        self.timeout = timeout
        self.cache_dir = cache_dir

    def covers(self, symbol: str) -> bool:
        return sym.market_of(symbol) is sym.Market.US

    def _history(self, symbol: str, **kwargs: Any) -> tuple[pd.DataFrame, dict[str, Any]]:
        if not self.covers(symbol):
            raise NotCovered(f"yfinance serves US tickers here, not {symbol}")
        yf = _yfinance(self.cache_dir)

        def fetch() -> tuple[pd.DataFrame, dict[str, Any]]:
            ticker = yf.Ticker(symbol)
            frame = ticker.history(
                interval="1d", auto_adjust=False, actions=True, timeout=self.timeout, **kwargs
            )
            meta = ticker.history_metadata or {}
            # Only plain keys: iterating it would load "tradingPeriods", an extra intraday call.
            return frame, {key: meta.get(key) for key in _META_KEYS}

        try:
            return call_with_deadline(fetch, timeout=self.timeout * 2 + 1.0, what="yahoo")
        except Exception as exc:
            if type(exc).__name__ == "YFPricesMissingError":
                return pd.DataFrame(), {}  # a valid ticker with no session in the range
            raise classify(exc) from exc

    def listings(self, symbols: Sequence[str] | None = None) -> list[Listing]:
        if symbols is None:
            return []  # Yahoo has no list of everything: sync names the tickers it wants
        return [self._listing(symbol) for symbol in symbols]

    def _listing(self, symbol: str) -> Listing:
        _, meta = self._history(symbol, period="5d")
        if not any(meta.values()):
            raise NotCovered(f"yahoo knows no {symbol}")
        exchange = str(meta.get("exchangeName") or "")
        kind = {"EQUITY": "stock", "ETF": "etf", "INDEX": "index"}.get(
            str(meta.get("instrumentType")), "stock"
        )
        first = meta.get("firstTradeDate")
        listed_on = first.date() if isinstance(first, pd.Timestamp) else None
        return Listing(
            symbol=symbol,
            name=str(meta.get("longName") or meta.get("shortName") or symbol),
            exchange=EXCHANGES.get(exchange, exchange or "US"),
            board="us",
            market="us",
            kind=kind,
            currency=str(meta.get("currency") or "USD"),
            listed_on=listed_on,
        )

    def bars(self, symbol: str, start: dt.date, end: dt.date) -> pd.DataFrame:
        # Yahoo's end is exclusive.
        frame, _ = self._history(
            symbol, start=start.isoformat(), end=(end + dt.timedelta(days=1)).isoformat()
        )
        if frame.empty:
            return empty_bars()
        missing = [c for c in (*_COLUMNS, "Adj Close") if c not in frame.columns]
        if missing:
            raise SchemaChanged(f"yahoo: columns {missing} are gone (got {list(frame.columns)})")
        index = pd.DatetimeIndex(frame.index)
        bars = frame.loc[:, list(_COLUMNS)].rename(columns=_COLUMNS).reset_index(drop=True)
        # The index is midnight in the exchange's zone: its local date is the session.
        bars.insert(0, "date", (index.tz_localize(None) if index.tz else index).date)
        bars["adj_factor"] = (frame["Adj Close"] / frame["Close"]).to_numpy()
        bars["amount"] = float("nan")
        return bars
