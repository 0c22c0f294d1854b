"""The benchmark strategy in backtrader, backtesting.py and vectorbt, configured to trade as
QuantDesk does: signal on the close, market order filled at the next bar's open, all-in whole
shares floor(cash / (open x 1.001)), sell everything, 0.1% commission per side, 100,000 cash.

Each ``run_*`` takes the input DataFrame and returns a :class:`Run` (fills and final equity);
that whole call is what the benchmark times.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
from engines_data import CASH, COMMISSION, FAST, GRID_FAST, GRID_SLOW, SLOW, crosses


@dataclass(frozen=True)
class Run:
    """What one engine produced: its fills (date, side, shares) and its final equity."""

    fills: list[tuple[date, str, int]]
    final_equity: float


# --- backtrader -------------------------------------------------------------------------------


def _backtrader_strategy() -> Any:
    import backtrader as bt

    class SmaCross(bt.Strategy):
        params = (("fast", FAST), ("slow", SLOW))

        def __init__(self) -> None:
            self.fast = bt.indicators.SMA(self.data.close, period=self.p.fast)
            self.slow = bt.indicators.SMA(self.data.close, period=self.p.slow)
            self.fills: list[tuple[date, str, int]] = []

        def notify_order(self, order: Any) -> None:
            if order.status == order.Completed:
                when = bt.num2date(order.executed.dt).date()
                side = "buy" if order.isbuy() else "sell"
                self.fills.append((when, side, round(abs(order.executed.size))))

        def next(self) -> None:
            if len(self) <= self.p.slow:  # both averages known on the previous bar too
                return
            f0, s0, f1, s1 = self.fast[0], self.slow[0], self.fast[-1], self.slow[-1]
            if not self.position and f1 <= s1 and f0 > s0:
                if len(self.data) >= self.data.buflen():
                    return  # the last bar: no next open to fill at
                # All-in at the next open, commission included. The order fills at that open
                # (cheat-on-open off); backtrader sizes at submission, so the size reads the
                # next open from the preloaded feed: sizing only, the signal never looks ahead.
                next_open = self.data.open[1]
                self.buy(size=math.floor(self.broker.getcash() / (next_open * (1 + COMMISSION))))
            elif self.position and f1 >= s1 and f0 < s0:
                self.close()

    return SmaCross


def _cerebro(frame: pd.DataFrame) -> Any:
    import backtrader as bt

    cerebro = bt.Cerebro(stdstats=False, cheat_on_open=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=frame))
    cerebro.broker.setcash(CASH)
    cerebro.broker.setcommission(commission=COMMISSION)  # 0.1% of value per side
    # Cash is checked when the order executes at the open, not against the signal's close.
    cerebro.broker.set_checksubmit(False)
    return cerebro


def run_backtrader(frame: pd.DataFrame) -> Run:
    """backtrader 1.9: SMA indicators, ``next()`` crossover, market orders at the next open."""
    cerebro = _cerebro(frame)
    cerebro.addstrategy(_backtrader_strategy())
    (strategy,) = cerebro.run()
    return Run(strategy.fills, float(cerebro.broker.getvalue()))


def grid_backtrader(frame: pd.DataFrame) -> list[float]:
    """backtrader's own sweep: ``optstrategy`` over the 100 (fast, slow) pairs, one process."""
    cerebro = _cerebro(frame)
    cerebro.optstrategy(_backtrader_strategy(), fast=list(GRID_FAST), slow=list(GRID_SLOW))
    results = cerebro.run(maxcpus=1, optreturn=False)
    return [float(run[0].broker.getvalue()) for run in results]


# --- backtesting.py ---------------------------------------------------------------------------


def _rolling_mean(values: Any, n: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    out: np.ndarray[Any, np.dtype[np.float64]] = pd.Series(values).rolling(n).mean().to_numpy()
    return out


def _backtesting_strategy() -> Any:
    from backtesting import Strategy

    class SmaCross(Strategy):
        fast = FAST
        slow = SLOW

        def init(self) -> None:
            self.f = self.I(_rolling_mean, self.data.Close, self.fast)
            self.s = self.I(_rolling_mean, self.data.Close, self.slow)

        def next(self) -> None:
            f, s = self.f, self.s
            if not self.position and f[-2] <= s[-2] and f[-1] > s[-1]:
                self.buy()  # all-in: backtesting.py sizes at the fill, commission included
            elif self.position and f[-2] >= s[-2] and f[-1] < s[-1]:
                self.position.close()

    return SmaCross


def run_backtesting(frame: pd.DataFrame) -> Run:
    """backtesting.py 0.6: market orders fill at the next open (``trade_on_close=False``)."""
    from backtesting import Backtest

    test = Backtest(
        frame,
        _backtesting_strategy(),
        cash=CASH,
        commission=COMMISSION,
        trade_on_close=False,
        exclusive_orders=True,
        finalize_trades=False,  # the last position stays open, marked at the last close
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "some trades remain open": intended
        stats = test.run()
    trades = [*stats._strategy.closed_trades, *stats._strategy.trades]
    fills: list[tuple[date, str, int]] = []
    for trade in trades:
        fills.append((pd.Timestamp(trade.entry_time).date(), "buy", abs(int(trade.size))))
        if trade.exit_time is not None:
            fills.append((pd.Timestamp(trade.exit_time).date(), "sell", abs(int(trade.size))))
    fills.sort(key=lambda f: (f[0], f[1] == "buy"))
    return Run(fills, float(stats["Equity Final [$]"]))


# --- vectorbt ---------------------------------------------------------------------------------


def _delayed(signal: Any) -> Any:
    """Signals of day t acted on at day t+1 (where the fill price, the open, is)."""
    out = np.zeros_like(signal)
    out[1:] = signal[:-1]
    return out


def vectorbt_signals(
    close: pd.DataFrame | pd.Series, fast: Any, slow: Any
) -> tuple[pd.DataFrame | pd.Series, pd.DataFrame | pd.Series]:
    """Entries and exits on the fill days, from vectorbt's moving averages."""
    import vectorbt as vbt

    fast_ma = vbt.MA.run(close, window=fast).ma.to_numpy()
    slow_ma = vbt.MA.run(close, window=slow).ma.to_numpy()
    up, down = crosses(fast_ma, slow_ma)
    if isinstance(close, pd.Series):
        return (
            pd.Series(_delayed(up), index=close.index),
            pd.Series(_delayed(down), index=close.index),
        )
    entries = pd.DataFrame(_delayed(up), index=close.index, columns=close.columns)
    exits = pd.DataFrame(_delayed(down), index=close.index, columns=close.columns)
    return entries, exits


def run_vectorbt(frame: pd.DataFrame) -> Run:
    """vectorbt 1.2 ``Portfolio.from_signals``: all cash (``size=inf``) in whole shares
    (``size_granularity=1``) at the fill day's open, 0.1% fees."""
    import vectorbt as vbt

    close = frame["Close"]
    entries, exits = vectorbt_signals(close, FAST, SLOW)
    portfolio = vbt.Portfolio.from_signals(
        close,
        entries,
        exits,
        price=frame["Open"],
        size=np.inf,
        size_granularity=1,
        fees=COMMISSION,
        init_cash=CASH,
        freq="1D",
    )
    records = portfolio.orders.records
    index = close.index
    fills = [
        (index[int(i)].date(), "buy" if side == 0 else "sell", round(size))
        for i, side, size in zip(records["idx"], records["side"], records["size"], strict=True)
    ]
    return Run(fills, float(portfolio.final_value()))


def grid_vectorbt(frame: pd.DataFrame) -> pd.DataFrame:
    """vectorbt's vectorised sweep: 100 (fast, slow) columns in one ``from_signals`` call,
    with a few per-column metrics (total return, Sharpe, max drawdown)."""
    import vectorbt as vbt

    close = frame["Close"]
    pairs = [(f, s) for f in GRID_FAST for s in GRID_SLOW]
    fast = [f for f, _ in pairs]
    slow = [s for _, s in pairs]
    fast_ma = vbt.MA.run(close, window=fast).ma.to_numpy()
    slow_ma = vbt.MA.run(close, window=slow).ma.to_numpy()
    up, down = crosses(fast_ma, slow_ma)
    columns = pd.MultiIndex.from_tuples(pairs, names=["fast", "slow"])
    portfolio = vbt.Portfolio.from_signals(
        close,  # broadcast against the 100 signal columns
        pd.DataFrame(_delayed(up), index=close.index, columns=columns),
        pd.DataFrame(_delayed(down), index=close.index, columns=columns),
        price=frame["Open"],
        size=np.inf,
        size_granularity=1,
        fees=COMMISSION,
        init_cash=CASH,
        freq="1D",
    )
    return pd.DataFrame(
        {
            "total_return": portfolio.total_return(),
            "sharpe_ratio": portfolio.sharpe_ratio(),
            "max_drawdown": portfolio.max_drawdown(),
        }
    )


def universe_vectorbt_inputs(
    panels: dict[str, pd.DataFrame],
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(close, entries, exits) of the universe for :func:`run_universe_vectorbt`."""
    close = panels["close"]
    entries, exits = vectorbt_signals(close, FAST, SLOW)
    if not (isinstance(entries, pd.DataFrame) and isinstance(exits, pd.DataFrame)):
        raise TypeError("a panel gives DataFrame signals")
    return close, entries, exits


def run_universe_vectorbt(
    panels: dict[str, pd.DataFrame],
    entries: pd.DataFrame,
    exits: pd.DataFrame,
    *,
    cash: float,
    weight: float,
) -> Any:
    """One ``Portfolio.from_signals`` over the whole panel: one portfolio sharing its cash
    (``group_by=True, cash_sharing=True``), each entry buying ``weight`` of the starting cash
    in 100-share lots at the open, 0.1% fees."""
    import vectorbt as vbt

    return vbt.Portfolio.from_signals(
        panels["close"],
        entries,
        exits,
        price=panels["open"],
        size=cash * weight,
        size_type="value",
        size_granularity=100,
        fees=COMMISSION,
        init_cash=cash,
        group_by=True,
        cash_sharing=True,
        freq="1D",
    )
