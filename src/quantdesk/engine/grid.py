"""``backtest_grid()``: one strategy over many parameter combinations, one row of metrics each.

A parameter sweep is the engine's heaviest use: the market arrays are built once, and for the
vectorized API each combination is one :func:`kernels.run_weights` call (numba-compiled after
:func:`accel.use_numba`), with its metrics taken straight from the arrays. Every row equals the
``metrics`` of :func:`backtest` with the same params (tests/engine/test_grid.py).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from quantdesk.engine import metrics as mt
from quantdesk.engine.accel import kernels_for
from quantdesk.engine.data import Bars
from quantdesk.engine.errors import ConfigError
from quantdesk.engine.rules import Costs, Rules
from quantdesk.engine.run import (
    Fill,
    FloatArray,
    VectorData,
    backtest,
    prepare,
    run_target_weights,
    scaled_benchmark,
)
from quantdesk.engine.sim import simulate_weights
from quantdesk.engine.strategy import Api, merge_params

#: The metrics of each grid row (STRATEGY_API.md section 4): those that come from the equity
#: curve, the benchmark and the fills' count and traded value. ``round_trips=True`` adds the
#: round-trip ones.
GRID_METRICS = (
    "final_value",
    "total_return",
    "annual_return",
    "annual_volatility",
    "sharpe_ratio",
    "sortino_ratio",
    "max_drawdown",
    "max_drawdown_duration",
    "calmar_ratio",
    "trades_count",
    "turnover",
    "benchmark_return",
    "alpha",
    "beta",
    "information_ratio",
    "tracking_error",
)
ROUND_TRIP_METRICS = ("round_trips_count", "win_rate", "profit_loss_ratio")


def combinations(
    param_grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """The combinations of a grid: the product of a ``{name: values}`` mapping (in key order,
    the last key varying fastest), or an explicit list of ``{name: value}`` dicts."""
    if isinstance(param_grid, Mapping):
        names = [str(name) for name in param_grid]
        values = []
        for name in names:
            options = param_grid[name]
            if isinstance(options, str | bytes) or not isinstance(options, Sequence):
                raise ConfigError(f"param_grid[{name!r}] must be a list of values")
            values.append(list(options))
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]
    combos = [dict(combo) for combo in param_grid]
    if not all(isinstance(k, str) for combo in combos for k in combo):
        raise ConfigError("param_grid combinations must be dicts with string keys")
    return combos


def _equity_metrics(
    equity: FloatArray,
    bench: FloatArray | None,
    n_fills: int,
    traded: float,
    risk_free_rate: float,
) -> dict[str, float | int]:
    """The :data:`GRID_METRICS` of one run, with the functions compute_metrics uses."""
    r = mt.daily_returns(equity)
    annual, drawdown = mt.annual_return(equity), mt.max_drawdown(equity)
    row: dict[str, float | int] = {
        "final_value": mt.final_value(equity),
        "total_return": mt.total_return(equity),
        "annual_return": annual,
        "annual_volatility": mt.annual_volatility(r),
        "sharpe_ratio": mt.sharpe_ratio(r, risk_free_rate),
        "sortino_ratio": mt.sortino_ratio(r, risk_free_rate),
        "max_drawdown": drawdown,
        "max_drawdown_duration": mt.max_drawdown_duration(equity),
        "calmar_ratio": annual / drawdown if drawdown > 0 else math.nan,  # mt.calmar_ratio
        "trades_count": n_fills,
        "turnover": mt.turnover_of(traded, equity),
        "benchmark_return": math.nan,
        "alpha": math.nan,
        "beta": math.nan,
        "information_ratio": math.nan,
        "tracking_error": math.nan,
    }
    if bench is not None:
        b = mt.daily_returns(bench)
        row["benchmark_return"] = mt.benchmark_return(bench)
        row["alpha"] = mt.alpha(r, b, risk_free_rate)
        row["beta"] = mt.beta(r, b)
        row["information_ratio"] = mt.information_ratio(r, b)
        row["tracking_error"] = mt.tracking_error(r, b)
    return row


def backtest_grid(
    strategy: str | object,
    bars: Bars,
    *,
    param_grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
    market: str | None = None,
    initial_capital: float = 1_000_000.0,
    costs: Costs | Mapping[str, float] | None = None,
    fill: Fill = "next_open",
    slippage_bps: float = 0.0,
    benchmark: pd.Series | str | None = None,
    rules: Rules | Mapping[str, Any] | None = None,
    risk_free_rate: float = 0.0,
    round_trips: bool = False,
    accelerate: bool | None = None,
) -> pd.DataFrame:
    """Backtest ``strategy`` once per parameter combination; return one row of metrics each.

    Parameters
    ----------
    strategy : str or module-like
        As for :func:`backtest`. The vectorized API (``target_weights``) takes the fast path
        (one compiled kernel call per combination); the event API runs :func:`backtest` per
        combination.
    bars : Bars
        The daily bars, shared by every combination.
    param_grid : mapping or list of mappings
        ``{"fast": [5, 10], "slow": [30, 60]}`` runs the product (4 combinations, the last name
        varying fastest); a list of dicts runs exactly those. Each combination overrides the
        strategy's ``PARAMS`` (unknown names are an error).
    market, initial_capital, costs, fill, slippage_bps, benchmark, rules, risk_free_rate
        As for :func:`backtest`, the same for every combination.
    round_trips : bool
        Also compute ``round_trips_count``, ``win_rate`` and ``profit_loss_ratio`` (builds each
        combination's fills table: slower).
    accelerate : bool, optional
        As for :func:`backtest`.

    Returns
    -------
    pandas.DataFrame
        One row per combination, in grid order: the parameter columns, then
        :data:`GRID_METRICS` (and :data:`ROUND_TRIP_METRICS`), each equal to
        ``backtest(..., params=combination).metrics``; undefined values are NaN.

    Raises
    ------
    StrategyError, ConfigError
        As :func:`backtest`, for the first combination that fails.
    """
    combos = combinations(param_grid)
    if not combos:
        raise ConfigError("param_grid has no combinations")
    run = prepare(
        strategy,
        bars,
        market=market,
        initial_capital=initial_capital,
        costs=costs,
        fill=fill,
        slippage_bps=slippage_bps,
        params=None,
        benchmark=benchmark,
        rules=rules,
    )
    names = list(dict.fromkeys(name for combo in combos for name in combo))
    columns = [*GRID_METRICS, *(ROUND_TRIP_METRICS if round_trips else ())]
    rows: list[dict[str, Any]] = []
    if run.strategy.api is Api.EVENT:
        for combo in combos:
            result = backtest(
                strategy,
                bars,
                market=market,
                initial_capital=initial_capital,
                costs=costs,
                fill=fill,
                slippage_bps=slippage_bps,
                params=combo,
                benchmark=benchmark,
                rules=rules,
                risk_free_rate=risk_free_rate,
                accelerate=accelerate,
            )
            rows.append({**combo, **{key: result.metrics[key] for key in columns}})
        return _frame(rows, names, columns)

    k = kernels_for(accelerate)
    scaled = scaled_benchmark(run.bench, run.capital)
    bench = None if np.isnan(scaled).all() else scaled
    for combo in combos:
        params = merge_params(run.strategy.defaults, combo)
        weights = run_target_weights(run.strategy, bars, VectorData.of(bars), params)
        out = simulate_weights(
            run.arrays,
            k,
            weights=weights,
            initial_capital=run.capital,
            slippage_bps=run.slippage_bps,
        )
        f = out.fills
        traded = float(np.sum(np.abs(f.shares * f.price))) if len(f.shares) else 0.0
        row = _equity_metrics(out.equity, bench, len(f.shares), traded, risk_free_rate)
        if round_trips:
            trips = mt.closed_round_trips(_fills_frame(out.fill_bar, f, bars))
            row["round_trips_count"] = len(trips)
            row["win_rate"] = mt.win_rate(trips)
            row["profit_loss_ratio"] = mt.profit_loss_ratio(trips)
        rows.append({**combo, **row})
    return _frame(rows, names, columns)


def _fills_frame(fill_bar: Any, f: Any, bars: Bars) -> pd.DataFrame:
    symbols = np.array(bars.symbols, dtype=object)
    return pd.DataFrame(
        {
            "date": bars.dates[fill_bar],
            "symbol": symbols[f.sym],
            "side": np.where(f.side > 0, "buy", "sell"),
            "shares": f.shares,
            "price": f.price,
            "commission": f.commission,
            "stamp_duty": f.stamp_duty,
            "transfer_fee": f.transfer_fee,
        }
    )


def _frame(rows: list[dict[str, Any]], names: list[str], columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=[*names, *columns])
    for column in columns:
        if column in ("trades_count", "max_drawdown_duration", "round_trips_count"):
            continue
        frame[column] = frame[column].astype(np.float64)  # None (undefined) -> NaN
    return frame
