"""The `sample` provider: offline and bundled, so a new embedded server has data at first start.

Two parts, told apart by their listings:

* Real US daily bars: AAPL, IBM and MSFT 2000-03-01 to 2013-03-01 (3,270 sessions each) and
  GOOG 2004-08-19 to 2013-03-01 (2,148; bokeh's GOOG is Quandl's pre-2014 GOOGL series, not
  backtesting.py's GOOG, whose opens and volumes differ) from the bokeh-sampledata package:
  Quandl WIKI prices, declared public domain by Quandl. The file is read at run time from the
  installed package (`bokeh_sampledata/_data/stocks.csv.gz`), never copied into this repo.
  Open/high/low/close/volume are unadjusted; the package's split- and dividend-adjusted close
  gives the adjustment factor (adj_close / close).
* The synthetic A-share universe of synthetic.py: invented prices, every name marked 模拟.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import pandas as pd

from quantdesk.market.providers import synthetic
from quantdesk.market.providers.base import Listing, NotCovered, empty_bars

US_LISTINGS = {
    "AAPL": Listing(
        "AAPL",
        "Apple Inc.",
        "NASDAQ",
        "us",
        "us",
        sector="Information Technology",
        industry="Technology Hardware",
        currency="USD",
        listed_on=dt.date(1980, 12, 12),
    ),
    "GOOG": Listing(
        "GOOG",
        "Google Inc. (pre-2014 class A)",
        "NASDAQ",
        "us",
        "us",
        sector="Information Technology",
        industry="Internet Software & Services",
        currency="USD",
        listed_on=dt.date(2004, 8, 19),
    ),
    "IBM": Listing(
        "IBM",
        "International Business Machines",
        "NYSE",
        "us",
        "us",
        sector="Information Technology",
        industry="IT Services",
        currency="USD",
    ),
    "MSFT": Listing(
        "MSFT",
        "Microsoft Corporation",
        "NASDAQ",
        "us",
        "us",
        sector="Information Technology",
        industry="Systems Software",
        currency="USD",
        listed_on=dt.date(1986, 3, 13),
    ),
}


@lru_cache(maxsize=1)
def us_bars() -> dict[str, pd.DataFrame]:
    """The four US series from the installed bokeh-sampledata package, by ticker."""
    from bokeh_sampledata import package_path

    raw = pd.read_csv(package_path("stocks.csv.gz"))
    raw = raw[raw["Ticker"].isin(list(US_LISTINGS))]
    frame = pd.DataFrame(
        {
            "ticker": raw["Ticker"].astype(str),
            "date": pd.to_datetime(raw["Date"]).dt.date,
            "open": raw["Open"].astype("float64"),
            "high": raw["High"].astype("float64"),
            "low": raw["Low"].astype("float64"),
            "close": raw["Close"].astype("float64"),
            "volume": raw["Volume"].astype("int64"),
            "adj_factor": (raw["Adj Close"] / raw["Close"]).astype("float64"),
        }
    )
    frame["amount"] = np.nan
    return {
        str(ticker): group.drop(columns="ticker").reset_index(drop=True)
        for ticker, group in frame.groupby("ticker")
    }


def _synthetic_bars(symbol: str) -> pd.DataFrame:
    universe = synthetic.universe()
    i = universe.symbols.index(symbol)
    has_bar = ~np.isnan(universe.close[:, i])
    return pd.DataFrame(
        {
            "date": np.array(universe.dates, dtype=object)[has_bar],
            "open": universe.open[has_bar, i],
            "high": universe.high[has_bar, i],
            "low": universe.low[has_bar, i],
            "close": universe.close[has_bar, i],
            "volume": universe.volume[has_bar, i].astype("int64"),
            "amount": universe.amount[has_bar, i],
            "adj_factor": universe.adj_factor[has_bar, i],
            "prev_close": universe.prev_close[has_bar, i],
            "is_st": universe.is_st[has_bar, i],
            "suspended": universe.suspended[has_bar, i],
        }
    )


class SampleProvider:
    """Bundled bars: real US history (bokeh-sampledata) and the synthetic A-share universe."""

    name = "sample"

    def _symbols(self) -> list[str]:
        return [*synthetic.universe().symbols, *US_LISTINGS]

    def covers(self, symbol: str) -> bool:
        return symbol in US_LISTINGS or symbol in synthetic.universe().listings

    def listings(self, symbols: Sequence[str] | None = None) -> list[Listing]:
        known = {**synthetic.universe().listings, **US_LISTINGS}
        wanted = self._symbols() if symbols is None else list(symbols)
        unknown = [s for s in wanted if s not in known]
        if unknown:
            raise NotCovered(f"the sample data has no {', '.join(unknown)}")
        return [known[s] for s in wanted]

    def bars(self, symbol: str, start: dt.date, end: dt.date) -> pd.DataFrame:
        if symbol in US_LISTINGS:
            frame = us_bars()[symbol]
        elif symbol in synthetic.universe().listings:
            frame = _synthetic_bars(symbol)
        else:
            raise NotCovered(f"the sample data has no {symbol}")
        dates = frame["date"]
        window = frame[(dates >= start) & (dates <= end)]
        return window.reset_index(drop=True) if not window.empty else empty_bars()
