"""backtest_grid: one row per parameter combination, each equal to backtest()'s metrics."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

import quantdesk.engine as qe

VECTORIZED = """
import numpy as np
import pandas as pd

PARAMS = {"fast": 3, "slow": 8, "weight": 0.5}


def target_weights(data, params):
    close = data.close
    fast = close.rolling(params["fast"]).mean()
    slow = close.rolling(params["slow"]).mean()
    weights = (fast > slow).astype(float) * params["weight"] / close.shape[1]
    return weights.where(slow.notna())
"""

EVENT = """
PARAMS = {"fast": 3, "slow": 8}

def handle_bar(ctx, data):
    for symbol in ctx.universe:
        close = data.history(symbol, "close", ctx.params["slow"])
        if len(close) < ctx.params["slow"]:
            continue
        if close[-ctx.params["fast"]:].mean() > close.mean():
            ctx.order_target_percent(symbol, 0.4)
        else:
            ctx.order_target(symbol, 0)
"""

GRID = {"fast": [2, 3, 5], "slow": [8, 13]}


def _bars(symbols: tuple[str, ...] = ("600000.SH", "300750.SZ", "000300.SH")) -> qe.Bars:
    rng = np.random.default_rng(7)
    dates = pd.bdate_range("2020-06-01", periods=160)
    frames = {}
    for symbol in symbols:
        close = np.round(20 * np.cumprod(1 + rng.normal(0.001, 0.03, len(dates))), 2)
        opens = np.round(close * (1 + rng.normal(0, 0.01, len(dates))), 2)
        frames[symbol] = pd.DataFrame(
            {
                "open": opens,
                "high": np.maximum(opens, close),
                "low": np.minimum(opens, close),
                "close": close,
                "volume": np.where(rng.random(len(dates)) < 0.03, 0.0, 1e6),
            },
            index=dates,
        )
    return qe.Bars.from_frames(frames)


def _assert_row_is_backtest(row: pd.Series, metrics: dict[str, Any], columns: list[str]) -> None:
    for key in columns:
        expected = metrics[key]
        if expected is None:
            assert math.isnan(row[key]), key
        else:
            assert row[key] == expected, key


@pytest.mark.parametrize("accelerate", [False, None])
def test_each_row_equals_backtest_metrics(accelerate: bool | None) -> None:
    bars = _bars()
    kwargs: dict[str, Any] = {
        "initial_capital": 500_000,
        "slippage_bps": 5.0,
        "benchmark": "000300.SH",
        "accelerate": accelerate,
    }
    rows = qe.backtest_grid(VECTORIZED, bars, param_grid=GRID, round_trips=True, **kwargs)
    assert list(rows.columns) == [
        "fast",
        "slow",
        *qe.GRID_METRICS,
        *qe.ROUND_TRIP_METRICS,
    ]
    assert len(rows) == 6
    # The product in key order, the last key varying fastest.
    assert list(zip(rows["fast"], rows["slow"], strict=True)) == [
        (2, 8),
        (2, 13),
        (3, 8),
        (3, 13),
        (5, 8),
        (5, 13),
    ]
    for i, row in rows.iterrows():
        combo = {"fast": int(row["fast"]), "slow": int(row["slow"])}
        result = qe.backtest(VECTORIZED, bars, params=combo, **kwargs)
        assert result.metrics["trades_count"] > 0, i
        _assert_row_is_backtest(row, result.metrics, [*qe.GRID_METRICS, *qe.ROUND_TRIP_METRICS])


def test_event_api_runs_backtest_per_combination() -> None:
    bars = _bars()
    rows = qe.backtest_grid(
        EVENT, bars, param_grid=[{"fast": 2}, {"fast": 4, "slow": 12}], initial_capital=300_000
    )
    assert list(rows.columns[:2]) == ["fast", "slow"]
    assert math.isnan(rows["slow"][0])  # not set in that combination: the default applies
    for i, combo in enumerate([{"fast": 2}, {"fast": 4, "slow": 12}]):
        metrics = qe.backtest(EVENT, bars, params=combo, initial_capital=300_000).metrics
        _assert_row_is_backtest(rows.iloc[i], metrics, list(qe.GRID_METRICS))


def test_compiled_and_plain_kernels_give_the_same_rows() -> None:
    bars = _bars()
    plain = qe.backtest_grid(VECTORIZED, bars, param_grid=GRID, accelerate=False)
    compiled = qe.backtest_grid(VECTORIZED, bars, param_grid=GRID, accelerate=True)
    pd.testing.assert_frame_equal(plain, compiled, check_exact=True)


def test_grid_errors() -> None:
    bars = _bars()
    with pytest.raises(qe.StrategyError, match="unknown params: speed"):
        qe.backtest_grid(VECTORIZED, bars, param_grid={"speed": [1]})
    with pytest.raises(qe.ConfigError, match="no combinations"):
        qe.backtest_grid(VECTORIZED, bars, param_grid=[])
    with pytest.raises(qe.ConfigError, match="list of values"):
        qe.backtest_grid(VECTORIZED, bars, param_grid={"fast": 3})
    with pytest.raises(qe.ConfigError, match="fill must be"):
        qe.backtest_grid(VECTORIZED, bars, param_grid=GRID, fill="tomorrow")  # type: ignore[arg-type]
