"""Hand-worked fills: costs, fill timing, sells before buys, slippage (STRATEGY_API.md s. 2-3)."""

from __future__ import annotations

import pytest

import quantdesk.engine as qe
from tests.engine.support import fill_rows, frame, refusal_rows, run

MAIN = "600000.SH"


def test_cn_a_buy_then_sell_costs_by_hand() -> None:
    # Bars from 2024-01-02: stamp duty 0.05% on sells (from 2023-08-28), transfer fee 0.001%.
    prices = [(10.0, 10.0), (10.0, 10.5), (11.0, 11.0), (11.0, 11.0)]
    result = run({MAIN: frame(prices)}, {0: [(MAIN, 1000)], 1: [(MAIN, -1000)]})
    buy, sell = result.fills.iloc[0], result.fills.iloc[1]
    # Buy 1,000 at the next open 10.00: value 10,000.00;
    # commission max(5.00, 10,000 x 0.025% = 2.50) = 5.00, of which 2.50 is the minimum top-up;
    # transfer fee 10,000 x 0.001% = 0.10; no stamp duty on buys.
    assert (buy.side, buy.shares, buy.price) == ("buy", 1000, 10.0)
    assert buy.commission == pytest.approx(5.00)
    assert buy.min_commission_topup == pytest.approx(2.50)
    assert buy.transfer_fee == pytest.approx(0.10)
    assert buy.stamp_duty == 0.0
    # Cash after the buy: 100,000 - 10,000 - 5.00 - 0.10 = 89,994.90; equity marks 1,000 x 10.50.
    day1 = result.equity.iloc[1]
    assert day1.cash == pytest.approx(89_994.90)
    assert day1.equity == pytest.approx(89_994.90 + 10_500)
    # Sell 1,000 at 11.00: value 11,000; commission max(5.00, 2.75) = 5.00 (top-up 2.25);
    # stamp duty 11,000 x 0.05% = 5.50; transfer fee 0.11.
    assert (sell.side, sell.shares, sell.price) == ("sell", 1000, 11.0)
    assert sell.commission == pytest.approx(5.00)
    assert sell.min_commission_topup == pytest.approx(2.25)
    assert sell.stamp_duty == pytest.approx(5.50)
    assert sell.transfer_fee == pytest.approx(0.11)
    # 89,994.90 + 11,000 - 5.00 - 5.50 - 0.11 = 100,984.29
    assert result.equity.cash.iloc[-1] == pytest.approx(100_984.29)
    assert result.equity.equity.iloc[-1] == pytest.approx(100_984.29)
    assert result.refusals.empty


def test_commission_above_minimum_has_no_topup() -> None:
    # 100,000 x 0.025% = 25.00 > 5.00: commission 25.00, top-up 0.
    result = run({MAIN: frame([(10.0, 10.0)] * 3)}, {0: [(MAIN, 10_000)]}, initial_capital=200_000)
    buy = result.fills.iloc[0]
    assert buy.commission == pytest.approx(25.0)
    assert buy.min_commission_topup == 0.0


def test_stamp_duty_before_and_after_2023_08_28() -> None:
    # Sell 1,000 at 10.00 (value 10,000) filled on Fri 2023-08-25 (0.1%) and Mon 2023-08-28 (0.05%).
    dates = ["2023-08-22", "2023-08-23", "2023-08-24", "2023-08-25", "2023-08-28"]
    df = frame([(10.0, 10.0)] * 5, dates=dates)
    result = run({MAIN: df}, {0: [(MAIN, 2000)], 2: [(MAIN, -1000)], 3: [(MAIN, -1000)]})
    sells = result.fills[result.fills.side == "sell"]
    assert list(sells.date.dt.strftime("%Y-%m-%d")) == ["2023-08-25", "2023-08-28"]
    assert list(sells.stamp_duty.round(6)) == [10.0, 5.0]  # 10,000 x 0.1%, 10,000 x 0.05%


def test_stamp_duty_on_buys_before_2008_09_19() -> None:
    # Buy 1,000 at 10.00 filled on 2008-09-18: stamp duty was still on both sides at 0.1%
    # (MoF 2008-04-24), so 10.00; filled on 2008-09-19 the buy side pays none.
    dates = ["2008-09-17", "2008-09-18", "2008-09-19"]
    result = run(
        {MAIN: frame([(10.0, 10.0)] * 3, dates=dates)}, {0: [(MAIN, 1000)], 1: [(MAIN, 1000)]}
    )
    assert list(result.fills.stamp_duty.round(6)) == [10.0, 0.0]
    # Transfer fee before 2022-04-29: 0.002% -> 0.20 per 10,000.
    assert list(result.fills.transfer_fee.round(6)) == [0.2, 0.2]


def test_transfer_fee_halved_on_2022_04_29() -> None:
    dates = ["2022-04-27", "2022-04-28", "2022-04-29"]
    result = run(
        {MAIN: frame([(10.0, 10.0)] * 3, dates=dates)}, {0: [(MAIN, 1000)], 1: [(MAIN, 1000)]}
    )
    # 10,000 x 0.002% = 0.20 on 2022-04-28; 10,000 x 0.001% = 0.10 on 2022-04-29.
    assert list(result.fills.transfer_fee.round(6)) == [0.2, 0.1]


def test_costs_override() -> None:
    costs = qe.Costs(
        commission_rate=0.001, min_commission=0.0, stamp_duty_rate=0.0, transfer_fee_rate=0.0
    )
    result = run({MAIN: frame([(10.0, 10.0)] * 3)}, {0: [(MAIN, 1000)]}, costs=costs)
    buy = result.fills.iloc[0]
    # 10,000 x 0.1% = 10.00, no minimum, no fee.
    assert (buy.commission, buy.min_commission_topup, buy.transfer_fee) == (
        pytest.approx(10.0),
        0.0,
        0.0,
    )
    assert result.config["costs"]["commission_rate"] == 0.001


def test_fill_next_open_vs_next_close() -> None:
    prices = [(10.0, 10.2), (10.4, 10.6), (10.8, 10.9)]
    opened = run({MAIN: frame(prices)}, {0: [(MAIN, 100)]})
    closed = run({MAIN: frame(prices)}, {0: [(MAIN, 100)]}, fill="next_close")
    # An order queued after day 0's close fills at day 1's open (10.40) or day 1's close (10.60).
    assert fill_rows(opened) == [("2024-01-03", MAIN, "buy", 100, 10.4)]
    assert fill_rows(closed) == [("2024-01-03", MAIN, "buy", 100, 10.6)]


def test_sells_fill_before_buys_and_free_cash() -> None:
    other = "600036.SH"
    frames = {MAIN: frame([(10.0, 10.0)] * 4), other: frame([(10.0, 10.0)] * 4)}
    # Capital 10,100: buy 1,000 MAIN costs 10,005.10, leaving 94.90.
    # Bar 1 queues the buy of 500 `other` (5,005.05 with costs) BEFORE the sell of MAIN;
    # the sell still fills first (+9,994.90 after 5.00 + 5.00 stamp duty + 0.10), paying the buy.
    result = run(
        frames, {0: [(MAIN, 1000)], 1: [(other, 500), (MAIN, -1000)]}, initial_capital=10_100
    )
    assert fill_rows(result)[1:] == [
        ("2024-01-04", MAIN, "sell", 1000, 10.0),
        ("2024-01-04", other, "buy", 500, 10.0),
    ]
    assert result.refusals.empty
    # 94.90 + 9,989.90 - 5,005.05 = 5,079.75
    assert result.equity.cash.iloc[2] == pytest.approx(94.90 + 10_000 - 5 - 5 - 0.10 - 5_005.05)


def test_slippage_moves_price_against_the_order() -> None:
    prices = [(10.0, 10.0), (10.0, 10.0), (11.0, 11.0)]
    result = run({MAIN: frame(prices)}, {0: [(MAIN, 1000)], 1: [(MAIN, -1000)]}, slippage_bps=10)
    buy, sell = result.fills.iloc[0], result.fills.iloc[1]
    # 10 bps: buy at 10.00 x 1.001 = 10.01 (slippage 0.01 x 1,000 = 10.00);
    # sell at 11.00 x 0.999 = 10.989 (slippage 0.011 x 1,000 = 11.00).
    assert buy.price == pytest.approx(10.01)
    assert buy.slippage == pytest.approx(10.0)
    assert sell.price == pytest.approx(10.989)
    assert sell.slippage == pytest.approx(11.0)


def test_slippage_never_crosses_the_limit_price() -> None:
    # Prev close 10.00 -> limit up 11.00; open 10.99 x 1.01 = 11.0999 is capped at 11.00.
    prices = [(10.0, 10.0), (10.99, 10.99), (10.99, 10.99)]
    result = run({MAIN: frame(prices)}, {0: [(MAIN, 100)]}, slippage_bps=100)
    assert result.fills.price.iloc[0] == pytest.approx(11.0)


def test_us_market_has_no_costs_no_lots_no_limits_and_t_plus_0() -> None:
    seen: list[float] = []

    def hook(bar: int, ctx: object, data: object) -> None:
        if bar == 1:
            seen.append(ctx.positions["AAPL"].sellable)  # type: ignore[attr-defined]

    # Open +50% over the previous close: no price limit in `us`; 7 shares: 1-share lots.
    prices = [(100.0, 100.0), (150.0, 150.0), (150.0, 150.0)]
    result = run({"AAPL": frame(prices)}, {0: [("AAPL", 7)]}, hook=hook)
    buy = result.fills.iloc[0]
    assert (buy.shares, buy.price, buy.commission, buy.transfer_fee) == (7, 150.0, 0.0, 0.0)
    assert seen == [7.0]  # T+0: sellable the day they are bought
    assert result.config["market"] == "us"
    assert refusal_rows(result) == []
