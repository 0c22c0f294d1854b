"""``backtest()``: validate inputs, turn them into arrays, run the bar loop, build the Result."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from quantdesk.engine.broker import REASONS, Book
from quantdesk.engine.context import BarData, Context, LogLimits, Session, make_session
from quantdesk.engine.data import PRICE_FIELDS, Bars
from quantdesk.engine.errors import ConfigError, StrategyError
from quantdesk.engine.profile import MarketArrays, build_market
from quantdesk.engine.result import Result, json_safe
from quantdesk.engine.rules import (
    DEFAULT_BENCHMARK,
    RULEBOOK_VERSION,
    Costs,
    Market,
    Rules,
    market_of,
)
from quantdesk.engine.sim import SimOutput, simulate
from quantdesk.engine.strategy import Api, Strategy, load_strategy, merge_params

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Fill = Literal["next_open", "next_close"]

_WEIGHT_TOL = 1e-9


@dataclass(frozen=True, slots=True)
class VectorData:
    """``data`` of the vectorized API: one DataFrame per field (index: dates, columns: symbols)."""

    open: pd.DataFrame
    high: pd.DataFrame
    low: pd.DataFrame
    close: pd.DataFrame
    volume: pd.DataFrame
    amount: pd.DataFrame
    is_st: pd.DataFrame
    suspended: pd.DataFrame

    @classmethod
    def of(cls, bars: Bars) -> VectorData:
        """Copies of the bars' fields, so the strategy cannot change the run's data."""
        frames = {name: bars.frame(name) for name in (*PRICE_FIELDS, "is_st", "suspended")}
        return cls(**frames)


class _EventSource:
    """Orders from ``handle_bar``: called after each bar's close with the run's session."""

    def __init__(self, strategy: Strategy, session: Session) -> None:
        if strategy.handle_bar is None:
            raise StrategyError("the event API needs handle_bar(ctx, data)")
        self._handle_bar = strategy.handle_bar
        self._session = session
        self._ctx = Context(session)
        self._data = BarData(session)

    def __call__(self, t: int, book: Book, total_value: float) -> tuple[IntArray, FloatArray]:
        s = self._session
        s.t, s.book, s.total_value = t, book, total_value
        try:
            self._handle_bar(self._ctx, self._data)
        except StrategyError:
            raise
        except Exception as exc:
            raise StrategyError(f"handle_bar failed on {s.dates[t]}: {exc!r}") from exc
        return s.take_orders()


class _WeightSource:
    """Orders from target weights: row t, sized at t's close, traded on the next bar."""

    def __init__(self, weights: FloatArray, market: MarketArrays) -> None:
        self._weights = weights
        self._mark = market.mark

    def __call__(self, t: int, book: Book, total_value: float) -> tuple[IntArray, FloatArray]:
        w = self._weights[t]
        price = self._mark[t]
        live = ~np.isnan(w) & (price > 0)
        if not live.any():
            return np.empty(0, np.int64), np.empty(0)
        # The same arithmetic as ctx.order_target_percent: floor(w * value / price) - shares.
        target = np.floor(w * total_value / np.where(live, price, 1.0))
        delta = np.where(live, target - book.shares, 0.0)
        sym = np.flatnonzero(delta)
        return sym.astype(np.int64), delta[sym]


def _check_weights(raw: object, bars: Bars) -> FloatArray:
    if not isinstance(raw, pd.DataFrame):
        raise StrategyError(f"target_weights must return a DataFrame, got {type(raw).__name__}")
    if not raw.index.equals(bars.dates) or list(raw.columns) != list(bars.symbols):
        try:
            raw = raw.reindex(index=bars.dates, columns=list(bars.symbols))
        except (TypeError, ValueError) as exc:
            raise StrategyError(
                f"target_weights: index/columns do not match the data: {exc}"
            ) from exc
        if raw.shape != bars.shape:
            raise StrategyError("target_weights must have the data's dates and symbols")
    try:
        weights = raw.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise StrategyError(f"target_weights must be numeric: {exc}") from exc
    bad = np.isinf(weights) | (weights < -_WEIGHT_TOL) | (weights > 1 + _WEIGHT_TOL)
    if bad.any():
        t, j = np.argwhere(bad)[0]
        raise StrategyError(
            f"target_weights on {bars.dates[t].date()} for {bars.symbols[j]} is "
            f"{weights[t, j]!r}: weights must be in [0, 1] (long only) or NaN"
        )
    over = np.nansum(weights, axis=1) > 1 + _WEIGHT_TOL
    if over.any():
        t = int(np.flatnonzero(over)[0])
        raise StrategyError(
            f"target_weights on {bars.dates[t].date()} sum to {np.nansum(weights[t])!r} > 1"
        )
    clipped: FloatArray = np.clip(weights, 0.0, 1.0)
    return clipped


def _benchmark(
    benchmark: pd.Series | str | None, bars: Bars, market: Market
) -> tuple[FloatArray, str | None]:
    """The benchmark price on each bar date (ffilled), and how it was chosen."""
    if benchmark is None:
        default = DEFAULT_BENCHMARK[market]
        if default not in bars.symbols:
            return np.full(len(bars.dates), np.nan), None
        benchmark = default
    if isinstance(benchmark, str):
        if benchmark not in bars.symbols:
            raise ConfigError(f"benchmark {benchmark!r} is not a symbol of the bars")
        prices = pd.Series(bars.close[:, bars.symbols.index(benchmark)], index=bars.dates)
        label = benchmark
    elif isinstance(benchmark, pd.Series):
        series = benchmark.copy()
        series.index = pd.DatetimeIndex(pd.to_datetime(series.index)).normalize()
        prices = series.astype(float).reindex(bars.dates)
        label = str(benchmark.name) if benchmark.name is not None else "series"
    else:
        raise ConfigError("benchmark must be None, a symbol of the bars or a price Series")
    values: FloatArray = np.asarray(prices.ffill().to_numpy(dtype=np.float64, na_value=np.nan))
    return values, label


def _equity_frame(out: SimOutput, bench: FloatArray, capital: float, bars: Bars) -> pd.DataFrame:
    peak = np.maximum.accumulate(out.equity)
    drawdown = np.where(peak > 0, 1.0 - out.equity / np.where(peak > 0, peak, 1.0), 0.0)
    first = np.flatnonzero(np.isfinite(bench))
    scaled = np.full(len(bench), np.nan)
    if len(first) and bench[first[0]] > 0:
        scaled = capital * bench / bench[first[0]]
    frame = pd.DataFrame(
        {"equity": out.equity, "cash": out.cash, "benchmark": scaled, "drawdown": drawdown},
        index=bars.dates.copy(),
    )
    frame.index.name = "date"
    return frame


def _tables(out: SimOutput, bars: Bars, market: MarketArrays) -> dict[str, pd.DataFrame]:
    symbols = np.array(bars.symbols, dtype=object)
    f, r = out.fills, out.refusals
    fills = pd.DataFrame(
        {
            "date": bars.dates[out.fill_bar],
            "symbol": symbols[f.sym],
            "side": np.where(f.side > 0, "buy", "sell"),
            "shares": f.shares.astype(np.int64),
            "price": f.price,
            "commission": f.commission,
            "min_commission_topup": f.min_commission_topup,
            "stamp_duty": f.stamp_duty,
            "transfer_fee": f.transfer_fee,
            "slippage": f.slippage,
        }
    )
    reasons = np.array([str(x) for x in REASONS], dtype=object)
    refusals = pd.DataFrame(
        {
            "date": bars.dates[out.refusal_bar],
            "symbol": symbols[r.sym],
            "side": np.where(r.side > 0, "buy", "sell"),
            "requested": r.requested.astype(np.int64),
            "filled": r.filled.astype(np.int64),
            "reason": reasons[r.reason],
        }
    )
    t_idx, j_idx = np.nonzero(out.shares > 0)
    shares = out.shares[t_idx, j_idx]
    close = market.mark[t_idx, j_idx]
    positions = pd.DataFrame(
        {
            "date": bars.dates[t_idx],
            "symbol": symbols[j_idx],
            "shares": shares.astype(np.int64),
            "close": close,
            "market_value": shares * close,
        }
    )
    return {"fills": fills, "refusals": refusals, "positions": positions}


def backtest(
    strategy: str | object,
    bars: Bars,
    *,
    market: str | None = None,
    initial_capital: float = 1_000_000.0,
    costs: Costs | Mapping[str, float] | None = None,
    fill: Fill = "next_open",
    slippage_bps: float = 0.0,
    params: Mapping[str, Any] | None = None,
    benchmark: pd.Series | str | None = None,
    rules: Rules | Mapping[str, Any] | None = None,
    risk_free_rate: float = 0.0,
    log_limits: LogLimits | None = None,
) -> Result:
    """Run ``strategy`` on ``bars`` under a market's rules (STRATEGY_API.md sections 2 and 3).

    Parameters
    ----------
    strategy : str or module-like
        Source code (executed in a fresh namespace: trusted code only) or an object with the
        event API (``initialize``, ``handle_bar``) or the vectorized API (``target_weights``),
        and optional ``PARAMS``.
    bars : Bars
        The daily bars; see :meth:`Bars.from_frames`.
    market : {"cn_a", "us"}, optional
        Inferred from the symbols when omitted (``600519.SH`` -> cn_a, ``AAPL`` -> us).
    initial_capital : float
        Starting cash.
    costs : Costs or dict, optional
        Overrides of the market's dated cost rules.
    fill : {"next_open", "next_close"}
        Orders queued after day t's close fill at day t+1's open (default) or close.
    slippage_bps : float
        Fill prices move against each order by this many basis points (capped at the limits).
    params : dict, optional
        Overrides of the strategy's ``PARAMS``; unknown keys are an error.
    benchmark : Series or str, optional
        A price series or a symbol of ``bars``; by default the market's benchmark
        (000300.SH / SPY) when it is among the bars.
    rules : Rules or dict, optional
        Overrides of the market's trading rules (``t_plus_1``, ``price_limits``, lots, ...).
    risk_free_rate : float
        Annual rate for the Sharpe and Sortino ratios and alpha.
    log_limits : LogLimits, optional
        Caps on ``ctx.log``.

    Returns
    -------
    Result

    Raises
    ------
    StrategyError
        Invalid strategy code, params or weights, or an exception inside the strategy.
    ConfigError
        Invalid market, costs, rules, fill, capital or benchmark.
    """
    if not isinstance(bars, Bars):
        raise ConfigError("bars must be a quantdesk.engine.Bars (see Bars.from_frames)")
    if fill not in ("next_open", "next_close"):
        raise ConfigError(f"fill must be 'next_open' or 'next_close', got {fill!r}")
    if not (np.isfinite(initial_capital) and initial_capital > 0):
        raise ConfigError(f"initial_capital must be a positive number, got {initial_capital!r}")
    if not (np.isfinite(slippage_bps) and 0 <= slippage_bps < 10_000):
        raise ConfigError(f"slippage_bps must be in [0, 10000), got {slippage_bps!r}")
    try:
        mkt = Market(market) if market is not None else market_of(bars.symbols)
    except ValueError as exc:
        raise ConfigError(f"unknown market {market!r}: 'cn_a' or 'us'") from exc
    cost_overrides = Costs.coerce(costs)
    rule_overrides = Rules.coerce(rules)
    loaded = load_strategy(strategy)
    merged = merge_params(loaded.defaults, params)
    arrays = build_market(bars, mkt, costs=cost_overrides, rules=rule_overrides, fill=fill)
    capital = float(initial_capital)
    bench, bench_label = _benchmark(benchmark, bars, mkt)

    session = make_session(
        bars,
        arrays,
        params=merged,
        book=Book.empty(capital, len(bars.symbols)),
        limits=log_limits or LogLimits(),
    )
    if loaded.api is Api.EVENT:
        if loaded.initialize is not None:
            session.in_initialize = True
            session.total_value = capital
            try:
                loaded.initialize(Context(session))
            except StrategyError:
                raise
            except Exception as exc:
                raise StrategyError(f"initialize failed: {exc!r}") from exc
            finally:
                session.in_initialize = False
        out = simulate(
            arrays,
            initial_capital=capital,
            slippage_bps=slippage_bps,
            source=_EventSource(loaded, session),
        )
    else:
        if loaded.target_weights is None:
            raise StrategyError("the vectorized API needs target_weights(data, params)")
        try:
            raw = loaded.target_weights(VectorData.of(bars), dict(merged))
        except StrategyError:
            raise
        except Exception as exc:
            raise StrategyError(f"target_weights failed: {exc!r}") from exc
        weights = _check_weights(raw, bars)
        out = simulate(
            arrays,
            initial_capital=capital,
            slippage_bps=slippage_bps,
            source=_WeightSource(weights, arrays),
        )
    try:
        state = json.loads(json.dumps(session.state, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise StrategyError(f"ctx.state must be JSON-serialisable: {exc}") from exc

    tables = _tables(out, bars, arrays)
    records = pd.DataFrame(session.records, index=bars.dates.copy())
    records.index.name = "date"
    logs = pd.DataFrame(session.logs, columns=["date", "message"])
    config = {
        "api": str(loaded.api),
        "market": str(mkt),
        "initial_capital": capital,
        "fill": fill,
        "slippage_bps": float(slippage_bps),
        "params": merged,
        "costs": cost_overrides.as_dict(),
        "rules": rule_overrides.as_dict(),
        "t_plus_1": arrays.t_plus_1,
        "benchmark": bench_label,
        "risk_free_rate": float(risk_free_rate),
        "start": bars.dates[0].date().isoformat(),
        "end": bars.dates[-1].date().isoformat(),
        "symbols": len(bars.symbols),
        "rulebook_version": RULEBOOK_VERSION,
    }
    return Result(
        equity=_equity_frame(out, bench, capital, bars),
        positions=tables["positions"],
        fills=tables["fills"],
        refusals=tables["refusals"],
        logs=logs,
        records=records,
        rulebook_version=RULEBOOK_VERSION,
        config=json_safe(config),
        state=state,
        risk_free_rate=float(risk_free_rate),
    )
