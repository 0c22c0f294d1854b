"""Technical indicators in plain numpy that equal TA-Lib's, for strategies and market data."""

from __future__ import annotations

import math
from typing import Any, TypeAlias, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "atr",
    "boll",
    "cci",
    "ema",
    "kdj",
    "macd",
    "obv",
    "roc",
    "rsi",
    "sma",
    "stddev",
    "wma",
]

FloatArray: TypeAlias = npt.NDArray[np.float64]
# The kind of input is the kind of output: Series in, Series (same index) out; ndarray in,
# ndarray out (lists and tuples are accepted too and give an ndarray).
T = TypeVar("T", "pd.Series[float]", FloatArray)

# TA-Lib's TA_IS_ZERO / TA_IS_ZERO_OR_NEG threshold (ta_func/ta_utility.h): a variance or an
# RSI denominator below it is treated as exactly zero.
_TA_EPSILON = 1e-14


# --- input and output --------------------------------------------------------------------------


def _as_array(x: Any) -> FloatArray:
    if isinstance(x, pd.Series):
        x = x.to_numpy(dtype=np.float64, na_value=np.nan)
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"indicators take 1-D inputs, got shape {a.shape}")
    return a


def _prepare(*inputs: Any) -> tuple[list[FloatArray], int]:
    """The inputs as float64 arrays with the leading NaN rows cut off, and how many were cut.

    Like the TA-Lib Python wrapper (``check_begidx``), the computation starts at the first row
    where every input is known, so a series listed later than its peers gets a normal warm-up.
    NaN inside the data is not skipped: it propagates through the windows it falls in.
    """
    arrays = [_as_array(x) for x in inputs]
    length = arrays[0].size
    if any(a.size != length for a in arrays):
        raise ValueError(f"inputs differ in length: {[a.size for a in arrays]}")
    known = np.ones(length, dtype=bool)
    for a in arrays:
        known &= ~np.isnan(a)
    begin = int(np.argmax(known)) if known.any() else length
    return [a[begin:] for a in arrays], begin


def _wrap(template: T, values: FloatArray, begin: int, name: str) -> T:
    """Pad ``values`` back with ``begin`` NaN and give them the kind (and index) of ``template``."""
    if begin:
        values = np.concatenate((np.full(begin, np.nan), values))
    if isinstance(template, pd.Series):
        return pd.Series(values, index=template.index, name=name)
    return values


def _check(**periods: int) -> None:
    for name, value in periods.items():
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


# --- kernels: 1-D float64 arrays without leading NaN, output of the same length ----------------


def _windows(x: FloatArray, n: int) -> FloatArray:
    """Rolling windows of length n as rows (a view): row i covers x[i : i + n]."""
    return sliding_window_view(x, n)


def _sma(x: FloatArray, n: int) -> FloatArray:
    out = np.full(x.size, np.nan)
    if x.size >= n:
        out[n - 1 :] = _windows(x, n).mean(axis=1)
    return out


def _pstd(x: FloatArray, n: int) -> FloatArray:
    """Rolling population standard deviation (ddof=0), zero below TA-Lib's epsilon variance."""
    out = np.full(x.size, np.nan)
    if x.size >= n:
        w = _windows(x, n)
        var = np.mean(np.square(w - w.mean(axis=1, keepdims=True)), axis=1)
        out[n - 1 :] = np.sqrt(np.where(var < _TA_EPSILON, 0.0, var))
    return out


def _ema_from(x: FloatArray, n: int, start: int) -> FloatArray:
    """EMA with k = 2 / (n + 1), seeded at ``start`` with the mean of x[start-n+1 .. start].

    TA-Lib's TA_INT_EMA (default compatibility): y_start = SMA, then y_t = (x_t - y_{t-1}) k +
    y_{t-1}, in that order of operations.
    """
    out = np.full(x.size, np.nan)
    if start >= x.size:
        return out
    k = 2.0 / (n + 1)
    prev = float(np.mean(x[start - n + 1 : start + 1]))
    out[start] = prev
    tail = []
    for value in x[start + 1 :].tolist():
        prev = (value - prev) * k + prev
        tail.append(prev)
    out[start + 1 :] = tail
    return out


def _wilder_from(x: FloatArray, n: int, start: int) -> FloatArray:
    """Wilder's smoothing (RMA, alpha = 1/n) seeded at ``start`` with the mean of the n values
    ending there; y_t = (y_{t-1} (n - 1) + x_t) / n as in TA-Lib's ATR."""
    out = np.full(x.size, np.nan)
    if start >= x.size:
        return out
    prev = float(np.mean(x[start - n + 1 : start + 1]))
    out[start] = prev
    tail = []
    for value in x[start + 1 :].tolist():
        prev = (prev * (n - 1) + value) / n
        tail.append(prev)
    out[start + 1 :] = tail
    return out


# --- indicators ---------------------------------------------------------------------------------


def sma(close: T, n: int = 30) -> T:
    """Simple moving average: mean of the last n values. TA-Lib SMA; NaN for the first n-1."""
    _check(n=n)
    (x,), begin = _prepare(close)
    return _wrap(close, _sma(x, n), begin, "sma")


def ema(close: T, n: int = 30) -> T:
    """Exponential moving average, k = 2 / (n + 1), seeded with the SMA of the first n values.

    TA-Lib EMA (default, non-Metastock compatibility); NaN for the first n-1 values.
    """
    _check(n=n)
    (x,), begin = _prepare(close)
    return _wrap(close, _ema_from(x, n, n - 1), begin, "ema")


def wma(close: T, n: int = 30) -> T:
    """Linearly weighted moving average: weights 1..n, newest heaviest, over n(n+1)/2.

    TA-Lib WMA; NaN for the first n-1 values.
    """
    _check(n=n)
    (x,), begin = _prepare(close)
    out = np.full(x.size, np.nan)
    if x.size >= n:
        weights = np.arange(1, n + 1, dtype=np.float64)
        out[n - 1 :] = _windows(x, n) @ weights / (n * (n + 1) / 2)
    return _wrap(close, out, begin, "wma")


def macd(close: T, fast: int = 12, slow: int = 26, signal: int = 9) -> tuple[T, T, T]:
    """MACD line, signal line and histogram: ``(macd, signal, hist)``.

    macd = EMA(fast) - EMA(slow); signal = EMA(signal) of macd; hist = macd - signal. As TA-Lib
    MACD, both EMAs start at bar slow-1, so the fast EMA is seeded with the mean of the ``fast``
    values ending there (not the first ``fast`` values), the signal EMA with the mean of the
    first ``signal`` MACD values, and all three are NaN for the first slow + signal - 2 bars.
    fast > slow is swapped, as TA-Lib does.
    """
    _check(fast=fast, slow=slow, signal=signal)
    fast, slow = min(fast, slow), max(fast, slow)
    (x,), begin = _prepare(close)
    start = slow - 1
    line = _ema_from(x, fast, start) - _ema_from(x, slow, start)
    sig = np.full(x.size, np.nan)
    if x.size > start:
        sig[start:] = _ema_from(line[start:], signal, signal - 1)
    line[: start + signal - 1] = np.nan
    return (
        _wrap(close, line, begin, "macd"),
        _wrap(close, sig, begin, "signal"),
        _wrap(close, line - sig, begin, "hist"),
    )


def rsi(close: T, n: int = 14) -> T:
    """Relative strength index, 100 * avg_gain / (avg_gain + avg_loss), Wilder-smoothed.

    As TA-Lib RSI: the first averages are the means of the first n gains and losses (value at
    bar n, NaN before), then avg = (avg (n - 1) + today) / n; a flat window (avg_gain + avg_loss
    below 1e-14) gives 0, TA-Lib's convention.
    """
    _check(n=n)
    (x,), begin = _prepare(close)
    out = np.full(x.size, np.nan)
    if x.size > n:
        change = np.diff(x)
        gains = np.where(change > 0, change, 0.0).tolist()
        losses = np.where(change < 0, -change, 0.0).tolist()
        gain, loss = math.fsum(gains[:n]) / n, math.fsum(losses[:n]) / n
        values = [_rsi_value(gain, loss)]
        for up, down in zip(gains[n:], losses[n:], strict=True):
            gain = (gain * (n - 1) + up) / n
            loss = (loss * (n - 1) + down) / n
            values.append(_rsi_value(gain, loss))
        out[n:] = values
    return _wrap(close, out, begin, "rsi")


def _rsi_value(gain: float, loss: float) -> float:
    total = gain + loss
    return 100.0 * gain / total if abs(total) >= _TA_EPSILON else 0.0


def boll(close: T, n: int = 20, k: float = 2.0) -> tuple[T, T, T]:
    """Bollinger bands ``(upper, middle, lower)``: SMA(n) +- k * population std of n values.

    TA-Lib BBANDS with matype SMA and nbdevup = nbdevdn = k; std uses ddof=0 like TA-Lib.
    NaN for the first n-1 values.
    """
    _check(n=n)
    (x,), begin = _prepare(close)
    middle = _sma(x, n)
    width = k * _pstd(x, n)
    return (
        _wrap(close, middle + width, begin, "upper"),
        _wrap(close, middle, begin, "middle"),
        _wrap(close, middle - width, begin, "lower"),
    )


def kdj(
    high: T,
    low: T,
    close: T,
    n: int = 9,
    m1: int = 3,
    m2: int = 3,
    *,
    initial: float | None = None,
) -> tuple[T, T, T]:
    """The KDJ stochastic ``(k, d, j)`` of Chinese charting, in TA-Lib's KDJ variant.

    RSV_t = 100 (C_t - LLV(L, n)) / (HHV(H, n) - LLV(L, n)), 0 when the range is 0 (as TA-Lib's
    STOCH/KDJ); K = Wilder smoothing of RSV with weight 1/m1, K_t = (K_{t-1} (m1 - 1) + RSV_t)
    / m1; D the same of K with 1/m2; J = 3K - 2D.

    Seeding (the only point where KDJ definitions differ):

    * ``initial=None`` (default): TA-Lib >= 0.6's KDJ (slowk/slowd matype RMA). K is seeded with
      the mean of the first m1 RSV values and D with the mean of the first m2 K values; k, d and
      j are NaN for the first n + m1 + m2 - 3 bars.
    * ``initial=50.0``: the convention of most Chinese terminals: K and D start from 50 on the
      bar before the first RSV, so k, d, j have values from bar n-1. The two agree to within
      (1 - 1/m)^t of the seed difference, i.e. after a few dozen bars.
    """
    _check(n=n, m1=m1, m2=m2)
    (h, lo, c), begin = _prepare(high, low, close)
    rsv = np.full(c.size, np.nan)
    if c.size >= n:
        hh = _windows(h, n).max(axis=1)
        ll = _windows(lo, n).min(axis=1)
        span = hh - ll
        ratio = np.zeros_like(span)
        np.divide(c[n - 1 :] - ll, span, out=ratio, where=span != 0)
        rsv[n - 1 :] = 100.0 * ratio
    if initial is None:
        k_line = _wilder_from(rsv, m1, n + m1 - 2)
        d_line = _wilder_from(k_line, m2, n + m1 + m2 - 3)
        k_line[: n + m1 + m2 - 3] = np.nan
    else:
        k_line = _smooth_from_value(rsv, m1, n - 1, float(initial))
        d_line = _smooth_from_value(k_line, m2, n - 1, float(initial))
    return (
        _wrap(close, k_line, begin, "k"),
        _wrap(close, d_line, begin, "d"),
        _wrap(close, 3.0 * k_line - 2.0 * d_line, begin, "j"),
    )


def _smooth_from_value(x: FloatArray, m: int, start: int, seed: float) -> FloatArray:
    """y_t = (y_{t-1} (m - 1) + x_t) / m from bar ``start`` on, with y_{start-1} = seed."""
    out = np.full(x.size, np.nan)
    prev = seed
    values = []
    for value in x[start:].tolist():
        prev = (prev * (m - 1) + value) / m
        values.append(prev)
    out[start:] = values
    return out


def atr(high: T, low: T, close: T, n: int = 14) -> T:
    """Average true range, Wilder-smoothed.

    TR_t = max(H_t - L_t, |H_t - C_{t-1}|, |L_t - C_{t-1}|) from bar 1; as TA-Lib ATR the first
    ATR (bar n) is the mean of TR_1..TR_n, then ATR_t = (ATR_{t-1} (n - 1) + TR_t) / n. NaN for
    the first n bars.
    """
    _check(n=n)
    (h, lo, c), begin = _prepare(high, low, close)
    tr = np.full(c.size, np.nan)
    if c.size > 1:
        prev = c[:-1]
        tr[1:] = np.maximum(h[1:] - lo[1:], np.maximum(np.abs(h[1:] - prev), np.abs(lo[1:] - prev)))
    return _wrap(close, _wilder_from(tr, n, n), begin, "atr")


def obv(close: T, volume: T) -> T:
    """On-balance volume: OBV_0 = V_0, then + V_t on an up close, - V_t on a down close.

    TA-Lib OBV; no warm-up.
    """
    (c, v), begin = _prepare(close, volume)
    if c.size == 0:
        return _wrap(close, c, begin, "obv")
    step = np.sign(np.diff(c)) * v[1:]
    out = np.concatenate(([v[0]], v[0] + np.cumsum(step)))
    return _wrap(close, out, begin, "obv")


def cci(high: T, low: T, close: T, n: int = 14) -> T:
    """Commodity channel index: (TP - SMA(TP, n)) / (0.015 * mean |TP - SMA(TP, n)|).

    TP = (H + L + C) / 3. As TA-Lib CCI, 0 when the numerator or the mean deviation is 0; NaN
    for the first n-1 bars.
    """
    _check(n=n)
    (h, lo, c), begin = _prepare(high, low, close)
    tp = (h + lo + c) / 3.0
    out = np.full(c.size, np.nan)
    if c.size >= n:
        w = _windows(tp, n)
        mean = w.mean(axis=1)
        deviation = np.mean(np.abs(w - mean[:, None]), axis=1)
        distance = tp[n - 1 :] - mean
        value = np.zeros_like(mean)
        defined = (distance != 0) & (deviation != 0)
        np.divide(distance, 0.015 * deviation, out=value, where=defined)
        out[n - 1 :] = value
    return _wrap(close, out, begin, "cci")


def roc(close: T, n: int = 10) -> T:
    """Rate of change in percent: (C_t / C_{t-n} - 1) * 100; 0 where C_{t-n} is 0 (TA-Lib).

    NaN for the first n bars.
    """
    _check(n=n)
    (x,), begin = _prepare(close)
    out = np.full(x.size, np.nan)
    if x.size > n:
        ratio = np.ones(x.size - n)
        np.divide(x[n:], x[:-n], out=ratio, where=x[:-n] != 0)
        out[n:] = (ratio - 1.0) * 100.0
    return _wrap(close, out, begin, "roc")


def stddev(close: T, n: int = 5, nbdev: float = 1.0) -> T:
    """Rolling population standard deviation (ddof=0) of n values, times nbdev.

    TA-Lib STDDEV: a variance below 1e-14 gives exactly 0; NaN for the first n-1 values.
    """
    _check(n=n)
    (x,), begin = _prepare(close)
    return _wrap(close, _pstd(x, n) * nbdev, begin, "stddev")
