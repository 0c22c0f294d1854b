"""``backtest()``: validate inputs, turn them into arrays, run the bar loop, build the Result."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from quantdesk.engine.accel import kernels_for
from quantdesk.engine.broker import REASONS, Book
from quantdesk.engine.context import BarData, Context, LogLimits, Session, make_session
from quantdesk.engine.data import PRICE_FIELDS, Bars
from quantdesk.engine.errors import ConfigError, StrategyError
from quantdesk.engine.profile import MarketArrays, build_market
from quantdesk.engine.result import Result, json_safe
from quantdesk.engine.resume import Resume
from quantdesk.engine.rules import (
    DEFAULT_BENCHMARK,
    RULEBOOK_VERSION,
    Costs,
    Market,
    Rules,
    market_of,
)
from quantdesk.engine.sim import OrderStep, SimOutput, simulate_events, simulate_weights
from quantdesk.engine.strategy import Api, Strategy, load_strategy, merge_params

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Fill = Literal["next_open", "next_close"]

_WEIGHT_TOL = 1e-9


_VECTOR_FIELDS = (*PRICE_FIELDS, "is_st", "suspended")


class VectorData:
    """``data`` of the vectorized API: one DataFrame per field (index: dates, columns: symbols).

    Fields ``open high low close volume amount is_st suspended``; each is a copy of the bars'
    field, built on first access, so the strategy cannot change the run's data and pays only for
    the fields it reads.
    """

    __slots__ = ("_bars", "_frames")

    def __init__(self, bars: Bars) -> None:
        self._bars = bars
        self._frames: dict[str, pd.DataFrame] = {}

    @classmethod
    def of(cls, bars: Bars) -> VectorData:
        """The vectorized API's view of ``bars``."""
        return cls(bars)

    def _frame(self, name: str) -> pd.DataFrame:
        frame = self._frames.get(name)
        if frame is None:
            frame = self._frames[name] = self._bars.frame(name)
        return frame

    @property
    def open(self) -> pd.DataFrame:
        """Opens."""
        return self._frame("open")

    @property
    def high(self) -> pd.DataFrame:
        """Highs."""
        return self._frame("high")

    @property
    def low(self) -> pd.DataFrame:
        """Lows."""
        return self._frame("low")

    @property
    def close(self) -> pd.DataFrame:
        """Closes."""
        return self._frame("close")

    @property
    def volume(self) -> pd.DataFrame:
        """Volumes."""
        return self._frame("volume")

    @property
    def amount(self) -> pd.DataFrame:
        """Traded amounts (NaN where not given)."""
        return self._frame("amount")

    @property
    def is_st(self) -> pd.DataFrame:
        """ST/*ST flags."""
        return self._frame("is_st")

    @property
    def suspended(self) -> pd.DataFrame:
        """Suspension flags."""
        return self._frame("suspended")


def _event_step(strategy: Strategy, session: Session) -> OrderStep:
    """Orders from ``handle_bar``: called after each bar's close with the run's session."""
    handle_bar = strategy.handle_bar
    if handle_bar is None:
        raise StrategyError("the event API needs handle_bar(ctx, data)")
    ctx, data = Context(session), BarData(session)
    queue, no_orders = session.queue_sym, (np.empty(0, np.int64), np.empty(0))

    def step(t: int) -> tuple[IntArray, FloatArray]:
        session.t = t
        try:
            handle_bar(ctx, data)
        except StrategyError:
            raise
        except Exception as exc:
            raise StrategyError(f"handle_bar failed on {session.dates[t]}: {exc!r}") from exc
        return session.take_orders() if queue else no_orders

    return step


def _run_initialize(loaded: Strategy, session: Session) -> None:
    """Call the event API's ``initialize(ctx)`` once, before the first bar it trades."""
    if loaded.initialize is None:
        return
    session.in_initialize = True
    try:
        loaded.initialize(Context(session))
    except StrategyError:
        raise
    except Exception as exc:
        raise StrategyError(f"initialize failed: {exc!r}") from exc
    finally:
        session.in_initialize = False


def _weights_step(weights: FloatArray, session: Session) -> OrderStep:
    """Target weights as orders, bar by bar: row t's weights through order_target_percent.

    The same orders :func:`kernels.run_weights` derives (STRATEGY_API.md 1b: "exactly like an
    order placed in handle_bar on day t"); used where a run must go bar by bar (a resume).
    """
    ctx, symbols = Context(session), session.bars.symbols

    def step(t: int) -> tuple[IntArray, FloatArray]:
        session.t = t
        row = weights[t]
        for j in np.flatnonzero(~np.isnan(row)):
            ctx.order_target_percent(symbols[j], float(row[j]))
        return session.take_orders()

    return step


def _resumed_run(
    loaded: Strategy,
    bars: Bars,
    arrays: MarketArrays,
    session: Session,
    resumed: Resume,
    k: Any,
    slippage_bps: float,
    params: Mapping[str, Any],
) -> SimOutput:
    """A paper-trading step: bars before ``trade_from`` are history; trading starts there from
    the stored book, queued orders and ctx.state; ``initialize`` is not called again."""
    start = int(bars.dates.searchsorted(pd.Timestamp(resumed.trade_from)))
    if start >= len(bars.dates):
        raise ConfigError(f"no bar on or after resume.trade_from {resumed.trade_from}")
    named = set(resumed.positions) | {s for s, _ in resumed.pending}
    unknown = sorted(s for s in named if s not in session.index)
    if unknown:
        raise ConfigError(f"resume names symbols without bars: {', '.join(unknown)}")
    book = session.book
    for symbol, (shares, avg_cost) in resumed.positions.items():
        j = session.index[symbol]
        book.shares[j], book.sellable[j], book.avg_cost[j] = shares, shares, avg_cost
    session.state = resumed.state_copy()
    pending = (
        np.array([session.index[s] for s, _ in resumed.pending], np.int64),
        np.array([q for _, q in resumed.pending], np.float64),
    )
    if loaded.api is Api.EVENT:
        step = _event_step(loaded, session)
        if resumed.initialize:
            session.t = start  # initialize sees the history up to the first traded bar
            _run_initialize(loaded, session)
    else:
        step = _weights_step(run_target_weights(loaded, bars, VectorData.of(bars), params), session)
    return simulate_events(
        arrays, k, book=book, slippage_bps=slippage_bps, step=step, start=start, pending=pending
    )


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
    clipped: FloatArray = np.ascontiguousarray(np.clip(weights, 0.0, 1.0))
    clipped.setflags(write=False)  # the kernels take read-only, C-ordered arrays
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


def scaled_benchmark(bench: FloatArray, capital: float) -> FloatArray:
    """The benchmark prices scaled to start at the initial capital (NaN without a benchmark)."""
    first = np.flatnonzero(np.isfinite(bench))
    scaled: FloatArray = np.full(len(bench), np.nan)
    if len(first) and bench[first[0]] > 0:
        scaled = capital * bench / bench[first[0]]
    return scaled


def _equity_frame(out: SimOutput, bench: FloatArray, capital: float, bars: Bars) -> pd.DataFrame:
    peak = np.maximum.accumulate(out.equity)
    drawdown = np.where(peak > 0, 1.0 - out.equity / np.where(peak > 0, peak, 1.0), 0.0)
    scaled = scaled_benchmark(bench, capital)
    frame = pd.DataFrame(
        {"equity": out.equity, "cash": out.cash, "benchmark": scaled, "drawdown": drawdown},
        index=bars.dates.copy(),
    )
    frame.index.name = "date"
    return frame


def _tables(
    out: SimOutput, bars: Bars, market: MarketArrays
) -> dict[str, Callable[[], pd.DataFrame]]:
    """Builders of the Result's tables (run on first access: see :class:`Result`)."""
    symbols = np.array(bars.symbols, dtype=object)

    def fills() -> pd.DataFrame:
        f = out.fills
        return pd.DataFrame(
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

    def refusals() -> pd.DataFrame:
        r = out.refusals
        reasons = np.array([str(x) for x in REASONS], dtype=object)
        return pd.DataFrame(
            {
                "date": bars.dates[out.refusal_bar],
                "symbol": symbols[r.sym],
                "side": np.where(r.side > 0, "buy", "sell"),
                "requested": r.requested.astype(np.int64),
                "filled": r.filled.astype(np.int64),
                "reason": reasons[r.reason],
            }
        )

    def holdings(first: int) -> pd.DataFrame:
        t_idx, j_idx = np.nonzero(out.shares[first:] > 0)
        t_idx += first
        shares = out.shares[t_idx, j_idx]
        close = market.mark[t_idx, j_idx]
        frame = pd.DataFrame(
            {
                "date": bars.dates[t_idx],
                "symbol": symbols[j_idx],
                "shares": shares.astype(np.int64),
                "close": close,
                "market_value": shares * close,
            }
        )
        if first and frame.empty and (out.shares > 0).any():
            frame = frame.astype({"symbol": "str"})  # as a slice of the full table would be
        return frame

    def pending_orders() -> pd.DataFrame:
        last = len(bars.dates) - 1
        return pd.DataFrame(
            {
                "symbol": symbols[out.pending_sym].astype(str),
                "shares": out.pending_qty.astype(np.int64),
                "reference_price": market.mark[last, out.pending_sym] if last >= 0 else [],
            }
        )

    return {
        "pending_orders": pending_orders,
        "fills": fills,
        "refusals": refusals,
        "positions": lambda: holdings(0),
        "final_positions": lambda: holdings(max(len(bars.dates) - 1, 0)),
    }


@dataclass(frozen=True, slots=True)
class Prepared:
    """A validated run configuration with its market arrays (shared by backtest and grid)."""

    market: Market
    costs: Costs
    rules: Rules
    strategy: Strategy
    params: dict[str, Any]
    arrays: MarketArrays
    capital: float
    fill: str
    slippage_bps: float
    bench: FloatArray
    bench_label: str | None


def prepare(
    strategy: str | object,
    bars: Bars,
    *,
    market: str | None,
    initial_capital: float,
    costs: Costs | Mapping[str, float] | None,
    fill: str,
    slippage_bps: float,
    params: Mapping[str, Any] | None,
    benchmark: pd.Series | str | None,
    rules: Rules | Mapping[str, Any] | None,
) -> Prepared:
    """Validate a run's inputs and apply the rulebook to the bars (see :func:`backtest`)."""
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
    bench, bench_label = _benchmark(benchmark, bars, mkt)
    return Prepared(
        market=mkt,
        costs=cost_overrides,
        rules=rule_overrides,
        strategy=loaded,
        params=merged,
        arrays=arrays,
        capital=float(initial_capital),
        fill=fill,
        slippage_bps=float(slippage_bps),
        bench=bench,
        bench_label=bench_label,
    )


def run_target_weights(
    strategy: Strategy, bars: Bars, data: VectorData, params: Mapping[str, Any]
) -> FloatArray:
    """Call ``target_weights(data, params)`` and check what it returns."""
    if strategy.target_weights is None:
        raise StrategyError("the vectorized API needs target_weights(data, params)")
    try:
        raw = strategy.target_weights(data, dict(params))
    except StrategyError:
        raise
    except Exception as exc:
        raise StrategyError(f"target_weights failed: {exc!r}") from exc
    return _check_weights(raw, bars)


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
    accelerate: bool | None = None,
    resume: Resume | Mapping[str, Any] | None = None,
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
    accelerate : bool, optional
        Kernels to run: ``None`` (default) the numba-compiled ones if :func:`use_numba` ran in
        this process, else plain Python; ``True`` compiled (compiling now if needed; an error
        without numba); ``False`` plain Python. Results are identical either way.

    Returns
    -------
    Result

    Raises
    ------
    StrategyError
        Invalid strategy code, params or weights, or an exception inside the strategy.
    ConfigError
        Invalid market, costs, rules, fill, capital or benchmark, or ``accelerate=True``
        without numba.
    """
    run = prepare(
        strategy,
        bars,
        market=market,
        initial_capital=initial_capital,
        costs=costs,
        fill=fill,
        slippage_bps=slippage_bps,
        params=params,
        benchmark=benchmark,
        rules=rules,
    )
    loaded, arrays, capital, merged = run.strategy, run.arrays, run.capital, run.params
    k = kernels_for(accelerate)
    resumed = Resume.coerce(resume)
    session = make_session(
        bars,
        arrays,
        params=merged,
        book=Book.empty(resumed.cash if resumed else capital, len(bars.symbols)),
        limits=log_limits or LogLimits(),
    )
    if resumed is not None:
        out = _resumed_run(loaded, bars, arrays, session, resumed, k, run.slippage_bps, merged)
    elif loaded.api is Api.EVENT:
        step = _event_step(loaded, session)
        _run_initialize(loaded, session)
        out = simulate_events(
            arrays, k, book=session.book, slippage_bps=run.slippage_bps, step=step
        )
    else:
        weights = run_target_weights(loaded, bars, VectorData.of(bars), merged)
        out = simulate_weights(
            arrays, k, weights=weights, initial_capital=capital, slippage_bps=run.slippage_bps
        )
    try:
        state = json.loads(json.dumps(session.state, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise StrategyError(f"ctx.state must be JSON-serialisable: {exc}") from exc

    def records() -> pd.DataFrame:
        frame = pd.DataFrame(session.records, index=bars.dates.copy())
        frame.index.name = "date"
        return frame

    def logs() -> pd.DataFrame:
        return pd.DataFrame(session.logs, columns=["date", "message"])

    config = {
        "api": str(loaded.api),
        "market": str(run.market),
        "initial_capital": capital,
        "fill": fill,
        "slippage_bps": run.slippage_bps,
        "params": merged,
        "costs": run.costs.as_dict(),
        "rules": run.rules.as_dict(),
        "t_plus_1": arrays.t_plus_1,
        "benchmark": run.bench_label,
        "risk_free_rate": float(risk_free_rate),
        "start": bars.dates[0].date().isoformat(),
        "end": bars.dates[-1].date().isoformat(),
        "symbols": len(bars.symbols),
        "rulebook_version": RULEBOOK_VERSION,
    }
    if resumed is not None:
        config["trade_from"] = resumed.trade_from.isoformat()
    return Result(
        equity=_equity_frame(out, run.bench, capital, bars),
        tables={**_tables(out, bars, arrays), "logs": logs, "records": records},
        rulebook_version=RULEBOOK_VERSION,
        config=json_safe(config),
        state=state,
        risk_free_rate=float(risk_free_rate),
        book=_final_book(out, bars),
        opening={
            symbol: (shares, avg_cost, resumed.trade_from)
            for symbol, (shares, avg_cost) in resumed.positions.items()
        }
        if resumed
        else {},
    )


def _final_book(out: SimOutput, bars: Bars) -> dict[str, Any]:
    """Cash and holdings (shares, average cost) after the last bar."""
    if not len(out.cash):
        return {"cash": None, "positions": {}}
    last = out.shares[-1]
    return {
        "cash": float(out.cash[-1]),
        "positions": {
            bars.symbols[j]: {
                "shares": int(last[j]),
                "avg_cost": float(out.avg_cost[j]),
            }
            for j in np.flatnonzero(last > 0)
        },
    }
