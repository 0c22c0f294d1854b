"""The parent's verification: honest results pass unchanged, every kind of lie is caught."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

import quantdesk.engine as qe
from quantdesk.engine.errors import ConfigError
from quantdesk.sandbox.verify import IntegrityError, RunSpec, verify_result
from tests.sandbox import SMA, VECTORIZED, price_frame

STOCK = "600519.SH"
# (open, close) per day; prev close 10.00 -> limit up 11.00, limit down 9.00.
DAYS = [
    (10.00, 10.00),  # 0 2024-01-02
    (10.00, 10.00),  # 1 2024-01-03  buy fills here (T+1: not sellable today)
    (10.10, 10.00),  # 2 2024-01-04
    (11.00, 11.00),  # 3 2024-01-05  opens at limit up (10.00 * 1.1)
    (10.50, 10.00),  # 4 2024-01-08
    (9.00, 9.50),  # 5 2024-01-09  opens at limit down (10.00 * 0.9)
    (9.50, 9.60),  # 6 2024-01-10  suspended (volume 0)
    (9.60, 9.70),  # 7 2024-01-11  sell fills here
    (9.70, 9.80),  # 8 2024-01-12
    (9.80, 9.90),  # 9 2024-01-15
]


def cn_bars() -> qe.Bars:
    opens = np.array([d[0] for d in DAYS])
    closes = np.array([d[1] for d in DAYS])
    volume = np.full(len(DAYS), 1e6)
    volume[6] = 0.0
    frame = pd.DataFrame(
        {
            "open": opens,
            "high": np.maximum(opens, closes) + 0.05,
            "low": np.minimum(opens, closes) - 0.05,
            "close": closes,
            "volume": volume,
        },
        index=pd.bdate_range("2024-01-02", periods=len(DAYS)),
    )
    return qe.Bars.from_frames({STOCK: frame})


def scripted(orders: dict[int, list[tuple[str, float]]]) -> dict[str, Callable[..., None]]:
    """An event strategy placing ``ctx.order(symbol, shares)`` after the given bar numbers."""
    bar = {"t": 0}

    def handle_bar(ctx: Any, data: Any) -> None:
        for symbol, shares in orders.get(bar["t"], []):
            ctx.order(symbol, shares)
        bar["t"] += 1

    return {"handle_bar": handle_bar}


CN_CONFIG = {"market": "cn_a", "initial_capital": 100_000, "slippage_bps": 10}


def cn_result() -> dict[str, Any]:
    """Buy 300 on day 1 (filled), try a buy on the limit-up day 3, a sell on the limit-down
    day 5 and on the suspended day 6 (all refused), sell 300 on day 7 (filled)."""
    bars = cn_bars()
    strategy = scripted({0: [(STOCK, 300)], 2: [(STOCK, 100)], 4: [(STOCK, -100)],
                         5: [(STOCK, -100)], 6: [(STOCK, -300)]})  # fmt: skip
    result = qe.backtest(strategy, bars, **CN_CONFIG).to_dict()  # type: ignore[arg-type]
    assert [(f["date"], f["side"], f["shares"]) for f in result["fills"]] == [
        ("2024-01-03", "buy", 300),
        ("2024-01-11", "sell", 300),
    ]
    assert [r["reason"] for r in result["refusals"]] == ["limit_up", "limit_down", "suspended"]
    return result


def check(result: dict[str, Any], bars: qe.Bars | None = None, **config: Any) -> dict[str, Any]:
    bars = bars if bars is not None else cn_bars()
    return verify_result(result, bars, RunSpec.from_config({**CN_CONFIG, **config}, bars))


def test_the_cn_a_scenario_is_what_the_lies_below_start_from() -> None:
    honest = cn_result()
    verified = check(honest)
    assert verified == honest  # nothing changed, metrics and round trips recomputed equal


@pytest.mark.parametrize(
    ("code", "config"),
    [
        (SMA, {"market": "us", "slippage_bps": 25, "initial_capital": 10_000}),
        (SMA, {"market": "us", "fill": "next_close", "costs": {"commission_rate": 0.002}}),
        (VECTORIZED, {"market": "us", "benchmark": "MSFT"}),
        (SMA, {"market": "cn_a", "rules": {"t_plus_1": False}}),
        (SMA, {"market": "cn_a", "risk_free_rate": 0.02, "params": {"fast": 2, "slow": 8}}),
    ],
)
def test_honest_results_pass_and_come_back_equal(code: str, config: dict[str, Any]) -> None:
    symbols = ("600519.SH", "000001.SZ") if config["market"] == "cn_a" else ("AAPL", "MSFT")
    frames = {s: price_frame(150, seed=i) for i, s in enumerate(symbols)}
    frames[symbols[1]].iloc[40:45, frames[symbols[1]].columns.get_loc("volume")] = 0.0
    bars = qe.Bars.from_frames(frames)
    honest = qe.backtest(code, bars, **config).to_dict()
    assert len(honest["fills"]) > 5
    spec = RunSpec.from_config(config, bars)
    assert verify_result(copy.deepcopy(honest), bars, spec) == honest


def _fill(result: dict[str, Any], i: int) -> dict[str, Any]:
    fill: dict[str, Any] = result["fills"][i]
    return fill


def _inject(result: dict[str, Any], at: int, **changes: Any) -> None:
    """Insert a copy of fill 0 with ``changes`` at position ``at`` of the fill list."""
    forged = {**result["fills"][0], **changes}
    result["fills"].insert(at, forged)


LIES: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "price below the bar's low": (
        lambda r: _fill(r, 0).update(price=9.0),
        "price outside the bar's range",
    ),
    "price inside the range but not the open": (
        lambda r: _fill(r, 0).update(price=9.98),
        "the fill price should be 10.01",
    ),
    "a buy at limit-up": (
        lambda r: _inject(r, 1, date="2024-01-05", price=11.0),
        "a buy at the limit-up price 11",
    ),
    "a sell at limit-down": (
        lambda r: _inject(r, 1, date="2024-01-09", side="sell", shares=100, price=9.0),
        "a sell at the limit-down price 9",
    ),
    "a fill on a suspended day": (
        lambda r: _inject(r, 1, date="2024-01-10", side="sell", shares=100, price=9.5),
        "no bar or is suspended",
    ),
    "selling without holding": (
        lambda r: _inject(r, 0, side="sell", shares=100),
        "only 0 shares were sellable",
    ),
    "selling more than held": (
        lambda r: _fill(r, 1).update(shares=400),
        "only 300 shares were sellable",
    ),
    "an odd lot bought": (
        lambda r: _fill(r, 0).update(shares=350),
        "not a whole lot of this board",
    ),
    "an odd lot sold while holding whole lots": (
        lambda r: _fill(r, 1).update(shares=150),
        "not a valid lot quantity to sell",
    ),
    "selling shares bought the same day (T+1)": (
        lambda r: _inject(r, 1, side="sell", shares=100),
        "a sell after a buy on the same day",
    ),
    "fills out of date order": (
        lambda r: r["fills"].append(dict(r["fills"][0])),
        "fills are not in date order",
    ),
    "a fill on the first bar": (
        lambda r: _fill(r, 0).update(date="2024-01-02", price=10.01),
        "before any order could be placed",
    ),
    "a fill on a date without bars": (
        lambda r: _fill(r, 0).update(date="2024-01-06"),
        "date '2024-01-06' is not a bar date",
    ),
    "an unknown symbol": (
        lambda r: _fill(r, 0).update(symbol="000002.SZ"),
        "symbol '000002.SZ' is not in the bars",
    ),
    "a side that is neither": (
        lambda r: _fill(r, 0).update(side="short"),
        "side 'short' is not buy or sell",
    ),
    "fractional shares": (
        lambda r: _fill(r, 0).update(shares=300.5),
        "shares must be a positive integer",
    ),
    "shares as text": (
        lambda r: _fill(r, 0).update(shares="300"),
        "shares is not a finite number",
    ),
    "a price of true": (
        lambda r: _fill(r, 0).update(price=True),
        "price is not a finite number",
    ),
    "a waived commission": (
        lambda r: _fill(r, 0).update(commission=0.0),
        "commission is 0, the rules give 5",
    ),
    "no stamp duty on a sell": (
        lambda r: _fill(r, 1).update(stamp_duty=0.0),
        "stamp_duty is 0, the rules give",
    ),
    "no slippage cost": (
        lambda r: _fill(r, 0).update(slippage=0.0),
        "slippage is 0, the rules give 3",
    ),
    "cash granted": (
        lambda r: [row.update(cash=row["cash"] + 500) for row in r["equity"][5:]],
        "cash on 2024-01-09 is",
    ),
    "a fill hidden": (
        lambda r: r["fills"].pop(1),
        "cash on 2024-01-11 is",
    ),
    "final value inflated": (
        lambda r: r["equity"][-1].update(equity=r["equity"][-1]["equity"] * 1.5),
        "final value is",
    ),
    "equity inflated mid-run": (
        lambda r: r["equity"][3].update(equity=r["equity"][3]["equity"] + 1),
        "equity on 2024-01-05 is",
    ),
    "equity not a number": (
        lambda r: r["equity"][2].update(equity=float("nan")),
        "equity: a value is not finite",
    ),
    "a position conjured": (
        lambda r: r["positions"].append({"date": "2024-01-15", "symbol": STOCK, "shares": 100}),
        "the final positions are not what the fills give",
    ),
    "a bar missing from the equity": (
        lambda r: r["equity"].pop(4),
        "equity does not have one row per bar",
    ),
    "equity dates shifted": (
        lambda r: r["equity"][0].update(date="2024-01-01"),
        "equity dates are not the bars' dates",
    ),
    "another capital": (
        lambda r: r["config"].update(initial_capital=1e9),
        "config.initial_capital is not what was asked for",
    ),
    "another market": (
        lambda r: r["config"].update(market="us"),
        "config.market is not what was asked for",
    ),
    "another rulebook": (
        lambda r: r.update(rulebook_version="1999.01.01-1"),
        "wrong rulebook version",
    ),
    "logs of another shape": (
        lambda r: r["logs"].append({"date": 1}),
        "logs: a line without a date and a message",
    ),
    "records with a text value": (
        lambda r: r["records"].update(dates=["2024-01-02"], series={"x": ["1"]}),
        "holds a value that is not a number",
    ),
    "records of the wrong length": (
        lambda r: r["records"].update(dates=["2024-01-02"], series={"x": [1.0, 2.0]}),
        "does not have one value per date",
    ),
    "an unknown refusal reason": (
        lambda r: r["refusals"][0].update(reason="because"),
        "unknown reason 'because'",
    ),
    "a refusal of another symbol": (
        lambda r: r["refusals"][0].update(symbol="000002.SZ"),
        "refusals: a row without a bar date, a symbol of the bars and a side",
    ),
    "a refusal with a text quantity": (
        lambda r: r["refusals"][0].update(requested="lots"),
        "refusals: requested is not a finite number",
    ),
    "a state that is a list": (
        lambda r: r.update(state=[]),
        "state is not an object",
    ),
    "fills that are not a list": (
        lambda r: r.update(fills={"0": {}}),
        "fills is not a list",
    ),
}


@pytest.mark.parametrize("lie", list(LIES), ids=list(LIES))
def test_a_lie_is_caught(lie: str) -> None:
    tamper, reason = LIES[lie]
    result = cn_result()
    check(copy.deepcopy(result))  # the honest version passes
    tamper(result)
    with pytest.raises(IntegrityError) as caught:
        check(result)
    assert reason in str(caught.value)


def test_final_positions_are_rebuilt_from_the_fills_and_the_parents_closes() -> None:
    bars = qe.Bars.from_frames({"AAPL": price_frame(30), "MSFT": price_frame(30, 1)})
    strategy = scripted({3: [("AAPL", 10), ("MSFT", 7)]})
    honest = qe.backtest(strategy, bars, market="us").to_dict()  # type: ignore[arg-type]
    assert len(honest["positions"]) == 2
    spec = RunSpec.from_config({"market": "us"}, bars)
    lied = copy.deepcopy(honest)
    lied["positions"][0].update(close=1e6, market_value=1e7)
    assert verify_result(lied, bars, spec)["positions"] == honest["positions"]
    lied["positions"].append(dict(lied["positions"][0]))
    with pytest.raises(IntegrityError, match="positions: a symbol twice"):
        verify_result(lied, bars, spec)


def test_a_buy_the_cash_cannot_pay_for_is_caught() -> None:
    bars = qe.Bars.from_frames({"AAPL": price_frame(30)})
    strategy = scripted({3: [("AAPL", 10)]})
    honest = qe.backtest(strategy, bars, market="us", initial_capital=10_000).to_dict()  # type: ignore[arg-type]
    spec = RunSpec.from_config({"market": "us", "initial_capital": 10_000}, bars)
    assert verify_result(copy.deepcopy(honest), bars, spec) == honest
    honest["fills"][0]["shares"] = 1_000
    with pytest.raises(IntegrityError, match="but the cash does not cover it"):
        verify_result(honest, bars, spec)


def test_params_the_child_reports_must_be_the_ones_asked_for() -> None:
    bars = qe.Bars.from_frames({"AAPL": price_frame(60)})
    honest = qe.backtest(SMA, bars, market="us", params={"fast": 3}).to_dict()
    spec = RunSpec.from_config({"market": "us", "params": {"fast": 3}}, bars)
    verify_result(copy.deepcopy(honest), bars, spec)
    honest["config"]["params"]["fast"] = 4
    with pytest.raises(IntegrityError, match=r"params\.fast is not what was asked for"):
        verify_result(honest, bars, spec)


def test_a_result_that_is_not_an_object_is_caught() -> None:
    with pytest.raises(IntegrityError, match="the result is not an object"):
        check([])  # type: ignore[arg-type]


def test_derived_numbers_are_recomputed_not_believed() -> None:
    result = cn_result()
    result["metrics"]["sharpe_ratio"] = 99.0
    result["equity"][3]["drawdown"] = 0.99
    result["round_trips"] = []
    verified = check(result)
    honest = cn_result()
    assert verified["metrics"] == honest["metrics"]
    assert verified["equity"] == honest["equity"]
    assert verified["round_trips"] == honest["round_trips"]
    assert len(verified["round_trips"]) == 1


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"colour": "red"}, "unknown config keys: colour"),
        ({"market": "mars"}, "unknown market 'mars'"),
        ({"initial_capital": -5}, "initial_capital must be a positive number"),
        ({"initial_capital": float("inf")}, "initial_capital must be a finite number"),
        ({"initial_capital": True}, "initial_capital must be a finite number"),
        ({"slippage_bps": 10_000}, "slippage_bps must be in [0, 10000)"),
        ({"fill": "next_week"}, "fill must be 'next_open' or 'next_close'"),
        ({"benchmark": "000300.SH"}, "benchmark '000300.SH' is not a symbol of the bars"),
        ({"params": {"x": {1, 2}}}, "params must be JSON"),
        ({"params": {"x": float("nan")}}, "params must be JSON"),
        ({"costs": {"tip": 1}}, "unknown costs: tip"),
        ({"rules": {"lot_size": 0}}, "rules.lot_size must be a positive integer"),
    ],
)
def test_an_invalid_config_is_refused_with_a_reason(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        RunSpec.from_config(config, cn_bars())
    assert message in str(caught.value)


def test_the_market_is_inferred_from_the_symbols() -> None:
    assert RunSpec.from_config({}, cn_bars()).market == qe.Market.CN_A
    us = qe.Bars.from_frames({"AAPL": price_frame(5)})
    spec = RunSpec.from_config({}, us)
    assert spec.market == qe.Market.US
    assert spec.engine_kwargs() == {
        "market": "us",
        "initial_capital": 1_000_000.0,
        "costs": {},
        "fill": "next_open",
        "slippage_bps": 0.0,
        "params": {},
        "benchmark": None,
        "rules": {},
        "risk_free_rate": 0.0,
    }
