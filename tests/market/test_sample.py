"""The bundled sample: real US bars from bokeh-sampledata and a synthetic A-share universe."""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pytest

from quantdesk.engine.rules import Board, Market, Rule, limit_prices, rule_values
from quantdesk.market.providers import synthetic
from quantdesk.market.providers.sample import SampleProvider, us_bars


@pytest.fixture(scope="module")
def universe() -> synthetic.Universe:
    return synthetic.universe()


def test_the_universe_covers_every_board(universe: synthetic.Universe) -> None:
    stocks = [s for s in universe.listings.values() if s.kind == "stock"]
    assert len(stocks) >= 50
    boards = {
        board: sum(s.board == board for s in stocks) for board in ("main", "chinext", "star", "bse")
    }
    assert boards["chinext"] >= 5
    assert boards["star"] >= 5
    assert boards["bse"] >= 1
    assert {s.exchange for s in stocks} == {"SH", "SZ", "BJ"}
    assert all(s.name.startswith(("模拟", "*ST模拟")) for s in stocks)  # labelled synthetic
    assert all(s.industry and s.sector for s in stocks)
    assert {"000300.SH", "000001.SH"} <= set(universe.listings)
    assert universe.dates[0] == dt.date(2015, 1, 5)
    assert universe.dates[-1] == dt.date(2024, 12, 31)
    assert dt.date(2024, 10, 1) not in universe.dates  # National Day: the SSE calendar


def test_every_close_respects_its_boards_limit(universe: synthetic.Universe) -> None:
    days = np.array(universe.dates, dtype="datetime64[D]")
    limit_days = {"main": 0, "chinext": 0, "star": 0, "bse": 0, "st": 0}
    for i, symbol in enumerate(universe.symbols):
        listing = universe.listings[symbol]
        if listing.kind != "stock":
            continue
        board = Board(listing.board)
        close, prev = universe.close[:, i], universe.prev_close[:, i]
        has = ~np.isnan(close)
        st = universe.is_st[:, i]
        pct = np.where(
            st,
            rule_values(Rule.PRICE_LIMIT_ST, Market.CN_A, board, days),
            rule_values(Rule.PRICE_LIMIT, Market.CN_A, board, days),
        )
        first = int(np.argmax(has))
        if listing.listed_on and listing.listed_on >= synthetic.START:
            pct[first : first + 5] = 0.0  # no limit in a listing's first five sessions
        up, down = limit_prices(prev, pct)
        assert (close[has] <= up[has] + 1e-9).all(), symbol
        assert (close[has] >= down[has] - 1e-9).all(), symbol
        assert (universe.high[has, i] <= up[has] + 1e-9).all(), symbol
        at_limit = has & np.isfinite(up) & ((close == up) | (close == down))
        key = "st" if st[at_limit].any() else listing.board
        limit_days[key] += int(at_limit.sum())
        ohlc = np.stack(
            [universe.open[has, i], universe.high[has, i], universe.low[has, i], close[has]]
        )
        assert (ohlc.max(axis=0) == universe.high[has, i]).all(), symbol
        assert (ohlc.min(axis=0) == universe.low[has, i]).all(), symbol
    assert all(count > 0 for count in limit_days.values()), limit_days


def test_forced_limit_days_and_the_st_stock(universe: synthetic.Universe) -> None:
    i = universe.symbols.index("600519.SH")
    t = universe.dates.index(dt.date(2016, 2, 15))
    up, _ = limit_prices(universe.prev_close[t : t + 1, i], np.array([0.10]))
    assert universe.close[t, i] == up[0]
    assert universe.open[t, i] == universe.high[t, i] == universe.low[t, i] == up[0]  # 一字板
    j = universe.symbols.index(synthetic.ST_SYMBOL)
    t = universe.dates.index(dt.date(2020, 6, 1))
    assert universe.is_st[t, j]
    assert universe.close[t, j] / universe.prev_close[t, j] - 1 == pytest.approx(0.05, abs=0.001)
    k = universe.symbols.index("300750.SZ")
    t = universe.dates.index(dt.date(2021, 3, 8))
    assert universe.close[t, k] / universe.prev_close[t, k] - 1 == pytest.approx(0.20, abs=0.001)


def test_the_suspension_and_the_dividends(universe: synthetic.Universe) -> None:
    symbol, start, end = synthetic.SUSPENSION
    i = universe.symbols.index(symbol)
    rows = [t for t, d in enumerate(universe.dates) if start <= d <= end]
    assert universe.suspended[rows, i].all()
    assert (universe.volume[rows, i] == 0).all()
    assert len(set(universe.close[rows, i])) == 1
    assert universe.suspended[:, i].sum() == len(rows)
    # ex-rights days: the factor jumps and the reference price is below the last close
    factor = universe.adj_factor[:, universe.symbols.index("600036.SH")]
    jumps = np.flatnonzero(np.diff(factor) > 1e-9) + 1
    assert len(jumps) >= 8  # about one dividend a year
    c = universe.close[:, universe.symbols.index("600036.SH")]
    pc = universe.prev_close[:, universe.symbols.index("600036.SH")]
    assert (pc[jumps] < c[jumps - 1]).all()
    assert pc[jumps] * factor[jumps] == pytest.approx(c[jumps - 1] * factor[jumps - 1], rel=1e-3)


def test_indices_follow_their_members(universe: synthetic.Universe) -> None:
    i = universe.symbols.index("000300.SH")
    close = universe.close[:, i]
    assert not np.isnan(close).any()
    assert 1500 < close.min() < close.max() < 12000
    assert (universe.adj_factor[:, i] == 1.0).all()
    assert (universe.volume[:, i] > 0).all()


def test_generation_is_deterministic_and_fast() -> None:
    started = time.perf_counter()
    again = synthetic.universe.__wrapped__()
    assert time.perf_counter() - started < 3.0
    first = synthetic.universe()
    np.testing.assert_array_equal(first.close, again.close)
    np.testing.assert_array_equal(first.volume, again.volume)
    assert first.listings == again.listings


def test_real_us_bars_from_the_installed_package() -> None:
    bars = us_bars()
    assert {symbol: len(frame) for symbol, frame in bars.items()} == {
        "AAPL": 3270,
        "GOOG": 2148,
        "IBM": 3270,
        "MSFT": 3270,
    }
    aapl = bars["AAPL"]
    assert aapl["date"].iloc[0] == dt.date(2000, 3, 1)
    assert (aapl["open"].iloc[0], aapl["close"].iloc[0]) == (118.56, 130.31)  # unadjusted
    assert aapl["adj_factor"].iloc[0] == pytest.approx(4.186662803811 / 130.31)
    provider = SampleProvider()
    window = provider.bars("GOOG", dt.date(2004, 8, 1), dt.date(2004, 8, 31))
    assert window["date"].iloc[0] == dt.date(2004, 8, 19)
    assert provider.covers("MSFT")
    assert not provider.covers("TSLA")
