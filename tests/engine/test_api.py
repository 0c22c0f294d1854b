"""The library surface: Bars, strategy loading, params, ctx/data, weights, Result and JSON."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

import quantdesk.engine as qe
from tests.engine.support import bars, frame, run

MAIN = "600000.SH"

EVENT = """
PARAMS = {"n": 3}
def initialize(ctx):
    ctx.state["bars"] = 0
def handle_bar(ctx, data):
    ctx.state["bars"] += 1
    closes = data.history(ctx.universe[0], "close", ctx.params["n"])
    ctx.record(last=float(closes[-1]), seen=len(closes))
    ctx.log("bar", ctx.now, len(closes))
"""

VECTOR = """
PARAMS = {"w": 0.5}
def target_weights(data, params):
    return data.close * 0 + params["w"]
"""


def _bars(n: int = 6) -> qe.Bars:
    return bars({MAIN: frame([(10.0 + i, 10.5 + i) for i in range(n)])})


def test_bars_from_frames_any_capitalisation_and_defaults() -> None:
    df = frame([(10.0, 10.5), (11.0, 11.5), (12.0, 12.5)]).rename(columns=str.upper)
    df["Amount"] = [1.0, 2.0, 3.0]
    b = qe.Bars.from_frames({MAIN: df})
    assert b.shape == (3, 1)
    assert list(b.prev_close[:, 0][1:]) == [10.5, 11.5]  # default: previous row's close
    assert np.isnan(b.prev_close[0, 0])
    assert list(b.amount[:, 0]) == [1.0, 2.0, 3.0]
    assert not b.close.flags.writeable  # shared safely between runs


def test_bars_from_long_matches_from_frames() -> None:
    a = frame([(10.0, 10.5), (11.0, 11.5)])
    c = frame([(20.0, 20.5)], dates=["2024-01-03"], prev_close=[19.0], is_st=[True])
    wide = qe.Bars.from_frames({"A": a, "B": c})
    long = pd.concat([a.assign(symbol="A"), c.assign(symbol="B")]).rename_axis("date").reset_index()
    from_long = qe.Bars.from_long(long)
    assert wide.symbols == from_long.symbols == ("A", "B")
    np.testing.assert_array_equal(wide.close, from_long.close)
    np.testing.assert_array_equal(wide.prev_close, from_long.prev_close)
    assert from_long.prev_close[1, 1] == 19.0  # given prev_close wins
    assert bool(from_long.is_st[1, 1])
    assert not bool(from_long.is_st[1, 0])
    assert np.isnan(from_long.close[0, 1])  # no bar: NaN
    assert bool(from_long.suspended[0, 1])


def test_bars_reject_bad_input() -> None:
    with pytest.raises(qe.DataError, match="missing columns"):
        qe.Bars.from_frames({MAIN: pd.DataFrame({"close": [1.0]})})
    df = frame([(1.0, 1.0)] * 2, dates=["2024-01-02", "2024-01-02"])
    with pytest.raises(qe.DataError, match="duplicate"):
        qe.Bars.from_frames({MAIN: df})


def test_event_strategy_from_source_params_state_logs_records() -> None:
    result = qe.backtest(EVENT, _bars(), params={"n": 2}, initial_capital=10_000)
    assert result.config["api"] == "event"
    assert result.config["params"] == {"n": 2}
    assert result.state == {"bars": 6}
    assert list(result.records["seen"]) == [1, 2, 2, 2, 2, 2]
    assert list(result.records["last"]) == [10.5 + i for i in range(6)]
    assert list(result.logs.message)[:2] == ["bar 2024-01-02 1", "bar 2024-01-03 2"]
    assert result.rulebook_version == qe.RULEBOOK_VERSION


def test_vectorized_strategy_from_namespace() -> None:
    ns = SimpleNamespace(
        PARAMS={"w": 1.0}, target_weights=lambda data, params: data.close * 0 + params["w"] / 2
    )
    result = qe.backtest(ns, _bars(), initial_capital=10_000)
    assert result.config["api"] == "vectorized"
    assert result.fills.side.iloc[0] == "buy"


def test_both_or_neither_api_is_an_error() -> None:
    with pytest.raises(qe.StrategyError, match="both"):
        qe.backtest(EVENT + VECTOR, _bars())
    with pytest.raises(qe.StrategyError, match="neither"):
        qe.backtest("PARAMS = {}", _bars())
    with pytest.raises(qe.StrategyError, match="handle_bar"):
        qe.backtest("def initialize(ctx):\n    pass\n", _bars())


def test_unknown_params_are_named() -> None:
    with pytest.raises(qe.StrategyError, match="unknown params: bogus, zed"):
        qe.backtest(EVENT, _bars(), params={"zed": 1, "bogus": 2, "n": 1})


def test_strategy_exception_is_wrapped_with_the_date() -> None:
    with pytest.raises(qe.StrategyError, match=r"2024-01-02.*ZeroDivisionError"):
        qe.backtest("def handle_bar(ctx, data):\n    1 / 0\n", _bars())


def test_history_never_returns_a_later_value() -> None:
    seen: list[tuple[int, float, float, bool]] = []

    def hook(bar: int, ctx: Any, data: Any) -> None:
        h = data.history(MAIN, "close", 100)
        seen.append((len(h), float(h[-1]), data.current(MAIN, "open"), data.can_trade(MAIN)))
        # A copy of its own: no `.base` leading to the whole array (the future), and editing
        # it leaves the run's data alone.
        assert h.base is None
        h[-1] = 0.0
        assert data.history(MAIN, "close", 1)[-1] == 10.5 + bar

    run({MAIN: frame([(10.0 + i, 10.5 + i) for i in range(4)])}, {}, hook=hook)
    assert seen == [(i + 1, 10.5 + i, 10.0 + i, True) for i in range(4)]


def test_ctx_order_helpers_size_orders_at_the_close() -> None:
    calls: list[Any] = []

    def hook(bar: int, ctx: Any, data: Any) -> None:
        if bar == 0:
            # close 10.00, total value 100,000
            calls.append(ctx.order_value(MAIN, 2_550))  # trunc(255.0) shares
            calls.append(ctx.order_target(MAIN, 1_000))  # 1,000 - (0 + 255 queued) = 745
            calls.append(ctx.order_target_percent(MAIN, 0.5))  # floor(50,000 / 10) - 1,000 = 4,000
            calls.append(ctx.order_target_value(MAIN, 5_000))  # 500 - 5,000 = -4,500
            calls.append(ctx.order(MAIN, 0.7))  # truncates to 0: nothing queued
        if bar == 1:
            calls.append(sorted(ctx.positions))
            calls.append(ctx.positions[MAIN].market_value)
            calls.append(
                ctx.cash + ctx.positions[MAIN].market_value == pytest.approx(ctx.total_value)
            )

    result = run(
        {MAIN: frame([(10.0, 10.0)] * 3)}, {}, hook=hook, rules={"lot_size": 1}, market="cn_a"
    )
    assert calls[:5] == [255, 745, 4_000, -4_500, None]
    # Day 1: the sell of 4,500 is cut to 0 sellable (t_plus_1); buys 255 + 745 + 4,000 fill.
    assert calls[5:] == [[MAIN], 50_000.0, True]
    assert list(result.refusals.reason) == ["t_plus_1"]


def test_ctx_guards() -> None:
    def bad_symbol(bar: int, ctx: Any, data: Any) -> None:
        ctx.order("NOPE.SH", 100)

    with pytest.raises(qe.StrategyError, match="unknown symbol"):
        run({MAIN: frame([(10.0, 10.0)] * 2)}, {}, hook=bad_symbol)

    def short(bar: int, ctx: Any, data: Any) -> None:
        ctx.order_target_percent(MAIN, -0.5)

    with pytest.raises(qe.StrategyError, match="short"):
        run({MAIN: frame([(10.0, 10.0)] * 2)}, {}, hook=short)

    def universe(bar: int, ctx: Any, data: Any) -> None:
        ctx.universe = [MAIN]

    with pytest.raises(qe.StrategyError, match="initialize"):
        run({MAIN: frame([(10.0, 10.0)] * 2)}, {}, hook=universe)


def test_initialize_narrows_universe() -> None:
    source = """
def initialize(ctx):
    ctx.universe = ["B"]
def handle_bar(ctx, data):
    ctx.record(n=len(ctx.universe))
    ctx.state["u"] = ctx.universe
"""
    b = bars({"A": frame([(1.0, 1.0)] * 2), "B": frame([(2.0, 2.0)] * 2)})
    result = qe.backtest(source, b)
    assert result.state == {"u": ["B"]}


def test_log_is_capped() -> None:
    source = "def handle_bar(ctx, data):\n    for i in range(10):\n        ctx.log('x' * 10, i)\n"
    result = qe.backtest(source, _bars(), log_limits=qe.LogLimits(max_lines=15, max_bytes=10_000))
    assert len(result.logs) == 16
    assert result.logs.message.iloc[-1].startswith("[log truncated")


def test_record_rejects_non_numbers() -> None:
    with pytest.raises(qe.StrategyError, match="needs a number"):
        qe.backtest("def handle_bar(ctx, data):\n    ctx.record(x='a')\n", _bars())


def test_weights_validation() -> None:
    with pytest.raises(qe.StrategyError, match=r"in \[0, 1\]"):
        qe.backtest("def target_weights(data, params):\n    return data.close * 0 - 1\n", _bars())
    two = bars({"A": frame([(1.0, 1.0)] * 2), "B": frame([(2.0, 2.0)] * 2)})
    with pytest.raises(qe.StrategyError, match="sum to"):
        qe.backtest("def target_weights(data, params):\n    return data.close * 0 + 0.6\n", two)
    with pytest.raises(qe.StrategyError, match="DataFrame"):
        qe.backtest("def target_weights(data, params):\n    return 1\n", two)


def test_vectorized_weights_trade_next_open_and_nan_means_no_change() -> None:
    source = """
import numpy as np
def target_weights(data, params):
    w = data.close * np.nan
    w.iloc[0] = 0.5
    w.iloc[2] = 0.0
    return w
"""
    result = qe.backtest(source, _bars(), initial_capital=100_000, rules={"lot_size": 1})
    # Row 0: 50% of 100,000 at close 10.50 -> floor(4,761.9) = 4,761 shares, filled at 11.00.
    assert list(result.fills.side) == ["buy", "sell"]
    assert list(result.fills.shares) == [4_761, 4_761]
    assert list(result.fills.price) == [11.0, 13.0]


def test_market_inference_and_mixed_symbols() -> None:
    assert qe.backtest(EVENT, _bars()).config["market"] == "cn_a"
    mixed = bars({"AAPL": frame([(1.0, 1.0)] * 2), MAIN: frame([(1.0, 1.0)] * 2)})
    with pytest.raises(qe.ConfigError, match="market"):
        qe.backtest(EVENT, mixed)


def test_benchmark_symbol_and_series() -> None:
    b = bars(
        {MAIN: frame([(10.0, 10.0)] * 3), "000300.SH": frame([(4.0, 4.0), (4.0, 5.0), (4.0, 6.0)])}
    )
    default = qe.backtest(EVENT, b, initial_capital=1_000)
    assert list(default.equity.benchmark) == [1_000.0, 1_250.0, 1_500.0]  # scaled to capital
    series = pd.Series([2.0, 1.0], index=pd.to_datetime(["2024-01-02", "2024-01-04"]), name="idx")
    custom = qe.backtest(EVENT, b, initial_capital=1_000, benchmark=series)
    assert list(custom.equity.benchmark) == [1_000.0, 1_000.0, 500.0]  # forward-filled
    assert custom.config["benchmark"] == "idx"
    with pytest.raises(qe.ConfigError, match="benchmark"):
        qe.backtest(EVENT, b, benchmark="SPY")


def test_config_errors() -> None:
    with pytest.raises(qe.ConfigError, match="fill"):
        qe.backtest(EVENT, _bars(), fill="next_tick")  # type: ignore[arg-type]
    with pytest.raises(qe.ConfigError, match="initial_capital"):
        qe.backtest(EVENT, _bars(), initial_capital=0)
    with pytest.raises(qe.ConfigError, match="market"):
        qe.backtest(EVENT, _bars(), market="hk")


def test_equity_drawdown_and_positions_tables() -> None:
    prices = [(10.0, 10.0), (10.0, 12.0), (12.0, 9.0), (9.0, 9.0)]
    result = run({MAIN: frame(prices)}, {0: [(MAIN, 1000)]}, rules={"price_limits": False})
    eq = result.equity
    assert list(eq.columns) == ["equity", "cash", "benchmark", "drawdown"]
    peak = eq.equity.cummax()
    np.testing.assert_allclose(eq.drawdown, 1 - eq.equity / peak)
    assert eq.drawdown.iloc[2] > 0
    pos = result.positions
    assert list(pos.columns) == ["date", "symbol", "shares", "close", "market_value"]
    assert list(pos.shares) == [1000, 1000, 1000]
    assert list(result.final_positions.market_value) == [9_000.0]


def test_to_dict_is_strict_json() -> None:
    result = qe.backtest(EVENT, _bars(), initial_capital=10_000)
    data = result.to_dict()
    text = json.dumps(data, allow_nan=False)  # raises on NaN or Infinity
    back = json.loads(text)
    assert back["equity"][0]["benchmark"] is None  # no benchmark: null, not NaN
    assert back["rulebook_version"] == qe.RULEBOOK_VERSION
    assert back["records"]["series"]["last"][0] == 10.5
    assert back["equity"][0]["date"] == "2024-01-02"
    assert set(back["metrics"]) >= {"total_return", "sharpe_ratio", "max_drawdown"}
