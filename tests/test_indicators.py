"""quantdesk.indicators equals TA-Lib (test-only oracle) value for value, warm-up included."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
import talib

from quantdesk import indicators as ind

N_BARS = 500
Arrays = tuple[np.ndarray, ...]


def make_bars(seed: int = 20240501, n: int = N_BARS) -> dict[str, np.ndarray]:
    """A seeded geometric random walk with consistent OHLC and integer volumes."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    open_ = np.r_[close[0], close[:-1]] * np.exp(rng.normal(0, 0.005, n))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.02, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.02, n))
    volume = rng.integers(100_000, 1_000_000, n).astype(np.float64)
    return {"high": high, "low": low, "close": close, "volume": volume}


def _tuple(x: object) -> Arrays:
    return tuple(x) if isinstance(x, tuple) else (x,)


# (id, ours(bars) -> outputs, TA-Lib(bars) -> outputs). Each call takes the bars as a dict of
# arrays or of Series, so the same cases serve the Series-in/Series-out tests.
Case = tuple[str, Callable[[dict], object], Callable[[dict], object]]
CASES: list[Case] = [
    *[
        (f"sma{n}", lambda b, n=n: ind.sma(b["close"], n), lambda b, n=n: talib.SMA(b["close"], n))
        for n in (2, 5, 20, 30)
    ],
    *[
        (f"ema{n}", lambda b, n=n: ind.ema(b["close"], n), lambda b, n=n: talib.EMA(b["close"], n))
        for n in (2, 12, 26, 30)
    ],
    *[
        (f"wma{n}", lambda b, n=n: ind.wma(b["close"], n), lambda b, n=n: talib.WMA(b["close"], n))
        for n in (2, 10, 30)
    ],
    *[
        (
            f"macd{f}_{s}_{g}",
            lambda b, f=f, s=s, g=g: ind.macd(b["close"], f, s, g),
            lambda b, f=f, s=s, g=g: talib.MACD(b["close"], f, s, g),
        )
        # (26, 12, 9): TA-Lib swaps fast > slow; so do we.
        for f, s, g in ((12, 26, 9), (5, 35, 5), (3, 10, 1), (26, 12, 9))
    ],
    *[
        (f"rsi{n}", lambda b, n=n: ind.rsi(b["close"], n), lambda b, n=n: talib.RSI(b["close"], n))
        for n in (2, 6, 14, 24)
    ],
    *[
        (
            f"boll{n}_{k}",
            lambda b, n=n, k=k: ind.boll(b["close"], n, k),
            lambda b, n=n, k=k: talib.BBANDS(b["close"], n, k, k, 0),
        )
        for n, k in ((20, 2.0), (10, 1.5), (5, 1.0))
    ],
    *[
        (
            f"kdj{n}_{m1}_{m2}",
            lambda b, n=n, m1=m1, m2=m2: ind.kdj(b["high"], b["low"], b["close"], n, m1, m2),
            # matype 13 = RMA (Wilder), TA-Lib's KDJ default, written out to pin it.
            lambda b, n=n, m1=m1, m2=m2: talib.KDJ(
                b["high"], b["low"], b["close"], n, m1, 13, m2, 13
            ),
        )
        for n, m1, m2 in ((9, 3, 3), (14, 5, 4), (5, 2, 6))
    ],
    *[
        (
            f"atr{n}",
            lambda b, n=n: ind.atr(b["high"], b["low"], b["close"], n),
            lambda b, n=n: talib.ATR(b["high"], b["low"], b["close"], n),
        )
        for n in (1, 5, 14)
    ],
    (
        "obv",
        lambda b: ind.obv(b["close"], b["volume"]),
        lambda b: talib.OBV(b["close"], b["volume"]),
    ),
    *[
        (
            f"cci{n}",
            lambda b, n=n: ind.cci(b["high"], b["low"], b["close"], n),
            lambda b, n=n: talib.CCI(b["high"], b["low"], b["close"], n),
        )
        for n in (5, 14, 20)
    ],
    *[
        (f"roc{n}", lambda b, n=n: ind.roc(b["close"], n), lambda b, n=n: talib.ROC(b["close"], n))
        for n in (1, 10, 20)
    ],
    *[
        (
            f"stddev{n}_{k}",
            lambda b, n=n, k=k: ind.stddev(b["close"], n, k),
            lambda b, n=n, k=k: talib.STDDEV(b["close"], n, k),
        )
        for n, k in ((2, 1.0), (5, 1.0), (20, 2.5))
    ],
]
CASE_IDS = [case[0] for case in CASES]


def assert_same_as_talib(ours: object, theirs: object) -> None:
    ours_t, theirs_t = _tuple(ours), _tuple(theirs)
    assert len(ours_t) == len(theirs_t)
    for mine, ref in zip(ours_t, theirs_t, strict=True):
        mine = np.asarray(mine)
        assert mine.dtype == np.float64
        assert mine.shape == ref.shape
        # Same warm-up: NaN exactly where TA-Lib has NaN.
        np.testing.assert_array_equal(np.isnan(mine), np.isnan(ref))
        assert not np.isnan(ref).all()
        # Relative 1e-9 everywhere, EMA-family included: our recursions are seeded like TA-Lib's
        # (SMA seeds at the same bar), so no tail-only comparison is needed. Values near zero
        # (MACD hist, CCI, J) are held to the same relative bound; they pass on this seed.
        np.testing.assert_allclose(mine, ref, rtol=1e-9, atol=0)


@pytest.mark.parametrize(("name", "ours", "theirs"), CASES, ids=CASE_IDS)
def test_equals_talib_on_random_walk(
    name: str, ours: Callable[[dict], object], theirs: Callable[[dict], object]
) -> None:
    bars = make_bars()
    assert_same_as_talib(ours(bars), theirs(bars))


@pytest.mark.parametrize(("name", "ours", "theirs"), CASES, ids=CASE_IDS)
def test_leading_nan_shifts_the_warm_up_like_talib(
    name: str, ours: Callable[[dict], object], theirs: Callable[[dict], object]
) -> None:
    # A symbol listed after its peers: TA-Lib's wrapper starts at the first all-known row.
    bars = make_bars(seed=7)
    bars["close"][:7] = np.nan
    bars["high"][:3] = np.nan
    assert_same_as_talib(ours(bars), theirs(bars))


@pytest.mark.parametrize(("name", "ours", "theirs"), CASES, ids=CASE_IDS)
def test_series_in_series_out_same_index(
    name: str, ours: Callable[[dict], object], theirs: Callable[[dict], object]
) -> None:
    bars = make_bars(seed=11, n=80)
    index = pd.bdate_range("2024-01-02", periods=80, name="date")
    series = {k: pd.Series(v, index=index) for k, v in bars.items()}
    from_series, from_arrays = _tuple(ours(series)), _tuple(ours(bars))
    for out, plain in zip(from_series, from_arrays, strict=True):
        assert isinstance(out, pd.Series)
        assert out.index.equals(index)
        assert out.dtype == np.float64
        assert type(plain) is np.ndarray
        np.testing.assert_array_equal(out.to_numpy(), plain)


def test_integer_series_and_lists_are_accepted() -> None:
    values = [1, 2, 3, 4, 5]
    out = ind.sma(pd.Series(values, index=list("abcde")), 2)
    assert list(out.index) == list("abcde")
    np.testing.assert_array_equal(out.to_numpy(), [np.nan, 1.5, 2.5, 3.5, 4.5])
    listed = ind.sma(values, 2)
    assert isinstance(listed, np.ndarray)
    np.testing.assert_array_equal(listed, [np.nan, 1.5, 2.5, 3.5, 4.5])


def test_ema_hand_worked() -> None:
    # n=3, k = 2/(3+1) = 0.5; seed at bar 2 = mean(1, 2, 3) = 2;
    # bar 3: (4 - 2) * 0.5 + 2 = 3; bar 4: (10 - 3) * 0.5 + 3 = 6.5.
    out = ind.ema(np.array([1.0, 2.0, 3.0, 4.0, 10.0]), 3)
    np.testing.assert_array_equal(out, [np.nan, np.nan, 2.0, 3.0, 6.5])


# Six bars for the hand-worked KDJ(n=3).
H = np.array([10.0, 11.0, 12.0, 11.0, 13.0, 12.0])
L = np.array([8.0, 9.0, 10.0, 9.0, 10.0, 10.0])
C = np.array([9.0, 10.0, 11.0, 10.0, 12.0, 11.0])
# RSV_t = 100 (C - LLV(L,3)) / (HHV(H,3) - LLV(L,3)):
#   bar 2: (11 - 8) / (12 - 8) = 75;   bar 3: (10 - 9) / (12 - 9) = 100/3
#   bar 4: (12 - 9) / (13 - 9) = 75;   bar 5: (11 - 9) / (13 - 9) = 50


def test_kdj_hand_worked_talib_seeding() -> None:
    # m1 = m2 = 2, so K_t = (K_{t-1} + RSV_t) / 2 and D_t = (D_{t-1} + K_t) / 2.
    # K seeded at bar 3 with mean(RSV_2, RSV_3) = (75 + 100/3) / 2 = 325/6
    # K_4 = (325/6 + 75) / 2 = 775/12 = 64.58333;  K_5 = (775/12 + 50) / 2 = 1375/24 = 57.29167
    # D seeded at bar 4 with mean(K_3, K_4) = (325/6 + 775/12) / 2 = 1425/24 = 59.375
    # D_5 = (1425/24 + 1375/24) / 2 = 2800/48 = 58.33333
    # J = 3K - 2D: J_4 = 2325/12 - 2850/24 = 75;  J_5 = 4125/24 - 2800/24 = 1325/24 = 55.20833
    # Output starts at n + m1 + m2 - 3 = 4 (K_3 exists but is hidden, like TA-Lib).
    k, d, j = ind.kdj(H, L, C, 3, 2, 2)
    nan = np.nan
    np.testing.assert_allclose(k, [nan, nan, nan, nan, 775 / 12, 1375 / 24], rtol=1e-12)
    np.testing.assert_allclose(d, [nan, nan, nan, nan, 1425 / 24, 2800 / 48], rtol=1e-12)
    np.testing.assert_allclose(j, [nan, nan, nan, nan, 75.0, 1325 / 24], rtol=1e-12)
    assert_same_as_talib((k, d, j), talib.KDJ(H, L, C, 3, 2, 13, 2, 13))


def test_kdj_hand_worked_chinese_terminal_seeding() -> None:
    # initial=50: K and D are 50 before bar n-1 = 2; weights 1/3 (m1 = m2 = 3).
    # K_2 = (2*50 + 75) / 3 = 175/3 = 58.3333;  K_3 = (2*175/3 + 100/3) / 3 = 450/9 = 50
    # D_2 = (2*50 + 175/3) / 3 = 475/9 = 52.7778; D_3 = (2*475/9 + 50) / 3 = 1400/27 = 51.8519
    # J_2 = 3*175/3 - 2*475/9 = 175 - 950/9 = 625/9 = 69.4444;  J_3 = 150 - 2800/27 = 1250/27
    k, d, j = ind.kdj(H, L, C, 3, 3, 3, initial=50.0)
    np.testing.assert_allclose(k[:4], [np.nan, np.nan, 175 / 3, 50.0], rtol=1e-12)
    np.testing.assert_allclose(d[:4], [np.nan, np.nan, 475 / 9, 1400 / 27], rtol=1e-12)
    np.testing.assert_allclose(j[:4], [np.nan, np.nan, 625 / 9, 1250 / 27], rtol=1e-12)


def test_kdj_seedings_converge() -> None:
    # The seed's influence decays by (1 - 1/3) per bar: after 100 bars both variants agree.
    bars = make_bars()
    talib_style = ind.kdj(bars["high"], bars["low"], bars["close"])
    terminal_style = ind.kdj(bars["high"], bars["low"], bars["close"], initial=50.0)
    assert abs(talib_style[0][12] - terminal_style[0][12]) > 1e-6  # they do differ early on
    for a, b in zip(talib_style, terminal_style, strict=True):
        np.testing.assert_allclose(a[100:], b[100:], rtol=1e-9)


def test_flat_prices_follow_talib_zero_conventions() -> None:
    # A flat stretch then a trend: zero range / zero variance give TA-Lib's 0, not NaN or inf.
    close = np.r_[np.full(30, 10.0), np.linspace(10.0, 12.0, 20)]
    high, low = close.copy(), close.copy()
    high[30:] += 0.5
    low[30:] -= 0.5
    assert ind.rsi(close, 14)[14] == 0.0
    assert ind.stddev(close, 5)[4] == 0.0
    assert ind.cci(high, low, close, 14)[13] == 0.0
    assert ind.kdj(high, low, close)[0][12] == 0.0
    assert_same_as_talib(ind.rsi(close, 14), talib.RSI(close, 14))
    assert_same_as_talib(ind.stddev(close, 5), talib.STDDEV(close, 5, 1.0))
    assert_same_as_talib(ind.cci(high, low, close, 14), talib.CCI(high, low, close, 14))
    assert_same_as_talib(ind.kdj(high, low, close), talib.KDJ(high, low, close, 9, 3, 13, 3, 13))
    assert_same_as_talib(ind.boll(close, 20, 2.0), talib.BBANDS(close, 20, 2.0, 2.0, 0))


@pytest.mark.parametrize(("name", "ours", "theirs"), CASES, ids=CASE_IDS)
def test_input_shorter_than_warm_up_matches_talib(
    name: str, ours: Callable[[dict], object], theirs: Callable[[dict], object]
) -> None:
    # 3 bars: most indicators are all NaN; the short ones (sma2, roc1, obv...) have values.
    bars = {k: v[:3] for k, v in make_bars().items()}
    for mine, ref in zip(_tuple(ours(bars)), _tuple(theirs(bars)), strict=True):
        np.testing.assert_array_equal(np.isnan(np.asarray(mine)), np.isnan(ref))
        np.testing.assert_allclose(np.asarray(mine), ref, rtol=1e-9, atol=0)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_invalid_period_is_rejected(bad: object) -> None:
    with pytest.raises(ValueError, match="positive integer"):
        ind.sma(np.arange(10.0), bad)


def test_inputs_of_different_length_are_rejected() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        ind.atr(np.ones(10), np.ones(10), np.ones(9), 3)
