"""Inputs of benchmarks/engines.py: the GOOG bars, the seeded A-share universe, the strategies.

One strategy everywhere (issue 3, point 7): long-only SMA(10/30) crossover on the close. A
cross up on day t's close (fast <= slow on t-1, fast > slow on t) buys on day t+1's open with
all the cash in whole shares, floor(cash / (open x 1.001)) with 0.1% commission; a cross down
sells everything on the next open. Signals start once both averages exist on two days.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

import quantdesk.engine as qe

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

FAST, SLOW = 10, 30
CASH = 100_000.0
COMMISSION = 0.001
GRID_FAST = tuple(range(5, 55, 5))  # 10 values
GRID_SLOW = tuple(range(60, 260, 20))  # 10 values: 100 combinations, always fast < slow

UNIVERSE_SYMBOLS = 500
UNIVERSE_BARS = 2500
UNIVERSE_SEED = 20261123
UNIVERSE_CASH = 10_000_000.0
UNIVERSE_WEIGHT = 1.0 / UNIVERSE_SYMBOLS  # each entry buys 0.2% of equity


def goog() -> pd.DataFrame:
    """backtesting.py's GOOG daily bars, 2004-08-19 .. 2013-03-01 (2,148 rows, unadjusted)."""
    from backtesting.test import GOOG

    frame: pd.DataFrame = GOOG.copy()
    return frame


def crosses(fast: FloatArray, slow: FloatArray) -> tuple[BoolArray, BoolArray]:
    """(cross up, cross down) on each row: the signal days, before the one-bar delay."""
    up = np.zeros(fast.shape, dtype=bool)
    down = np.zeros(fast.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        up[1:] = (fast[:-1] <= slow[:-1]) & (fast[1:] > slow[1:])
        down[1:] = (fast[:-1] >= slow[:-1]) & (fast[1:] < slow[1:])
    return up, down


# --- QuantDesk strategies (source code, as a user would store them) ----------------------------

#: Event API, all-in: it asks for twice what the cash buys at today's close and lets the engine
#: cut the buy to what the cash pays at the next open, costs included (STRATEGY_API.md
#: section 2): floor(cash / (open x 1.001)) with commission_rate=0.001 and no minimum.
EVENT_ALL_IN = """
PARAMS = {"fast": 10, "slow": 30}


def initialize(ctx):
    ctx.state.update(
        symbol=ctx.universe[0],
        fast=ctx.params["fast"],
        slow=ctx.params["slow"],
        closes=[],  # the last `slow` closes
        previous=None,  # yesterday's [fast average, slow average]
    )


def handle_bar(ctx, data):
    state = ctx.state
    symbol, fast_n, slow_n, closes = state["symbol"], state["fast"], state["slow"], state["closes"]
    closes.append(data.current(symbol, "close"))
    if len(closes) > slow_n:
        del closes[0]
    elif len(closes) < slow_n:
        return
    fast, slow = sum(closes[-fast_n:]) / fast_n, sum(closes) / slow_n
    previous = state["previous"]
    state["previous"] = [fast, slow]
    if previous is None:
        return
    if previous[0] <= previous[1] and fast > slow and not ctx.positions:
        ctx.order(symbol, int(2 * ctx.cash / closes[-1]))
    elif previous[0] >= previous[1] and fast < slow and ctx.positions:
        ctx.order_target(symbol, 0)
"""

#: Vectorized API: weight 1/N of equity on a cross up, 0 on a cross down, NaN (no change) on
#: other days. Weights are sized at the signal day's close (STRATEGY_API.md section 1b).
VECTORIZED = """
import numpy as np
import pandas as pd

PARAMS = {"fast": 10, "slow": 30}


def _sma(values, n):
    out = np.full(values.shape, np.nan)
    total = np.cumsum(values, axis=0)
    out[n - 1] = total[n - 1] / n
    out[n:] = (total[n:] - total[:-n]) / n
    return out


def target_weights(data, params):
    close = data.close.to_numpy()
    fast, slow = _sma(close, params["fast"]), _sma(close, params["slow"])
    up = np.zeros(close.shape, bool)
    down = np.zeros(close.shape, bool)
    up[1:] = (fast[:-1] <= slow[:-1]) & (fast[1:] > slow[1:])
    down[1:] = (fast[:-1] >= slow[:-1]) & (fast[1:] < slow[1:])
    weights = np.full(close.shape, np.nan)
    weights[up] = 1.0 / close.shape[1]
    weights[down] = 0.0
    return pd.DataFrame(weights, index=data.close.index, columns=data.close.columns)
"""

#: Event API twin of VECTORIZED (the same orders through ctx.order_target_percent), to check
#: that the vectorized run trades as the event API would.
EVENT_TARGET_PERCENT = EVENT_ALL_IN.replace(
    "ctx.order(symbol, int(2 * ctx.cash / closes[-1]))",
    "ctx.order_target_percent(symbol, 1.0)",
)


# --- the seeded A-share universe -----------------------------------------------------------


def _codes(n: int) -> list[str]:
    """Main board (SH and SZ), ChiNext, STAR and BSE codes in a 60/20/15/5 mix."""
    counts = {"main": n * 60 // 100, "chinext": n * 20 // 100, "star": n * 15 // 100}
    counts["bse"] = n - sum(counts.values())
    codes = [f"{600000 + i:06d}.SH" if i % 2 else f"{1 + i:06d}.SZ" for i in range(counts["main"])]
    codes += [f"{300001 + i:06d}.SZ" for i in range(counts["chinext"])]
    codes += [f"{688001 + i:06d}.SH" for i in range(counts["star"])]
    codes += [f"{830001 + i:06d}.BJ" for i in range(counts["bse"])]
    return codes


def universe_panels(
    n_symbols: int = UNIVERSE_SYMBOLS, n_bars: int = UNIVERSE_BARS, seed: int = UNIVERSE_SEED
) -> dict[str, pd.DataFrame]:
    """Seeded synthetic daily bars (dates x symbols DataFrames) that respect the A-share limits.

    Random walks with fat tails (Student t, 1.5-3.5% daily), each day's move clipped to the
    board's limit; 0.5% of days close exactly at limit-up or limit-down (half-up rounded, as
    the rulebook computes it) and 0.3% open at the limit; 0.2% of days are suspended (volume 0,
    no move); 3% of the symbols are ST for 200 days. Columns: open high low close volume is_st.
    """
    rng = np.random.default_rng(seed)
    codes = _codes(n_symbols)
    dates = pd.bdate_range("2015-01-05", periods=n_bars)
    boards = [qe.board_of(c) for c in codes]
    base = np.array([{"main": 0.1, "chinext": 0.2, "star": 0.2, "bse": 0.3}[b] for b in boards])
    chinext = np.array([b == "chinext" for b in boards])
    after = np.asarray(dates >= pd.Timestamp("2020-08-24"))[:, None]
    pct = np.where(chinext & ~after, 0.1, base)  # ChiNext was +-10% before 2020-08-24
    is_st = np.zeros((n_bars, n_symbols), dtype=bool)
    for j in rng.choice(n_symbols, max(n_symbols * 3 // 100, 1), replace=False):
        start = int(rng.integers(0, n_bars - 200))
        is_st[start : start + 200, j] = True
    pct = np.where(is_st & (base == 0.1), 0.05, pct)  # main-board ST +-5% (before 2026)

    vol = rng.uniform(0.015, 0.035, n_symbols)
    moves = rng.standard_t(4, (n_bars, n_symbols)) * vol / np.sqrt(2) + 0.0003
    gaps = rng.normal(0.0, 0.3, (n_bars, n_symbols)) * vol
    at_limit = rng.random((n_bars, n_symbols))
    suspended = rng.random((n_bars, n_symbols)) < 0.002
    close = np.empty((n_bars, n_symbols))
    open_ = np.empty((n_bars, n_symbols))
    prev = np.round(rng.uniform(5.0, 80.0, n_symbols), 2)
    for t in range(n_bars):
        up, down = qe.limit_prices(prev, pct[t])
        c = np.clip(np.round(prev * (1 + moves[t]), 2), down, up)
        c = np.where(at_limit[t] < 0.0025, up, np.where(at_limit[t] > 0.9975, down, c))
        o = np.clip(np.round(prev * (1 + gaps[t]), 2), down, up)
        o = np.where((at_limit[t] > 0.4985) & (at_limit[t] < 0.5015), up, o)
        c = np.where(suspended[t], prev, c)
        o = np.where(suspended[t], prev, o)
        close[t], open_[t] = c, o
        prev = c
    noise = np.abs(rng.normal(0.0, 0.004, (2, n_bars, n_symbols)))
    high = np.maximum(open_, close) * (1 + noise[0])
    low = np.minimum(open_, close) * (1 - noise[1])
    volume = np.where(suspended, 0.0, np.round(rng.lognormal(13.0, 0.8, (n_bars, n_symbols))))

    def frame(values: npt.NDArray[np.generic]) -> pd.DataFrame:
        return pd.DataFrame(values, index=dates, columns=codes)

    return {
        "open": frame(open_),
        "high": frame(high),
        "low": frame(low),
        "close": frame(close),
        "volume": frame(volume),
        "is_st": frame(is_st),
    }


def universe_bars(panels: dict[str, pd.DataFrame]) -> qe.Bars:
    """The panels as one DataFrame per symbol (the documented input) turned into Bars."""
    arrays = {name: panel.to_numpy() for name, panel in panels.items()}
    dates = panels["close"].index
    frames = {
        code: pd.DataFrame({name: values[:, j] for name, values in arrays.items()}, index=dates)
        for j, code in enumerate(panels["close"].columns)
    }
    return qe.Bars.from_frames(frames)
