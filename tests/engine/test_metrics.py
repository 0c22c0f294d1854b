"""Metrics of STRATEGY_API.md section 4: hand-worked values and agreement with empyrical."""

from __future__ import annotations

import datetime as dt
import json
import math

import empyrical as ep
import numpy as np
import pandas as pd
import pytest

from quantdesk.engine import metrics as m

SQRT252 = math.sqrt(252)

# The hand-worked curve: returns r = [+10%, -10%, +10%, +10%].
EQUITY = pd.Series(
    [100.0, 110.0, 99.0, 108.9, 119.79],
    index=pd.date_range("2024-01-01", periods=5, freq="B"),
)
# Its benchmark: returns b = [+5%, -10%, +5%, +5%].
BENCHMARK = pd.Series([100.0, 105.0, 94.5, 99.225, 104.18625], index=EQUITY.index)

ALL_KEYS = {
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
    "round_trips_count",
    "win_rate",
    "profit_loss_ratio",
    "benchmark_return",
    "alpha",
    "beta",
    "information_ratio",
    "tracking_error",
    "turnover",
}


def fill(date: object, symbol: str, side: str, shares: float, price: float, **costs: float) -> dict:
    row = {"date": date, "symbol": symbol, "side": side, "shares": shares, "price": price}
    row |= {"commission": 0.0, "stamp_duty": 0.0, "transfer_fee": 0.0, "slippage": 0.0}
    return row | costs


def hand_fills() -> pd.DataFrame:
    """Two symbols, two buy lots of A closed by two partial sells, B partly closed; shuffled rows
    and mixed date types (datetime.date and Timestamp) on purpose."""
    rows = [
        fill(dt.date(2024, 1, 10), "A", "sell", 150, 10.5, commission=3.0, transfer_fee=0.15),
        # slippage 0.5 is informational: already in the price, must not be subtracted.
        fill(dt.date(2024, 1, 2), "A", "buy", 100, 10.0, commission=5.0, slippage=0.5),
        fill(pd.Timestamp("2024-01-04"), "B", "buy", 50, 20.0, commission=5.0),
        fill(dt.date(2024, 1, 3), "A", "buy", 200, 11.0, commission=6.0),
        fill(dt.date(2024, 1, 5), "A", "sell", 150, 12.0, commission=3.0, stamp_duty=1.5),
        fill(dt.date(2024, 1, 8), "B", "sell", 20, 19.0, commission=5.0),
    ]
    return pd.DataFrame(rows)


# --- hand-worked values ------------------------------------------------------------------------


def test_daily_returns_and_totals() -> None:
    np.testing.assert_allclose(m.daily_returns(EQUITY), [0.1, -0.1, 0.1, 0.1], rtol=1e-12)
    assert m.final_value(EQUITY) == 119.79
    assert m.total_return(EQUITY) == pytest.approx(0.1979, rel=1e-12)  # 119.79 / 100 - 1


def test_annual_return_hand_worked() -> None:
    # 100 -> 121 over n = 504 daily returns (two years of 252): (1.21)^(252/504) - 1 = 0.1.
    equity = 100 * 1.21 ** (np.arange(505) / 504)
    assert m.annual_return(equity) == pytest.approx(0.1, rel=1e-12)
    # The 4-return curve: 1.1979^(252/4) - 1 = 1.1979^63 - 1.
    assert m.annual_return(EQUITY) == pytest.approx(1.1979**63 - 1, rel=1e-12)


def test_volatility_sharpe_sortino_hand_worked() -> None:
    r = m.daily_returns(EQUITY)
    # mean 0.05; deviations .05 -.15 .05 .05; squares sum .03; /3 = .01; std = 0.1
    assert m.annual_volatility(r) == pytest.approx(0.1 * SQRT252, rel=1e-12)  # 1.5874508
    # Sharpe: 0.05 / 0.1 * sqrt(252) = 7.9372539
    assert m.sharpe_ratio(r) == pytest.approx(0.5 * SQRT252, rel=1e-12)
    # Sortino: downside sqrt(mean([0, .01, 0, 0])) = sqrt(.0025) = .05; .05/.05*sqrt(252) = 15.87
    assert m.sortino_ratio(r) == pytest.approx(SQRT252, rel=1e-12)


def test_risk_free_rate_is_compounded_daily() -> None:
    # rf_d = 1.05^(1/252) - 1, which compounds back to exactly 5% a year.
    rf_d = m.daily_risk_free(0.05)
    assert (1 + rf_d) ** 252 == pytest.approx(1.05, rel=1e-12)
    # Constant daily return 2*rf_d with one dip: Sharpe uses r - rf_d.
    r = np.array([0.01, -0.01, 0.02, 0.0])
    x = r - rf_d
    assert m.sharpe_ratio(r, 0.05) == pytest.approx(x.mean() / x.std(ddof=1) * SQRT252, rel=1e-12)


def test_max_drawdown_and_duration_hand_worked() -> None:
    # Peak 110 on day 1, trough 99 on day 2: 1 - 99/110 = 0.1.
    assert m.max_drawdown(EQUITY) == pytest.approx(0.1, rel=1e-12)
    # Days 2 (99) and 3 (108.9) are below 110; day 4 (119.79) is a new high: 2 days.
    assert m.max_drawdown_duration(EQUITY) == 2
    # Two drawdowns, 1 and 3 days long, the second still open at the end: longest is 3.
    assert m.max_drawdown_duration([10, 9, 10, 12, 11, 11.5, 11.9]) == 3
    # 100 -> 50 -> 200 -> 150: drawdowns 50% then 25%: max 0.5.
    assert m.max_drawdown([100, 50, 200, 150]) == pytest.approx(0.5)


def test_calmar_hand_worked() -> None:
    # annual_return / max_drawdown = (1.1979^63 - 1) / 0.1
    assert m.calmar_ratio(EQUITY) == pytest.approx((1.1979**63 - 1) / 0.1, rel=1e-12)


def test_benchmark_metrics_hand_worked() -> None:
    r, b = m.daily_returns(EQUITY), m.daily_returns(BENCHMARK)
    # 104.18625 / 100 - 1
    assert m.benchmark_return(BENCHMARK) == pytest.approx(0.0418625, rel=1e-12)
    # r - mean(r) = [.05, -.15, .05, .05] = 4/3 * (b - mean(b)) = 4/3 * [.0375, -.1125, ...]
    # so beta = cov(r, b) / var(b) = 4/3.
    assert m.beta(r, b) == pytest.approx(4 / 3, rel=1e-12)
    # alpha: mean(r - 4/3 b) = 0.05 - 4/3 * 0.0125 = 1/30; (1 + 1/30)^252 - 1 = 3876.85
    assert m.alpha(r, b) == pytest.approx((1 + 1 / 30) ** 252 - 1, rel=1e-9)
    # r - b = [.05, 0, .05, .05]: mean .0375, std(ddof=1) = sqrt(.001875/3) = .025
    assert m.tracking_error(r, b) == pytest.approx(0.025 * SQRT252, rel=1e-12)  # 0.39686
    assert m.information_ratio(r, b) == pytest.approx(1.5 * SQRT252, rel=1e-12)  # 23.8118


def test_closed_round_trips_fifo_hand_worked() -> None:
    trips = m.closed_round_trips(hand_fills())
    assert list(trips.columns) == list(m.ROUND_TRIP_COLUMNS)
    # Costs per share: A buy 1: 5/100 = .05; A buy 2: 6/200 = .03;
    # A sell 1/05: (3 + 1.5)/150 = .03; A sell 1/10: (3 + .15)/150 = .021;
    # B buy: 5/50 = .1; B sell: 5/20 = .25.
    # 1/05 sell 150 A @ 12 -> 100 from lot 1 (@10), then 50 from lot 2 (@11):
    #   (12-10)*100 - .05*100 - .03*100 = 200 - 5 - 3 = 192; 192 / 1000 = .192; 3 days
    #   (12-11)*50 - .03*50 - .03*50 = 50 - 1.5 - 1.5 = 47; 47 / 550; 2 days
    # 1/08 sell 20 B @ 19: (19-20)*20 - .1*20 - .25*20 = -20 - 2 - 5 = -27; -27/400; 4 days
    # 1/10 sell 150 A @ 10.5 -> the 150 left of lot 2:
    #   (10.5-11)*150 - .03*150 - .021*150 = -75 - 4.5 - 3.15 = -82.65; -82.65/1650; 7 days
    # 30 B stay open: no row.
    assert trips["symbol"].tolist() == ["A", "A", "B", "A"]
    assert trips["shares"].tolist() == [100, 50, 20, 150]
    assert trips["entry_price"].tolist() == [10.0, 11.0, 20.0, 11.0]
    assert trips["exit_price"].tolist() == [12.0, 12.0, 19.0, 10.5]
    np.testing.assert_allclose(trips["pnl"], [192.0, 47.0, -27.0, -82.65], rtol=1e-12)
    np.testing.assert_allclose(
        trips["return_pct"], [0.192, 47 / 550, -27 / 400, -82.65 / 1650], rtol=1e-12
    )
    assert trips["holding_days"].tolist() == [3, 2, 4, 7]
    assert [pd.Timestamp(d).date() for d in trips["entry_date"]] == [
        dt.date(2024, 1, 2),
        dt.date(2024, 1, 3),
        dt.date(2024, 1, 4),
        dt.date(2024, 1, 3),
    ]
    assert [pd.Timestamp(d).date() for d in trips["exit_date"]] == [
        dt.date(2024, 1, 5),
        dt.date(2024, 1, 5),
        dt.date(2024, 1, 8),
        dt.date(2024, 1, 10),
    ]


def test_trade_statistics_hand_worked() -> None:
    trips = m.closed_round_trips(hand_fills())
    assert m.trades_count(hand_fills()) == 6
    # pnl [192, 47, -27, -82.65]: 2 winners of 4.
    assert m.win_rate(trips) == 0.5
    # mean win (192 + 47)/2 = 119.5; mean loss (27 + 82.65)/2 = 54.825; 119.5/54.825 = 2.17966
    assert m.profit_loss_ratio(trips) == pytest.approx(119.5 / 54.825, rel=1e-12)


def test_same_day_fills_keep_input_order() -> None:
    # US T+0: sell the old lot, buy again, same date. FIFO closes the old lot at the sell.
    fills = pd.DataFrame(
        [
            fill(dt.date(2024, 1, 2), "X", "buy", 10, 5.0),
            fill(dt.date(2024, 1, 3), "X", "sell", 10, 6.0),
            fill(dt.date(2024, 1, 3), "X", "buy", 10, 6.0),
            fill(dt.date(2024, 1, 4), "X", "sell", 10, 5.5),
        ]
    )
    trips = m.closed_round_trips(fills)
    np.testing.assert_allclose(trips["pnl"], [10.0, -5.0])  # (6-5)*10, (5.5-6)*10
    assert trips["holding_days"].tolist() == [1, 1]


def test_turnover_hand_worked() -> None:
    fills = pd.DataFrame(
        [
            fill(dt.date(2024, 1, 2), "A", "buy", 100, 10.0),
            fill(dt.date(2024, 1, 4), "A", "sell", 100, 11.0),
        ]
    )
    # traded 100*10 + 100*11 = 2100; mean equity 1000; n = 4: 2100/1000 * 252/4 = 132.3
    assert m.turnover(fills, [1000.0] * 5) == pytest.approx(132.3, rel=1e-12)
    assert m.turnover(None, [1000.0] * 5) == 0.0


def test_compute_metrics_hand_worked() -> None:
    out = m.compute_metrics(EQUITY, benchmark=BENCHMARK, fills=hand_fills())
    assert set(out) == ALL_KEYS
    assert out["final_value"] == 119.79
    assert out["max_drawdown_duration"] == 2
    assert out["trades_count"] == 6
    assert out["round_trips_count"] == 4
    assert out["win_rate"] == 0.5
    assert out["beta"] == pytest.approx(4 / 3, rel=1e-12)
    assert out["sharpe_ratio"] == pytest.approx(0.5 * SQRT252, rel=1e-12)
    # traded 1000 + 2200 + 1000 + 1800 + 1575 + 380 = 7955; mean equity 537.69/5 = 107.538
    assert out["turnover"] == pytest.approx(7955 / 107.538 * 252 / 4, rel=1e-12)
    for key in ("trades_count", "round_trips_count", "max_drawdown_duration"):
        assert type(out[key]) is int
    json.dumps(out, allow_nan=False)


def test_benchmark_is_aligned_on_dates() -> None:
    # datetime.date labels, extra dates before and after, shuffled: same result as aligned.
    extra = pd.Series(
        [90.0, *BENCHMARK.tolist(), 500.0],
        index=[dt.date(2023, 12, 29), *(d.date() for d in EQUITY.index), dt.date(2024, 2, 1)],
    ).iloc[::-1]
    aligned = m.compute_metrics(EQUITY, benchmark=BENCHMARK)
    assert m.compute_metrics(EQUITY, benchmark=extra) == aligned
    assert aligned["benchmark_return"] == pytest.approx(0.0418625, rel=1e-12)


def test_benchmark_gap_drops_the_days_it_touches() -> None:
    # The benchmark misses day 3: b_3 and b_4 are unknown, so the pair metrics use the returns
    # of days 1 and 2 only: r = [.1, -.1], b = [.05, -.1] (no forward fill across the gap).
    gappy = BENCHMARK.drop(EQUITY.index[3])
    out = m.compute_metrics(EQUITY, benchmark=gappy)
    # deviations r: [.1, -.1], b: [.075, -.075]: beta = .1 / .075 = 4/3
    assert out["beta"] == pytest.approx(4 / 3, rel=1e-12)
    # r - b = [.05, 0]: std(ddof=1) = .05 / sqrt(2)
    assert out["tracking_error"] == pytest.approx(0.05 / math.sqrt(2) * SQRT252, rel=1e-12)
    # The benchmark return still spans the run: 104.18625 / 100 - 1.
    assert out["benchmark_return"] == pytest.approx(0.0418625, rel=1e-12)


# --- undefined values are NaN from the functions and None in the dict, never inf -------------


def test_flat_equity_gives_none_not_inf() -> None:
    flat = pd.Series([100.0] * 10, index=pd.date_range("2024-01-01", periods=10))
    assert math.isnan(m.sharpe_ratio(m.daily_returns(flat)))
    assert math.isnan(m.sortino_ratio(m.daily_returns(flat)))
    assert math.isnan(m.calmar_ratio(flat))
    out = m.compute_metrics(flat)
    assert out["annual_volatility"] == 0.0
    assert out["max_drawdown"] == 0.0
    assert out["max_drawdown_duration"] == 0
    assert out["total_return"] == 0.0
    for key in ("sharpe_ratio", "sortino_ratio", "calmar_ratio"):
        assert out[key] is None


def test_no_trades_and_no_benchmark_give_none() -> None:
    out = m.compute_metrics(EQUITY)
    assert out["trades_count"] == 0
    assert out["round_trips_count"] == 0
    assert out["turnover"] == 0.0
    for key in ("win_rate", "profit_loss_ratio", "benchmark_return", "alpha", "beta"):
        assert out[key] is None
    assert out["information_ratio"] is None
    assert out["tracking_error"] is None
    assert m.closed_round_trips(None).empty
    assert math.isnan(m.win_rate(m.closed_round_trips(None)))


def test_no_losing_trade_gives_none_profit_loss_ratio() -> None:
    fills = pd.DataFrame(
        [
            fill(dt.date(2024, 1, 2), "A", "buy", 10, 10.0),
            fill(dt.date(2024, 1, 3), "A", "sell", 10, 11.0),
        ]
    )
    assert math.isnan(m.profit_loss_ratio(m.closed_round_trips(fills)))
    out = m.compute_metrics(EQUITY, fills=fills)
    assert out["win_rate"] == 1.0
    assert out["profit_loss_ratio"] is None


def test_never_a_losing_day_gives_none_sortino_where_empyrical_gives_inf() -> None:
    r = pd.Series([0.01, 0.02, 0.005, 0.01])
    assert ep.sortino_ratio(r) == math.inf  # the documented difference
    assert math.isnan(m.sortino_ratio(r))


def test_constant_benchmark_and_identical_returns_give_none() -> None:
    r = m.daily_returns(EQUITY)
    assert math.isnan(m.beta(r, np.zeros(4)))
    assert math.isnan(m.alpha(r, np.zeros(4)))
    # r == b: tracking error 0 is defined, the information ratio is not.
    assert m.tracking_error(r, r) == 0.0
    assert math.isnan(m.information_ratio(r, r))
    out = m.compute_metrics(EQUITY, benchmark=EQUITY)
    assert out["information_ratio"] is None
    assert out["beta"] == pytest.approx(1.0)


def test_single_point_curve() -> None:
    out = m.compute_metrics(pd.Series([100.0], index=[dt.date(2024, 1, 2)]))
    assert out["final_value"] == 100.0
    assert out["total_return"] == 0.0
    for key in ("annual_return", "annual_volatility", "sharpe_ratio", "turnover"):
        assert out[key] is None
    json.dumps(out, allow_nan=False)


def test_empty_curve_is_an_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        m.compute_metrics(pd.Series([], dtype=float))


def test_json_safe() -> None:
    data = {"a": math.nan, "b": [math.inf, -math.inf, np.float64(1.5)], "c": np.int64(3), "d": None}
    assert m.json_safe(data) == {"a": None, "b": [None, None, 1.5], "c": 3, "d": None}
    assert type(m.json_safe(np.int64(3))) is int
    assert m.json_safe(np.bool_(True)) is True


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([fill(dt.date(2024, 1, 2), "A", "sell", 10, 10.0)], "exceeds the open lots"),
        ([fill(dt.date(2024, 1, 2), "A", "short", 10, 10.0)], "unknown side"),
        ([fill(dt.date(2024, 1, 2), "A", "buy", 0, 10.0)], "non-positive shares"),
    ],
)
def test_bad_fills_are_rejected(rows: list[dict], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        m.closed_round_trips(pd.DataFrame(rows))


# --- empyrical-reloaded as an oracle where the definitions coincide ---------------------------


def seeded() -> tuple[pd.Series, pd.Series, pd.Series, pd.Series]:
    """750 days of strategy and benchmark returns with their equity/price curves E_0..E_n."""
    rng = np.random.default_rng(42)
    b = rng.normal(0.0004, 0.012, 750)
    r = 0.0002 + 0.9 * b + rng.normal(0, 0.006, 750)
    dates = pd.bdate_range("2021-01-04", periods=751)
    equity = pd.Series(100_000 * np.cumprod(np.r_[1.0, 1 + r]), index=dates)
    bench = pd.Series(3000 * np.cumprod(np.r_[1.0, 1 + b]), index=dates)
    # empyrical takes the n returns r_1..r_n (pct_change without its leading NaN).
    return equity, bench, equity.pct_change().iloc[1:], bench.pct_change().iloc[1:]


RTOL = 1e-9


def test_annual_return_matches_empyrical() -> None:
    # empyrical.annual_return (alias cagr) takes len(returns) / 252 years, and len(returns) is
    # our n (points minus one), so (E_n/E_0)^(252/n) - 1 is the same number. Passing the
    # pct_change series *with* its leading NaN would make empyrical count n + 1 days.
    equity, _, r, _ = seeded()
    assert m.annual_return(equity) == pytest.approx(ep.annual_return(r), rel=RTOL)
    assert m.annual_return(equity) == pytest.approx(ep.cagr(r), rel=RTOL)


def test_volatility_and_drawdown_match_empyrical() -> None:
    equity, _, r, _ = seeded()
    assert m.annual_volatility(r) == pytest.approx(ep.annual_volatility(r), rel=RTOL)
    # empyrical reports drawdowns as negative fractions.
    assert m.max_drawdown(equity) == pytest.approx(-ep.max_drawdown(r), rel=RTOL)
    assert m.calmar_ratio(equity) == pytest.approx(ep.calmar_ratio(r), rel=RTOL)


@pytest.mark.parametrize("rate", [0.0, 0.03])
def test_sharpe_sortino_match_empyrical(rate: float) -> None:
    _, _, r, _ = seeded()
    rf_d = m.daily_risk_free(rate)  # empyrical takes the daily rate
    assert m.sharpe_ratio(r, rate) == pytest.approx(ep.sharpe_ratio(r, risk_free=rf_d), rel=RTOL)
    expected = ep.sortino_ratio(r, required_return=rf_d)
    assert m.sortino_ratio(r, rate) == pytest.approx(expected, rel=RTOL)


@pytest.mark.parametrize("rate", [0.0, 0.03])
def test_alpha_beta_match_empyrical(rate: float) -> None:
    _, _, r, b = seeded()
    expected_alpha, expected_beta = ep.alpha_beta(r, b, risk_free=m.daily_risk_free(rate))
    assert m.beta(r, b) == pytest.approx(expected_beta, rel=RTOL)
    assert m.alpha(r, b, rate) == pytest.approx(expected_alpha, rel=RTOL)


def test_information_ratio_and_tracking_error_match_empyrical() -> None:
    # empyrical.excess_sharpe is the daily (not annualised) information ratio.
    _, _, r, b = seeded()
    assert m.information_ratio(r, b) == pytest.approx(ep.excess_sharpe(r, b) * SQRT252, rel=RTOL)
    assert m.tracking_error(r, b) == pytest.approx(ep.annual_volatility(r - b), rel=RTOL)


def test_compute_metrics_matches_empyrical() -> None:
    equity, bench, r, b = seeded()
    out = m.compute_metrics(equity, benchmark=bench, risk_free_rate=0.02)
    rf_d = m.daily_risk_free(0.02)
    expected_alpha, expected_beta = ep.alpha_beta(r, b, risk_free=rf_d)
    assert out["annual_return"] == pytest.approx(ep.annual_return(r), rel=RTOL)
    assert out["annual_volatility"] == pytest.approx(ep.annual_volatility(r), rel=RTOL)
    assert out["sharpe_ratio"] == pytest.approx(ep.sharpe_ratio(r, risk_free=rf_d), rel=RTOL)
    assert out["sortino_ratio"] == pytest.approx(ep.sortino_ratio(r, rf_d), rel=RTOL)
    assert out["max_drawdown"] == pytest.approx(-ep.max_drawdown(r), rel=RTOL)
    assert out["calmar_ratio"] == pytest.approx(ep.calmar_ratio(r), rel=RTOL)
    assert out["alpha"] == pytest.approx(expected_alpha, rel=RTOL)
    assert out["beta"] == pytest.approx(expected_beta, rel=RTOL)
    assert out["total_return"] == pytest.approx(ep.cum_returns_final(r), rel=RTOL)
    assert out["benchmark_return"] == pytest.approx(ep.cum_returns_final(b), rel=RTOL)
