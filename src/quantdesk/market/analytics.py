"""Price adjustment, weekly and monthly bars, and the indicator registry: pure array functions.

Adjustment (复权) is computed on read from the stored raw prices and cumulative factors:
forward (qfq) scales every price so the latest bar is unchanged, backward (hfq) so the first
bar is unchanged; ratios between any two adjusted prices are the same either way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from quantdesk import indicators as ind

FloatArray = npt.NDArray[np.float64]


class Adjust(StrEnum):
    QFQ = "qfq"  # forward: the latest price is the real one
    HFQ = "hfq"  # backward: the first price is the real one
    NONE = "none"


class Freq(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"


def adjustment(factors: FloatArray, adjust: Adjust, *, first: float, last: float) -> FloatArray:
    """The multiplier of each bar's raw prices; `first`/`last` are the series' end factors."""
    if adjust is Adjust.NONE:
        return np.ones_like(factors)
    anchor = last if adjust is Adjust.QFQ else first
    return factors / anchor


def resample(frame: pd.DataFrame, freq: Freq) -> pd.DataFrame:
    """Weekly (Monday to Friday) or monthly bars from daily ones; dated by their last session.

    Suspended days are left out (they carry no trade); `change_pct` is the change of the
    adjusted close against the previous period's, in percent.
    """
    daily = frame[~frame["suspended"]]
    if daily.empty:
        return daily.assign(change_pct=pd.Series(dtype="float64"))
    stamps = pd.to_datetime(daily["date"])
    key = stamps.dt.to_period("W-SUN" if freq is Freq.WEEKLY else "M")
    grouped = daily.groupby(key.to_numpy(), sort=True)
    out = pd.DataFrame(
        {
            "date": grouped["date"].last(),
            "open": grouped["open"].first(),
            "high": grouped["high"].max(),
            "low": grouped["low"].min(),
            "close": grouped["close"].last(),
            "volume": grouped["volume"].sum(),
            "amount": grouped["amount"].sum(min_count=1),
            "suspended": False,
            "is_st": grouped["is_st"].last(),
            "comparable": grouped["comparable"].last(),
        }
    ).reset_index(drop=True)
    previous = out["comparable"].shift(1)
    out["change_pct"] = (out["comparable"] / previous - 1.0) * 100.0
    return out


# --------------------------------------------------------------------------- indicators


@dataclass(frozen=True)
class Param:
    default: float
    low: float
    high: float
    integer: bool = True


@dataclass(frozen=True)
class Indicator:
    """One indicator: its parameters (query args `<name>_<param>`) and output series names."""

    name: str
    summary: str
    params: Mapping[str, Param]
    outputs: tuple[str, ...]
    compute: Callable[[Mapping[str, FloatArray], Mapping[str, Any]], tuple[FloatArray, ...]]


def _one(x: FloatArray) -> tuple[FloatArray, ...]:
    return (x,)


_N = Param(20, 1, 250)
INDICATORS: dict[str, Indicator] = {
    item.name: item
    for item in (
        Indicator(
            "sma",
            "simple moving average of the close",
            {"n": _N},
            ("sma",),
            lambda b, p: _one(ind.sma(b["close"], p["n"])),
        ),
        Indicator(
            "ema",
            "exponential moving average of the close",
            {"n": _N},
            ("ema",),
            lambda b, p: _one(ind.ema(b["close"], p["n"])),
        ),
        Indicator(
            "wma",
            "linearly weighted moving average of the close",
            {"n": _N},
            ("wma",),
            lambda b, p: _one(ind.wma(b["close"], p["n"])),
        ),
        Indicator(
            "macd",
            "MACD line, signal and histogram",
            {"fast": Param(12, 1, 250), "slow": Param(26, 1, 250), "signal": Param(9, 1, 250)},
            ("macd", "macd_signal", "macd_hist"),
            lambda b, p: ind.macd(b["close"], p["fast"], p["slow"], p["signal"]),
        ),
        Indicator(
            "rsi",
            "relative strength index (Wilder)",
            {"n": Param(14, 1, 250)},
            ("rsi",),
            lambda b, p: _one(ind.rsi(b["close"], p["n"])),
        ),
        Indicator(
            "boll",
            "Bollinger bands: SMA(n) +- k population std",
            {"n": _N, "k": Param(2.0, 0.1, 10.0, integer=False)},
            ("boll_upper", "boll_middle", "boll_lower"),
            lambda b, p: ind.boll(b["close"], p["n"], p["k"]),
        ),
        Indicator(
            "kdj",
            "KDJ stochastic (TA-Lib's seeding)",
            {"n": Param(9, 1, 250), "m1": Param(3, 1, 250), "m2": Param(3, 1, 250)},
            ("kdj_k", "kdj_d", "kdj_j"),
            lambda b, p: ind.kdj(b["high"], b["low"], b["close"], p["n"], p["m1"], p["m2"]),
        ),
        Indicator(
            "atr",
            "average true range (Wilder)",
            {"n": Param(14, 1, 250)},
            ("atr",),
            lambda b, p: _one(ind.atr(b["high"], b["low"], b["close"], p["n"])),
        ),
        Indicator(
            "obv",
            "on-balance volume",
            {},
            ("obv",),
            lambda b, p: _one(ind.obv(b["close"], b["volume"])),
        ),
        Indicator(
            "cci",
            "commodity channel index",
            {"n": Param(14, 1, 250)},
            ("cci",),
            lambda b, p: _one(ind.cci(b["high"], b["low"], b["close"], p["n"])),
        ),
        Indicator(
            "roc",
            "rate of change in percent",
            {"n": Param(10, 1, 250)},
            ("roc",),
            lambda b, p: _one(ind.roc(b["close"], p["n"])),
        ),
        Indicator(
            "stddev",
            "rolling population standard deviation of the close",
            {"n": _N, "nbdev": Param(1.0, 0.1, 10.0, integer=False)},
            ("stddev",),
            lambda b, p: _one(ind.stddev(b["close"], p["n"], p["nbdev"])),
        ),
    )
}
DEFAULT_INDICATORS = ("sma", "ema", "macd", "rsi", "boll", "kdj", "atr", "obv")


def resolve_params(name: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """The indicator's parameters: `<name>_<param>` from `given`, else the defaults."""
    spec = INDICATORS[name]
    out: dict[str, Any] = {}
    for param, rule in spec.params.items():
        value = given.get(f"{name}_{param}")
        value = rule.default if value is None else value
        out[param] = int(value) if rule.integer else float(value)
    return out


def canonical(params: Mapping[str, Any]) -> str:
    """`n=20` / `fast=12,slow=26,signal=9`: the parameters as stored and cached."""
    return ",".join(f"{key}={value:g}" for key, value in params.items())


def compute(
    names: list[str], bars: Mapping[str, FloatArray], given: Mapping[str, Any]
) -> tuple[dict[str, FloatArray], dict[str, dict[str, Any]]]:
    """Each requested indicator's output series (same length as the bars) and its parameters."""
    series: dict[str, FloatArray] = {}
    used: dict[str, dict[str, Any]] = {}
    for name in names:
        spec = INDICATORS[name]
        params = resolve_params(name, given)
        outputs = spec.compute(bars, params)
        series.update(zip(spec.outputs, outputs, strict=True))
        used[name] = params
    return series, used


def nan_to_none(values: FloatArray) -> list[float | None]:
    return [None if v != v else v for v in values.tolist()]  # v != v only for NaN


def iso(dates: list[dt.date]) -> list[str]:
    return [d.isoformat() for d in dates]
