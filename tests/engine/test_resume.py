"""Resumed runs (paper trading): a run split into steps trades exactly like one run."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

import quantdesk.engine as qe

EVENT = """
PARAMS = {"fast": 3, "slow": 8}

def initialize(ctx):
    ctx.state["steps"] = 0

def handle_bar(ctx, data):
    ctx.state["steps"] += 1
    for symbol in ctx.universe:
        close = data.history(symbol, "close", ctx.params["slow"])
        if len(close) < ctx.params["slow"]:
            continue
        weight = 0.45 if close[-ctx.params["fast"]:].mean() > close.mean() else 0.0
        ctx.order_target_percent(symbol, weight)
"""

VECTOR = """
PARAMS = {"fast": 3, "slow": 8}

def target_weights(data, params):
    close = data.close
    long = close.rolling(params["fast"]).mean() > close.rolling(params["slow"]).mean()
    return long.astype(float) * 0.45
"""


def _bars(n: int = 80) -> qe.Bars:
    rng = np.random.default_rng(11)
    frames = {}
    for i, symbol in enumerate(("600000.SH", "000001.SZ")):
        close = 10 * np.exp(np.cumsum(rng.normal(0, 0.02, n))) * (1 + i)
        open_ = close * (1 + rng.normal(0, 0.004, n))
        frames[symbol] = pd.DataFrame(
            {
                "open": open_,
                "high": np.maximum(open_, close) * 1.01,
                "low": np.minimum(open_, close) * 0.99,
                "close": close,
                "volume": 1e6,
            },
            index=pd.bdate_range("2024-01-02", periods=n),
        )
    return qe.Bars.from_frames(frames)


def _resume_from(result: qe.Result, trade_from: dt.date) -> dict:
    book = result.book
    return {
        "trade_from": trade_from.isoformat(),
        "cash": book["cash"],
        "positions": book["positions"],
        "pending": result.to_dict()["pending_orders"],
        "state": result.state,
    }


@pytest.mark.parametrize("code", [EVENT, VECTOR], ids=["event", "vectorized"])
def test_steps_trade_exactly_like_one_run(code: str) -> None:
    bars = _bars()
    whole = qe.backtest(code, bars, market="cn_a", initial_capital=200_000)
    cut = 50  # the first step sees bars 0..49, the second goes on from bar 50
    first = qe.backtest(code, _slice(bars, 0, cut), market="cn_a", initial_capital=200_000)
    assert len(first.pending_orders) == len(first.refusals[first.refusals.reason == "no_next_bar"])
    trade_from = bars.dates[cut].date()
    second = qe.backtest(
        code, bars, market="cn_a", initial_capital=200_000, resume=_resume_from(first, trade_from)
    )
    # Fills of the two steps are the one run's fills, and the books agree at the end.
    steps = pd.concat([first.fills, second.fills], ignore_index=True)
    pd.testing.assert_frame_equal(steps, whole.fills)
    assert second.book["cash"] == pytest.approx(whole.book["cash"], rel=1e-12)
    assert {s: p["shares"] for s, p in second.book["positions"].items()} == {
        s: p["shares"] for s, p in whole.book["positions"].items()
    }
    for symbol, position in whole.book["positions"].items():
        assert second.book["positions"][symbol]["avg_cost"] == pytest.approx(position["avg_cost"])
    assert second.equity["equity"].iloc[-1] == pytest.approx(whole.equity["equity"].iloc[-1])
    if code is EVENT:
        # initialize ran once; handle_bar ran once per bar across both steps.
        assert second.state == whole.state == {"steps": len(bars.dates)}
    # Nothing traded before trade_from in the resumed step.
    assert (second.fills.date >= pd.Timestamp(trade_from)).all()


def _slice(bars: qe.Bars, start: int, stop: int) -> qe.Bars:
    frames = {
        symbol: pd.DataFrame(
            {field: bars.frame(field)[symbol].iloc[start:stop] for field in bars_fields()}
        )
        for symbol in bars.symbols
    }
    return qe.Bars.from_frames(frames)


def bars_fields() -> tuple[str, ...]:
    return ("open", "high", "low", "close", "volume")


def test_pending_orders_are_the_last_bars_orders() -> None:
    result = qe.backtest(EVENT, _bars(), market="cn_a", initial_capital=200_000)
    pending = result.pending_orders
    assert list(pending.columns) == ["symbol", "shares", "reference_price"]
    refused = result.refusals[result.refusals.reason == "no_next_bar"]
    assert len(pending) == len(refused) > 0
    signed = np.where(refused.side == "buy", refused.requested, -refused.requested)
    assert list(pending.shares) == list(signed)
    closes = result.equity.index[-1]
    bars = _bars()
    for row in pending.itertuples():
        assert row.reference_price == bars.frame("close").loc[closes, row.symbol]


@pytest.mark.parametrize(
    ("resume", "message"),
    [
        ({"trade_from": "2030-01-01", "cash": 1.0}, "no bar on or after"),
        ({"trade_from": "2024-03-01", "cash": -5.0}, "cash"),
        (
            {"trade_from": "2024-03-01", "cash": 1.0, "positions": {"XXX": {"shares": 100}}},
            "without bars",
        ),
        (
            {"trade_from": "2024-03-01", "cash": 1.0, "positions": {"600000.SH": {"shares": 1.5}}},
            "shares",
        ),
        ({"trade_from": "2024-03-01", "cash": 1.0, "colour": "red"}, "unknown resume keys"),
    ],
)
def test_bad_resume_is_a_config_error(resume: dict, message: str) -> None:
    with pytest.raises(qe.ConfigError, match=message):
        qe.backtest(EVENT, _bars(), market="cn_a", resume=resume)


def test_round_trips_close_against_opening_positions() -> None:
    from quantdesk.engine.metrics import closed_round_trips

    fills = pd.DataFrame(
        {
            "date": [pd.Timestamp("2024-03-05")],
            "symbol": ["600000.SH"],
            "side": ["sell"],
            "shares": [100],
            "price": [12.0],
            "commission": [5.0],
            "stamp_duty": [0.6],
            "transfer_fee": [0.012],
            "slippage": [0.0],
        }
    )
    with pytest.raises(ValueError, match="exceeds the open lots"):
        closed_round_trips(fills)
    trips = closed_round_trips(fills, {"600000.SH": (300.0, 10.0, dt.date(2024, 3, 1))})
    (trip,) = trips.itertuples()
    # (12.00 - 10.00) x 100 - (5.00 + 0.60 + 0.012) = 194.388; the opening lot has no costs.
    assert trip.pnl == pytest.approx(194.388)
    assert trip.entry_price == 10.0
    assert trip.holding_days == 4


def test_a_first_step_may_run_initialize() -> None:
    bars = _bars()
    trade_from = bars.dates[30].date().isoformat()
    first_step = {"trade_from": trade_from, "cash": 200_000.0, "initialize": True}
    result = qe.backtest(EVENT, bars, market="cn_a", initial_capital=200_000, resume=first_step)
    # initialize set steps to 0; handle_bar then ran once per bar from trade_from on.
    assert result.state == {"steps": len(bars.dates) - 30}
    without = {"trade_from": trade_from, "cash": 200_000.0, "state": {"steps": 5}}
    result = qe.backtest(EVENT, bars, market="cn_a", initial_capital=200_000, resume=without)
    assert result.state == {"steps": 5 + len(bars.dates) - 30}
