"""Hand-worked refusals and trims: one test per reason and per dated price-limit rule."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.engine.support import fill_rows, frame, refusal_rows, run

MAIN = "600000.SH"
CHINEXT = "300750.SZ"
STAR = "688981.SH"
BSE = "430047.BJ"


def test_suspended_zero_volume_and_missing_bar() -> None:
    other = "600036.SH"
    prices = [(10.0, 10.0)] * 4
    frames = {
        MAIN: frame(prices, volume=[1e6, 0, 1e6, 1e6]),  # zero volume on day 1
        other: frame(
            [prices[0], prices[2], prices[3]], dates=["2024-01-02", "2024-01-04", "2024-01-05"]
        ),
    }
    result = run(frames, {0: [(MAIN, 100), (other, 100)], 1: [(MAIN, 100)]})
    # Day 1 (2024-01-03): MAIN has volume 0, `other` has no bar at all: both refused.
    assert refusal_rows(result) == [
        ("2024-01-03", MAIN, "buy", 100, 0, "suspended"),
        ("2024-01-03", other, "buy", 100, 0, "suspended"),
    ]
    # Day orders: nothing carries over; the order of day 1 fills on day 2.
    assert fill_rows(result) == [("2024-01-04", MAIN, "buy", 100, 10.0)]


def test_suspended_column_overrides_volume() -> None:
    df = frame([(10.0, 10.0)] * 3, suspended=[False, True, False])
    result = run({MAIN: df}, {0: [(MAIN, 100)]})
    assert refusal_rows(result) == [("2024-01-03", MAIN, "buy", 100, 0, "suspended")]


def test_buy_refused_when_opening_at_limit_up() -> None:
    # Prev close 10.00 -> limit up 11.00; day 1 opens at 11.00: the buy is refused.
    prices = [(10.0, 10.0), (11.0, 11.0), (11.5, 11.5)]
    result = run({MAIN: frame(prices)}, {0: [(MAIN, 100)], 1: [(MAIN, 100)]})
    assert refusal_rows(result) == [("2024-01-03", MAIN, "buy", 100, 0, "limit_up")]
    # Day 2: prev close 11.00 -> limit up 12.10; 11.50 fills.
    assert fill_rows(result) == [("2024-01-04", MAIN, "buy", 100, 11.5)]


def test_sell_refused_when_opening_at_limit_down() -> None:
    # Prev close 10.05 -> limit down 9.045 -> 9.05 (half up); day 2 opens at 9.05.
    prices = [(10.0, 10.0), (10.0, 10.05), (9.05, 9.05), (9.05, 9.05)]
    result = run({MAIN: frame(prices)}, {0: [(MAIN, 100)], 1: [(MAIN, -100)]})
    assert refusal_rows(result) == [("2024-01-04", MAIN, "sell", 100, 0, "limit_down")]


def test_sell_cut_to_sellable_is_t_plus_1() -> None:
    seen: list[tuple[float, float]] = []

    def hook(bar: int, ctx: Any, data: Any) -> None:
        if bar == 1:
            position = ctx.positions[MAIN]
            seen.append((position.shares, position.sellable))

    prices = [(10.0, 10.0)] * 4
    # Day 1: 300 shares bought that morning are held but not sellable (T+1).
    # Bar 1 queues a sell of 500: on day 2 they are sellable, and the sell is cut to 300.
    result = run({MAIN: frame(prices)}, {0: [(MAIN, 300)], 1: [(MAIN, -500)]}, hook=hook)
    assert seen == [(300.0, 0.0)]
    assert refusal_rows(result) == [("2024-01-04", MAIN, "sell", 500, 300, "t_plus_1")]
    assert fill_rows(result)[-1] == ("2024-01-04", MAIN, "sell", 300, 10.0)


def test_same_day_buy_cannot_be_sold_the_same_day() -> None:
    prices = [(10.0, 10.0)] * 3
    result = run({MAIN: frame(prices)}, {0: [(MAIN, 100), (MAIN, -100)]})
    # Sells go first: nothing is held yet, so the sell is cut to 0; the buy fills.
    assert refusal_rows(result) == [("2024-01-03", MAIN, "sell", 100, 0, "t_plus_1")]
    assert fill_rows(result) == [("2024-01-03", MAIN, "buy", 100, 10.0)]


def test_t_plus_1_switch_off() -> None:
    seen: list[float] = []

    def hook(bar: int, ctx: Any, data: Any) -> None:
        if bar == 1:
            seen.append(ctx.positions[MAIN].sellable)

    run({MAIN: frame([(10.0, 10.0)] * 3)}, {0: [(MAIN, 300)]}, hook=hook, rules={"t_plus_1": False})
    assert seen == [300.0]


def test_lot_size_trims_and_refusals_main_board() -> None:
    prices = [(10.0, 10.0)] * 3
    result = run({MAIN: frame(prices)}, {0: [(MAIN, 150), (MAIN, 50)]})
    # 150 -> 100 (whole lots of 100); 50 -> 0.
    assert refusal_rows(result) == [
        ("2024-01-03", MAIN, "buy", 150, 100, "lot_size"),
        ("2024-01-03", MAIN, "buy", 50, 0, "lot_size"),
    ]


def test_star_board_200_then_1_share_steps() -> None:
    prices = [(50.0, 50.0)] * 4
    result = run({STAR: frame(prices)}, {0: [(STAR, 150), (STAR, 250)], 1: [(STAR, -50)]})
    # 150 < 200: refused; 250 >= 200 in 1-share steps: fills; selling 50 of 250 leaves a
    # balance that is not sold at once and is below 200: refused.
    assert fill_rows(result) == [("2024-01-03", STAR, "buy", 250, 50.0)]
    assert refusal_rows(result) == [
        ("2024-01-03", STAR, "buy", 150, 0, "lot_size"),
        ("2024-01-04", STAR, "sell", 50, 0, "lot_size"),
    ]


def test_bse_100_then_1_share_steps_and_odd_sell_of_whole_balance() -> None:
    prices = [(10.0, 10.0)] * 4
    result = run({BSE: frame(prices)}, {0: [(BSE, 150), (BSE, 50)], 1: [(BSE, -150)]})
    assert fill_rows(result) == [
        ("2024-01-03", BSE, "buy", 150, 10.0),
        ("2024-01-04", BSE, "sell", 150, 10.0),
    ]
    assert refusal_rows(result) == [("2024-01-03", BSE, "buy", 50, 0, "lot_size")]


def test_sell_of_more_than_held_sells_the_whole_position() -> None:
    # Odd remainders are covered by test_rules.test_sell_quantity_*: a run cannot create one on
    # the main board (buys are whole lots). Here: asking to sell 250 of 200 sells all 200.
    prices = [(10.0, 10.0)] * 4
    result = run({MAIN: frame(prices)}, {0: [(MAIN, 200)], 1: [(MAIN, -250)]})
    assert fill_rows(result)[-1] == ("2024-01-04", MAIN, "sell", 200, 10.0)
    assert refusal_rows(result) == [("2024-01-04", MAIN, "sell", 250, 200, "t_plus_1")]


def test_buy_cut_to_cash_including_costs() -> None:
    # Cash 10,000 buys at most: (10,000 - 5.00) / (1 + 0.001%) = 9,994.90 of value -> 999 shares
    # -> 900 in whole lots; 900 x 10.00 + 5.00 + 0.09 = 9,005.09 <= 10,000.
    result = run({MAIN: frame([(10.0, 10.0)] * 3)}, {0: [(MAIN, 1000)]}, initial_capital=10_000)
    assert refusal_rows(result) == [("2024-01-03", MAIN, "buy", 1000, 900, "cash")]
    assert result.equity.cash.iloc[1] == pytest.approx(10_000 - 9_005.09)


def test_cash_cut_is_sequential_across_buys() -> None:
    other = "600036.SH"
    frames = {MAIN: frame([(10.0, 10.0)] * 3), other: frame([(5.0, 5.0)] * 3)}
    # 10,000 cash: MAIN 600 costs 6,005.06 -> fills; other 1,000 costs 5,005.05 -> cut to what
    # 3,994.94 pays: (3,994.94 - 5) / 1.00001 / 5.00 = 797.97 -> 700 shares; a third order of 100
    # MAIN (1,005.01) then gets the rest, 490.00 - 0.035 ... too little: refused for cash.
    orders = {0: [(MAIN, 600), (other, 1000), (MAIN, 100)]}
    result = run(frames, orders, initial_capital=10_000)
    assert fill_rows(result) == [
        ("2024-01-03", MAIN, "buy", 600, 10.0),
        ("2024-01-03", other, "buy", 700, 5.0),
    ]
    assert refusal_rows(result) == [
        ("2024-01-03", other, "buy", 1000, 700, "cash"),
        ("2024-01-03", MAIN, "buy", 100, 0, "cash"),
    ]
    assert result.equity.cash.min() >= 0


def test_orders_on_the_last_bar_have_no_next_bar() -> None:
    result = run({MAIN: frame([(10.0, 10.0)] * 2)}, {1: [(MAIN, 100)]})
    assert refusal_rows(result) == [("2024-01-03", MAIN, "buy", 100, 0, "no_next_bar")]
    assert result.fills.empty


def _limit_case(symbol: str, dates: list[str], open_: float, **extra: Any) -> list[tuple[Any, ...]]:
    """Buy 200 shares at an open of ``open_`` the day after a close of 100.00."""
    df = frame([(100.0, 100.0), (open_, open_), (open_, open_)], dates=dates, **extra)
    return refusal_rows(run({symbol: df}, {0: [(symbol, 200)]}, initial_capital=1_000_000))


def test_chinext_limit_10_percent_before_2020_08_24() -> None:
    # Prev close 100.00: 110.00 is limit-up under +-10% (2020-08-21)...
    assert _limit_case(CHINEXT, ["2020-08-20", "2020-08-21", "2020-08-24"], 110.0) == [
        ("2020-08-21", CHINEXT, "buy", 200, 0, "limit_up")
    ]


def test_chinext_limit_20_percent_from_2020_08_24() -> None:
    # ...but not under +-20% (from 2020-08-24): limit 120.00, the buy at 110.00 fills.
    assert _limit_case(CHINEXT, ["2020-08-21", "2020-08-24", "2020-08-25"], 110.0) == []
    assert _limit_case(CHINEXT, ["2020-08-21", "2020-08-24", "2020-08-25"], 120.0) == [
        ("2020-08-24", CHINEXT, "buy", 200, 0, "limit_up")
    ]


def test_star_and_bse_limits() -> None:
    days = ["2024-01-02", "2024-01-03", "2024-01-04"]
    assert _limit_case(STAR, days, 119.99) == []
    assert _limit_case(STAR, days, 120.0)[0][-1] == "limit_up"
    assert _limit_case(BSE, days, 129.99) == []
    assert _limit_case(BSE, days, 130.0)[0][-1] == "limit_up"


def test_main_board_st_limit_5_percent_until_2026_07_05() -> None:
    st = {"is_st": [True, True, True]}
    # 2026-07-03 (Friday): ST limit +-5% -> 105.00 is limit-up.
    assert _limit_case(MAIN, ["2026-07-02", "2026-07-03", "2026-07-06"], 105.0, **st) == [
        ("2026-07-03", MAIN, "buy", 200, 0, "limit_up")
    ]


def test_main_board_st_limit_10_percent_from_2026_07_06() -> None:
    st = {"is_st": [True, True, True]}
    assert _limit_case(MAIN, ["2026-07-03", "2026-07-06", "2026-07-07"], 105.0, **st) == []
    assert _limit_case(MAIN, ["2026-07-03", "2026-07-06", "2026-07-07"], 110.0, **st) == [
        ("2026-07-06", MAIN, "buy", 200, 0, "limit_up")
    ]


def test_chinext_st_limit_20_percent() -> None:
    st = {"is_st": [True, True, True]}
    days = ["2024-01-02", "2024-01-03", "2024-01-04"]
    assert _limit_case(CHINEXT, days, 110.0, **st) == []
    assert _limit_case(CHINEXT, days, 120.0, **st)[0][-1] == "limit_up"


def test_no_limit_in_first_5_trading_days_after_listing() -> None:
    # Every day opens at the previous close + 10% (11.00 after 10.00): limit-up on the main board.
    prices = [(10.0, 10.0)] + [(11.0, 10.0)] * 7
    df = frame(prices)
    orders = {i: [(MAIN, 100)] for i in range(7)}
    listed = {MAIN: df.index[0]}
    free = run({MAIN: df}, orders, listing_dates=listed)
    # Listing day + 4 more = the first 5 trading days (bars 0-4) have no limit: the orders from
    # bars 0-3 fill on bars 1-4; from bar 5 on the limit applies again.
    assert [r[0] for r in fill_rows(free)] == [d.date().isoformat() for d in df.index[1:5]]
    assert {r[-1] for r in refusal_rows(free)} == {"limit_up"}
    assert len(refusal_rows(free)) == 3
    limited = run({MAIN: df}, orders)  # no listing date: limits from the start
    assert limited.fills.empty


def test_price_limits_switch_off() -> None:
    prices = [(10.0, 10.0), (11.0, 11.0), (11.0, 11.0)]
    result = run({MAIN: frame(prices)}, {0: [(MAIN, 100)]}, rules={"price_limits": False})
    assert fill_rows(result) == [("2024-01-03", MAIN, "buy", 100, 11.0)]


def test_lot_size_override() -> None:
    result = run({MAIN: frame([(10.0, 10.0)] * 3)}, {0: [(MAIN, 150)]}, rules={"lot_size": 1})
    assert fill_rows(result) == [("2024-01-03", MAIN, "buy", 150, 10.0)]
    assert np.isclose(result.fills.price.iloc[0], 10.0)
