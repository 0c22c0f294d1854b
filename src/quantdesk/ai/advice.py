"""The deterministic view of one symbol: recent trend, indicator readings and risk notes.

Computed from the stored daily bars (forward-adjusted, suspended days left out) as of the
symbol's latest bar, never from the clock, so the same data gives the same view. Both the
`investment-advice` endpoint and the assistant's `compute_indicators` tool read it; the model
only adds a narrative on top.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session

from quantdesk import indicators as ind
from quantdesk.market import service as market
from quantdesk.market.analytics import Adjust

FloatArray = npt.NDArray[np.float64]

# The trend window of each horizon, in trading days.
HORIZONS: dict[str, int] = {"short": 20, "medium": 60, "long": 250}
DEFAULT_HORIZON = "medium"
LOOKBACK = dt.timedelta(days=800)  # calendar days of bars read: 250 trading days and warm-up
DISCLAIMER = (
    "For information and education only, not investment advice: computed from past prices by "
    "fixed rules (and, when a model is configured, explained by an AI). Past performance does "
    "not predict future results; markets can lose you money. Make your own decisions or ask "
    "a licensed adviser."
)


def _last(values: FloatArray) -> float | None:
    value = float(values[-1]) if values.size else math.nan
    return None if math.isnan(value) else round(value, 4)


def _ret(close: FloatArray, bars: int) -> float | None:
    if close.size <= bars:
        return None
    return round(float(close[-1] / close[-1 - bars] - 1.0), 4)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:+.1f}%"


def trend_of(close: FloatArray, horizon: str) -> dict[str, Any]:
    """Direction over the horizon's window: price against its moving average and its slope."""
    window = HORIZONS[horizon]
    n = min(window, max(close.size - 1, 1))
    average = ind.sma(close, n) if close.size >= n else np.full(close.size, np.nan)
    now, then = _last(average), None
    if average.size > 10 and not math.isnan(float(average[-11])):
        then = float(average[-11])
    slope = None if now is None or then is None else round(now / then - 1.0, 4)
    change = _ret(close, n)
    score = 0
    if now is not None:
        score += 1 if close[-1] > now else -1
    if slope is not None:
        score += 1 if slope > 0.002 else (-1 if slope < -0.002 else 0)
    if change is not None:
        score += 1 if change > 0.02 else (-1 if change < -0.02 else 0)
    direction = "up" if score >= 2 else "down" if score <= -2 else "sideways"
    return {
        "direction": direction,
        "window_bars": n,
        "change": change,
        "moving_average": now,
        "moving_average_slope_10d": slope,
        "returns": {f"{k}d": _ret(close, k) for k in (5, 20, 60, 120, 250)},
        "summary": f"{direction} over the last {n} bars ({_pct(change)}); the close is "
        f"{'above' if now is not None and close[-1] > now else 'below'} its {n}-bar average",
    }


def readings_of(high: FloatArray, low: FloatArray, close: FloatArray) -> dict[str, Any]:
    """Latest values of RSI, MACD, Bollinger bands, KDJ and ATR, each with what it suggests."""
    values: dict[str, float | None] = {}
    notes: list[str] = []
    rsi = _last(ind.rsi(close, 14))
    values["rsi_14"] = rsi
    if rsi is not None:
        state = "overbought" if rsi > 70 else "oversold" if rsi < 30 else "neutral"
        notes.append(f"RSI(14) {rsi:.1f}: {state}")
    line, signal, hist = ind.macd(close)
    values.update(macd=_last(line), macd_signal=_last(signal), macd_hist=_last(hist))
    if values["macd_hist"] is not None:
        recent = hist[-6:]
        crossed = bool(np.nanmin(recent) < 0 < np.nanmax(recent)) if recent.size else False
        side = "above" if values["macd_hist"] > 0 else "below"
        momentum = "bullish" if side == "above" else "bearish"
        cross = "; crossed its signal within 5 bars" if crossed else ""
        notes.append(f"MACD {side} its signal line ({momentum} momentum){cross}")
    upper, middle, lower = ind.boll(close, 20, 2.0)
    u, m, lo = _last(upper), _last(middle), _last(lower)
    values.update(boll_upper=u, boll_middle=m, boll_lower=lo)
    if u is not None and lo is not None and u > lo:
        position = round((float(close[-1]) - lo) / (u - lo), 4)
        values["boll_percent_b"] = position
        where = (
            "above the upper band"
            if position > 1
            else "below the lower band"
            if position < 0
            else "inside the bands"
        )
        notes.append(f"Bollinger %b {position:.2f}: {where}")
    k, d, j = ind.kdj(high, low, close)
    values.update(kdj_k=_last(k), kdj_d=_last(d), kdj_j=_last(j))
    if values["kdj_j"] is not None:
        j_value = values["kdj_j"]
        state = "overbought" if j_value > 100 else "oversold" if j_value < 0 else "neutral"
        notes.append(f"KDJ J {j_value:.1f}: {state}")
    atr = _last(ind.atr(high, low, close, 14))
    values["atr_14"] = atr
    if atr is not None and close[-1] > 0:
        values["atr_pct"] = round(atr / float(close[-1]), 4)
        notes.append(f"ATR(14) {atr:.2f} ({atr / float(close[-1]) * 100:.1f}% of the close)")
    return {"values": values, "notes": notes}


def _max_drawdown(close: FloatArray) -> float | None:
    if close.size < 2:
        return None
    peaks = np.maximum.accumulate(close)
    return round(float(np.max(1.0 - close / peaks)), 4)


def risks_of(
    frame_close: FloatArray,
    *,
    change_pct: FloatArray,
    amount: FloatArray,
    market_name: str,
    is_st: bool,
    suspended_recent: int,
    last_date: dt.date,
) -> dict[str, Any]:
    """Volatility, drawdown, limit moves, liquidity and flags, with a note for each concern."""
    close = frame_close[-251:]
    notes: list[str] = []
    returns = np.diff(np.log(close)) if close.size > 1 else np.array([])
    tail = returns[-60:]
    volatility = round(float(np.std(tail, ddof=1) * math.sqrt(252)), 4) if tail.size > 2 else None
    drawdown = _max_drawdown(close)
    if volatility is not None:
        level = "high" if volatility > 0.45 else "moderate" if volatility > 0.25 else "low"
        notes.append(f"{level} volatility: {volatility * 100:.0f}% a year over the last 60 bars")
    if drawdown is not None and drawdown > 0.2:
        notes.append(f"fell {drawdown * 100:.0f}% from a peak within the last year")
    big = int(np.sum(np.abs(change_pct[-60:]) >= 9.5)) if market_name == "cn_a" else 0
    if big:
        notes.append(f"{big} day(s) moved about 10% or more in 60 bars (price-limit days)")
    if is_st:
        notes.append("ST (special treatment): delisting risk and a narrower price limit")
    if suspended_recent:
        notes.append(f"suspended on {suspended_recent} of the last 60 trading days")
    recent = amount[-20:]
    recent = recent[np.isfinite(recent)]
    average_amount = float(recent.mean()) if recent.size else math.nan
    floor = 5e7 if market_name == "cn_a" else 1e7
    if not math.isnan(average_amount) and average_amount < floor:
        notes.append("thin trading: small daily turnover makes entries and exits costly")
    return {
        "volatility_annual": volatility,
        "max_drawdown_1y": drawdown,
        "limit_move_days_60": big,
        "average_daily_amount_20": None if math.isnan(average_amount) else round(average_amount, 2),
        "is_st": is_st,
        "suspended_days_60": suspended_recent,
        "as_of": last_date.isoformat(),
        "notes": notes,
    }


def outlook_of(trend: dict[str, Any], readings: dict[str, Any]) -> str:
    """A technical tilt from the trend and momentum only: positive, negative or neutral."""
    values = readings["values"]
    score = {"up": 2, "down": -2}.get(trend["direction"], 0)
    if values.get("macd_hist") is not None:
        score += 1 if values["macd_hist"] > 0 else -1
    rsi = values.get("rsi_14")
    if rsi is not None and rsi > 75:
        score -= 1
    elif rsi is not None and rsi < 25:
        score += 1
    return "positive" if score >= 2 else "negative" if score <= -2 else "neutral"


def symbol_view(session: Session, *, symbol: str, horizon: str = DEFAULT_HORIZON) -> dict[str, Any]:
    """Everything deterministic about one symbol as of its latest bar (NotFound if unknown)."""
    stock = market.get_stock(session, symbol)
    end = stock.last_date
    frame = market.bars_frame(
        session,
        stock.symbol,
        start=(end - LOOKBACK) if end else None,
        end=end,
        adjust=Adjust.QFQ,
    )
    head = {
        "symbol": stock.symbol,
        "name": stock.name,
        "market": stock.market,
        "exchange": stock.exchange,
        "kind": stock.kind,
        "currency": stock.currency,
        "horizon": horizon,
        "disclaimer": DISCLAIMER,
    }
    if frame.empty:
        return {**head, "as_of": None, "enough_data": False, "notes": ["no bars stored"]}
    suspended_recent = int(frame["suspended"].to_numpy()[-60:].sum())
    traded = frame[~frame["suspended"]]
    high, low, close = (traded[c].to_numpy(dtype=np.float64) for c in ("high", "low", "close"))
    last_date = traded["date"].iloc[-1] if len(traded) else frame["date"].iloc[-1]
    if close.size < 30:
        return {
            **head,
            "as_of": last_date.isoformat(),
            "enough_data": False,
            "notes": [f"only {close.size} trading bars stored: too few for a view"],
        }
    prev = traded["prev_close"].to_numpy(dtype=np.float64)
    # Unadjusted turnover where the provider gives none (US bars): close x volume.
    amount = traded["amount"].to_numpy(dtype=np.float64)
    volume = traded["volume"].to_numpy(dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        change_pct = (close / prev - 1.0) * 100.0
    trend = trend_of(close, horizon)
    readings = readings_of(high, low, close)
    risks = risks_of(
        close,
        change_pct=np.nan_to_num(change_pct),
        amount=np.where(np.isfinite(amount), amount, close * volume),
        market_name=stock.market,
        is_st=bool(stock.is_st),
        suspended_recent=suspended_recent,
        last_date=last_date,
    )
    return {
        **head,
        "as_of": last_date.isoformat(),
        "enough_data": True,
        "last_close": round(float(close[-1]), 4),
        "trend": trend,
        "indicators": readings,
        "risk": risks,
        "outlook": outlook_of(trend, readings),
    }


def view_text(view: dict[str, Any]) -> str:
    """The view in a few plain sentences (the offline analyst's narrative)."""
    title = f"{view['symbol']} {view['name']}"
    if not view.get("enough_data"):
        return f"{title}: {'; '.join(view.get('notes', []))}."
    lines = [
        f"{title}, as of {view['as_of']}: close {view['last_close']:,.2f} {view['currency']}.",
        f"Trend: {view['trend']['summary']}.",
    ]
    if view["indicators"]["notes"]:
        lines.append("Indicators: " + "; ".join(view["indicators"]["notes"]) + ".")
    if view["risk"]["notes"]:
        lines.append("Risks: " + "; ".join(view["risk"]["notes"]) + ".")
    lines.append(f"Technical outlook (trend and momentum only): {view['outlook']}.")
    return " ".join(lines)
