"""The rulebook: boards, dated values, limit-price rounding, lots (STRATEGY_API.md section 3)."""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import quantdesk.engine as qe
from quantdesk.engine.broker import lot_floor, sell_quantity
from quantdesk.engine.rules import Rule, rule_value

CN = qe.Market.CN_A


@pytest.mark.parametrize(
    ("symbol", "board"),
    [
        ("600519.SH", qe.Board.MAIN),
        ("601318.SH", qe.Board.MAIN),
        ("603288.SH", qe.Board.MAIN),
        ("605499.SH", qe.Board.MAIN),
        ("688981.SH", qe.Board.STAR),
        ("000001.SZ", qe.Board.MAIN),
        ("001979.SZ", qe.Board.MAIN),
        ("002594.SZ", qe.Board.MAIN),
        ("003816.SZ", qe.Board.MAIN),
        ("300750.SZ", qe.Board.CHINEXT),
        ("301269.SZ", qe.Board.CHINEXT),
        ("430047.BJ", qe.Board.BSE),
        ("AAPL", qe.Board.US),
    ],
)
def test_board_of(symbol: str, board: qe.Board) -> None:
    assert qe.board_of(symbol) == board


def test_unknown_suffix_is_an_error() -> None:
    with pytest.raises(qe.ConfigError, match="suffix"):
        qe.board_of("0700.HK")


def test_rulebook_rows_all_cite_a_source_and_version_is_set() -> None:
    assert qe.RULEBOOK_VERSION
    assert all(row.source for row in qe.RULEBOOK)
    assert {row.market for row in qe.RULEBOOK} == {qe.Market.CN_A, qe.Market.US}


@pytest.mark.parametrize(
    ("rule", "board", "day", "value"),
    [
        (Rule.PRICE_LIMIT, qe.Board.MAIN, date(2024, 1, 2), 0.10),
        (Rule.PRICE_LIMIT, qe.Board.CHINEXT, date(2020, 8, 21), 0.10),
        (Rule.PRICE_LIMIT, qe.Board.CHINEXT, date(2020, 8, 24), 0.20),
        (Rule.PRICE_LIMIT, qe.Board.STAR, date(2024, 1, 2), 0.20),
        (Rule.PRICE_LIMIT, qe.Board.BSE, date(2024, 1, 2), 0.30),
        (Rule.PRICE_LIMIT_ST, qe.Board.MAIN, date(2026, 7, 5), 0.05),
        (Rule.PRICE_LIMIT_ST, qe.Board.MAIN, date(2026, 7, 6), 0.10),
        (Rule.PRICE_LIMIT_ST, qe.Board.CHINEXT, date(2024, 1, 2), 0.20),
        (Rule.PRICE_LIMIT_ST, qe.Board.STAR, date(2024, 1, 2), 0.20),
        (Rule.STAMP_DUTY_SELL, qe.Board.MAIN, date(2023, 8, 27), 0.001),
        (Rule.STAMP_DUTY_SELL, qe.Board.MAIN, date(2023, 8, 28), 0.0005),
        (Rule.STAMP_DUTY_BUY, qe.Board.MAIN, date(2008, 9, 18), 0.001),
        (Rule.STAMP_DUTY_BUY, qe.Board.MAIN, date(2008, 9, 19), 0.0),
        (Rule.STAMP_DUTY_BUY, qe.Board.MAIN, date(2007, 6, 1), 0.003),
        (Rule.STAMP_DUTY_SELL, qe.Board.MAIN, date(2006, 1, 4), 0.001),
        (Rule.STAMP_DUTY_SELL, qe.Board.MAIN, date(1995, 1, 3), 0.002),  # before the first row
        (Rule.TRANSFER_FEE, qe.Board.STAR, date(2022, 4, 28), 0.00002),
        (Rule.TRANSFER_FEE, qe.Board.STAR, date(2022, 4, 29), 0.00001),
        (Rule.COMMISSION_RATE, qe.Board.BSE, date(2024, 1, 2), 0.00025),
        (Rule.MIN_COMMISSION, qe.Board.MAIN, date(2024, 1, 2), 5.0),
        (Rule.MIN_LOT, qe.Board.STAR, date(2024, 1, 2), 200),
        (Rule.LOT_STEP, qe.Board.STAR, date(2024, 1, 2), 1),
        (Rule.MIN_LOT, qe.Board.BSE, date(2024, 1, 2), 100),
        (Rule.LOT_STEP, qe.Board.BSE, date(2024, 1, 2), 1),
        (Rule.LOT_STEP, qe.Board.CHINEXT, date(2024, 1, 2), 100),
        (Rule.NEW_LISTING_FREE_DAYS, qe.Board.MAIN, date(2024, 1, 2), 5),
        (Rule.T_PLUS_1, qe.Board.MAIN, date(2024, 1, 2), 1),
    ],
)
def test_dated_rule_values(rule: Rule, board: qe.Board, day: date, value: float) -> None:
    assert rule_value(rule, CN, board, day) == pytest.approx(value)


def test_us_rules_are_free_and_unlimited() -> None:
    day = date(2024, 1, 2)
    for rule in (Rule.COMMISSION_RATE, Rule.STAMP_DUTY_SELL, Rule.TRANSFER_FEE, Rule.PRICE_LIMIT):
        assert rule_value(rule, qe.Market.US, qe.Board.US, day) == 0.0
    assert rule_value(Rule.MIN_LOT, qe.Market.US, qe.Board.US, day) == 1
    assert rule_value(Rule.T_PLUS_1, qe.Market.US, qe.Board.US, day) == 0


def _limits(prev: float, pct: float) -> tuple[float, float]:
    up, down = qe.limit_prices(np.array([prev]), np.array([pct]))
    return float(up[0]), float(down[0])


def test_limit_price_rounds_half_up() -> None:
    # 10.05 x 1.1 = 11.055 -> 11.06 ; 10.05 x 0.9 = 9.045 -> 9.05 (banker's rounding gives 9.04).
    assert _limits(10.05, 0.10) == (11.06, 9.05)
    # 9.99 x 1.05 = 10.4895 -> 10.49 ; 9.99 x 0.95 = 9.4905 -> 9.49
    assert _limits(9.99, 0.05) == (10.49, 9.49)
    # 1.15 x 1.3 = 1.495 -> 1.50 (binary float says 1.4949999...) ; 1.15 x 0.7 = 0.805 -> 0.81
    assert _limits(1.15, 0.30) == (1.5, 0.81)


def test_no_limit_without_previous_close_or_percentage() -> None:
    assert _limits(float("nan"), 0.1) == (np.inf, -np.inf)
    assert _limits(10.0, 0.0) == (np.inf, -np.inf)


@given(
    cents=st.integers(min_value=1, max_value=500_000),
    pct=st.sampled_from([0.05, 0.10, 0.20, 0.30]),
)
def test_limit_price_matches_decimal_half_up(cents: int, pct: float) -> None:
    prev = Decimal(cents) / 100
    tick = Decimal("0.01")
    up = (prev * (1 + Decimal(str(pct)))).quantize(tick, rounding=ROUND_HALF_UP)
    down = (prev * (1 - Decimal(str(pct)))).quantize(tick, rounding=ROUND_HALF_UP)
    assert _limits(cents / 100, pct) == (float(up), float(down))


def test_lot_floor_main_star_bse() -> None:
    qty = np.array([50.0, 150.0, 199.0, 200.0, 201.0, 1_234.0])
    main = lot_floor(qty, np.full(6, 100.0), np.full(6, 100.0))
    star = lot_floor(qty, np.full(6, 200.0), np.full(6, 1.0))
    bse = lot_floor(qty, np.full(6, 100.0), np.full(6, 1.0))
    assert list(main) == [0, 100, 100, 200, 200, 1200]
    assert list(star) == [0, 0, 0, 200, 201, 1234]  # at least 200, then 1-share steps
    assert list(bse) == [0, 150, 199, 200, 201, 1234]  # at least 100, then 1-share steps


def test_sell_quantity_odd_remainder_goes_in_one_order() -> None:
    # Main board, 250 sellable (an odd remainder of 50).
    req = np.array([50.0, 120.0, 150.0, 200.0, 250.0, 300.0])
    n = len(req)
    cut, final = sell_quantity(req, np.full(n, 250.0), np.full(n, 100.0), np.full(n, 100.0))
    assert list(cut) == [50, 120, 150, 200, 250, 250]
    # 50: the odd remainder alone; 120 -> 100 (or 50 + 0 lots); 150 = 50 + 100; 250/300: all.
    assert list(final) == [50, 100, 150, 200, 250, 250]


def test_sell_quantity_star_balance_below_200_only_all_at_once() -> None:
    req = np.array([50.0, 199.0, 210.0, 250.0])
    n = len(req)
    _, final = sell_quantity(req, np.full(n, 250.0), np.full(n, 200.0), np.full(n, 1.0))
    assert list(final) == [0, 0, 210, 250]
    _, small = sell_quantity(
        np.array([150.0]), np.array([150.0]), np.array([200.0]), np.array([1.0])
    )
    assert list(small) == [150]  # a balance below 200 is sold whole


def test_rules_and_costs_reject_bad_overrides() -> None:
    with pytest.raises(qe.ConfigError, match="lot_size"):
        qe.Rules(lot_size=0)
    with pytest.raises(qe.ConfigError, match="unknown rules: bogus"):
        qe.Rules.coerce({"bogus": 1})
    with pytest.raises(qe.ConfigError, match="commission_rate"):
        qe.Costs(commission_rate=-0.1)
    with pytest.raises(qe.ConfigError, match="unknown costs: fee"):
        qe.Costs.coerce({"fee": 1})
