"""Backtest metrics (STRATEGY_API.md section 4) as pure functions, so every report agrees."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import pandas as pd

__all__ = [
    "ROUND_TRIP_COLUMNS",
    "TRADING_DAYS",
    "alpha",
    "annual_return",
    "annual_volatility",
    "benchmark_return",
    "beta",
    "calmar_ratio",
    "closed_round_trips",
    "compute_metrics",
    "daily_returns",
    "daily_risk_free",
    "final_value",
    "information_ratio",
    "json_safe",
    "max_drawdown",
    "max_drawdown_duration",
    "profit_loss_ratio",
    "sharpe_ratio",
    "sortino_ratio",
    "total_return",
    "tracking_error",
    "trades_count",
    "turnover",
    "turnover_of",
    "win_rate",
]

#: Trading days per year: the annualisation factor of every metric (empyrical's DAILY default).
TRADING_DAYS = 252

#: Columns of :func:`closed_round_trips`, in order.
ROUND_TRIP_COLUMNS = (
    "symbol",
    "entry_date",
    "exit_date",
    "shares",
    "entry_price",
    "exit_price",
    "pnl",
    "return_pct",
    "holding_days",
)

# Money costs of a fill that reduce P&L. `slippage` is deliberately absent: it is already inside
# the fill price (STRATEGY_API.md section 2), subtracting it again would count it twice.
_COST_COLUMNS = ("commission", "stamp_duty", "transfer_fee")
_FILL_COLUMNS = ("date", "symbol", "side", "shares", "price")
# Share counts below this are float noise from fractional inputs, not an open lot.
_SHARE_EPS = 1e-9

FloatArray: TypeAlias = npt.NDArray[np.float64]
Values: TypeAlias = "pd.Series[float] | FloatArray | Sequence[float]"
MetricValue: TypeAlias = float | int | None


def _values(x: Values) -> FloatArray:
    if isinstance(x, pd.Series):
        return np.asarray(x.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
    return np.asarray(x, dtype=np.float64)


def _std(x: FloatArray) -> float:
    """Sample standard deviation (ddof=1); exactly 0 when all values are equal.

    The exact zero avoids the ~1e-18 residue of a float mean, which would turn an undefined ratio
    into a huge finite one (the same guard as empyrical's ``_zero_dispersion_std``).
    """
    if x.size < 2:
        return math.nan
    if np.ptp(x) == 0:
        return 0.0
    return float(np.std(x, ddof=1))


def _ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN (undefined) unless the denominator is positive."""
    return numerator / denominator if denominator > 0 else math.nan


def _compound(growth: float, power: float) -> float:
    """growth ** power - 1; NaN when undefined (negative growth) or beyond float range."""
    if not growth >= 0:
        return math.nan
    try:
        return float(growth**power) - 1.0
    except OverflowError:
        return math.nan


def _pairs(returns: Values, benchmark_returns: Values) -> tuple[FloatArray, FloatArray]:
    """The days on which both the strategy's and the benchmark's return are known."""
    r, b = _values(returns), _values(benchmark_returns)
    if r.shape != b.shape:
        raise ValueError(f"returns ({r.size}) and benchmark returns ({b.size}) differ in length")
    known = np.isfinite(r) & np.isfinite(b)
    return r[known], b[known]


def daily_returns(equity: Values) -> FloatArray:
    """Simple daily returns r_t = E_t / E_{t-1} - 1 for t = 1..n (NaN after an equity of 0)."""
    e = _values(equity)
    ratio = np.full(max(e.size - 1, 0), np.nan)
    np.divide(e[1:], e[:-1], out=ratio, where=e[:-1] != 0)
    return ratio - 1.0


def daily_risk_free(risk_free_rate: float) -> float:
    """rf_d = (1 + risk_free_rate)^(1/252) - 1: the daily rate that compounds to the annual one."""
    return float((1.0 + risk_free_rate) ** (1.0 / TRADING_DAYS) - 1.0)


def final_value(equity: Values) -> float:
    """E_n, the last value of the equity curve (NaN if it is empty)."""
    e = _values(equity)
    return float(e[-1]) if e.size else math.nan


def total_return(equity: Values) -> float:
    """E_n / E_0 - 1, a fraction (0.1 = 10%); NaN if empty or E_0 is 0."""
    e = _values(equity)
    return float(e[-1] / e[0] - 1.0) if e.size and e[0] != 0 else math.nan


def annual_return(equity: Values) -> float:
    """Compound annual growth rate.

    ``(E_n / E_0) ** (252 / n) - 1`` with n the number of daily returns (points minus one).
    Equals ``empyrical.annual_return`` (``cagr``) of the n daily returns: empyrical also takes
    ``len(returns) / 252`` years. NaN when n = 0 or E_0 = 0.
    """
    e = _values(equity)
    n = e.size - 1
    if n < 1 or e[0] == 0:
        return math.nan
    return _compound(float(e[-1] / e[0]), TRADING_DAYS / n)


def annual_volatility(returns: Values) -> float:
    """``std(r, ddof=1) * sqrt(252)``, as ``empyrical.annual_volatility``; NaN for n < 2."""
    return _std(_values(returns)) * math.sqrt(TRADING_DAYS)


def sharpe_ratio(returns: Values, risk_free_rate: float = 0.0) -> float:
    """Annualised Sharpe ratio.

    ``mean(r - rf_d) / std(r - rf_d, ddof=1) * sqrt(252)`` with rf_d = :func:`daily_risk_free`.
    As ``empyrical.sharpe_ratio(r, risk_free=rf_d)``, except that zero volatility is NaN here
    where empyrical returns +-inf.
    """
    x = _values(returns) - daily_risk_free(risk_free_rate)
    if x.size < 2:
        return math.nan
    return _ratio(float(np.mean(x)), _std(x)) * math.sqrt(TRADING_DAYS)


def sortino_ratio(returns: Values, risk_free_rate: float = 0.0) -> float:
    """Annualised Sortino ratio.

    ``mean(x) / sqrt(mean(min(x, 0)^2)) * sqrt(252)`` with x = r - rf_d: the downside deviation
    is taken over all days, not just the losing ones (Sortino & Price; as
    ``empyrical.sortino_ratio(r, required_return=rf_d)``). No day below rf_d is NaN here where
    empyrical returns +inf.
    """
    x = _values(returns) - daily_risk_free(risk_free_rate)
    if x.size < 2:
        return math.nan
    downside = math.sqrt(float(np.mean(np.square(np.minimum(x, 0.0)))))
    return _ratio(float(np.mean(x)), downside) * math.sqrt(TRADING_DAYS)


def max_drawdown(equity: Values) -> float:
    """``max_t 1 - E_t / max(E_0..E_t)``, a positive fraction (0.23 = 23%).

    empyrical.max_drawdown returns the same number negated (-0.23).
    """
    e = _values(equity)
    if e.size == 0:
        return math.nan
    peak = np.maximum.accumulate(e)
    ratio = np.ones_like(e)
    np.divide(e, peak, out=ratio, where=peak > 0)
    return float(np.max(1.0 - ratio))


def max_drawdown_duration(equity: Values) -> int:
    """Longest run of consecutive trading days with E_t strictly below max(E_0..E_{t-1}).

    The peak day and the day the previous peak is regained (or exceeded) are not counted; a
    drawdown still open at E_n counts up to E_n. 0 when the curve never falls. empyrical has no
    equivalent (backtesting.py counts calendar time from peak to recovery instead).
    """
    e = _values(equity)
    under = np.concatenate(([False], e < np.maximum.accumulate(e), [False]))
    edges = np.diff(under.astype(np.int8))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return int(np.max(ends - starts)) if starts.size else 0


def calmar_ratio(equity: Values) -> float:
    """``annual_return / max_drawdown``, as ``empyrical.calmar_ratio``; NaN without a drawdown."""
    return _ratio(annual_return(equity), max_drawdown(equity))


def trades_count(fills: pd.DataFrame | None) -> int:
    """Number of fills (each partial execution of an order is one)."""
    return 0 if fills is None else len(fills)


def win_rate(round_trips: pd.DataFrame) -> float:
    """Share of closed round trips with pnl > 0; break-even trips count as not winning.

    NaN when there is no closed round trip.
    """
    pnl = round_trips["pnl"].to_numpy(dtype=np.float64)
    return float(np.mean(pnl > 0)) if pnl.size else math.nan


def profit_loss_ratio(round_trips: pd.DataFrame) -> float:
    """``mean(pnl | pnl > 0) / mean(-pnl | pnl < 0)``: average win over average loss, in money.

    NaN when there is no winning or no losing round trip (either mean is undefined).
    """
    pnl = round_trips["pnl"].to_numpy(dtype=np.float64)
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    if wins.size == 0 or losses.size == 0:
        return math.nan
    return float(np.mean(wins) / -np.mean(losses))


def benchmark_return(benchmark: Values) -> float:
    """B_last / B_first - 1 over the known (non-NaN) benchmark values of the run's dates."""
    b = _values(benchmark)
    b = b[np.isfinite(b)]
    return float(b[-1] / b[0] - 1.0) if b.size and b[0] != 0 else math.nan


def beta(returns: Values, benchmark_returns: Values) -> float:
    """``cov(r, b) / var(b)`` over the days both are known, as ``empyrical.beta``.

    NaN with fewer than 2 such days or a constant benchmark.
    """
    r, b = _pairs(returns, benchmark_returns)
    if b.size < 2 or np.ptp(b) == 0:
        return math.nan
    # Population moments like empyrical.beta_aligned; the ddof cancels in the ratio.
    centred = b - np.mean(b)
    return _ratio(float(np.mean(centred * r)), float(np.mean(np.square(centred))))


def alpha(returns: Values, benchmark_returns: Values, risk_free_rate: float = 0.0) -> float:
    """Annualised Jensen's alpha: ``(1 + mean(r - rf_d - beta (b - rf_d)))^252 - 1``.

    As ``empyrical.alpha(r, b, risk_free=rf_d)``; NaN where :func:`beta` is.
    """
    r, b = _pairs(returns, benchmark_returns)
    slope = beta(r, b)
    if math.isnan(slope):
        return math.nan
    rf = daily_risk_free(risk_free_rate)
    return _compound(1.0 + float(np.mean((r - rf) - slope * (b - rf))), TRADING_DAYS)


def information_ratio(returns: Values, benchmark_returns: Values) -> float:
    """``mean(r - b) / std(r - b, ddof=1) * sqrt(252)``.

    ``empyrical.excess_sharpe`` is the same ratio not annualised (times sqrt(252) here). NaN
    when the active return r - b is constant.
    """
    r, b = _pairs(returns, benchmark_returns)
    active = r - b
    if active.size < 2:
        return math.nan
    return _ratio(float(np.mean(active)), _std(active)) * math.sqrt(TRADING_DAYS)


def tracking_error(returns: Values, benchmark_returns: Values) -> float:
    """``std(r - b, ddof=1) * sqrt(252)``: ``empyrical.annual_volatility(r - b)``."""
    r, b = _pairs(returns, benchmark_returns)
    return annual_volatility(r - b)


def turnover(fills: pd.DataFrame | None, equity: Values) -> float:
    """``sum(|shares * price|) / mean(E_0..E_n) * 252 / n``: traded value per year over equity.

    Buys and sells both count, so selling everything and buying it back once a year is 2.0.
    NaN when n = 0 or mean equity is not positive.
    """
    traded = 0.0
    if fills is not None and len(fills):
        shares = fills["shares"].to_numpy(dtype=np.float64)
        traded = float(np.sum(np.abs(shares * fills["price"].to_numpy(dtype=np.float64))))
    return turnover_of(traded, equity)


def turnover_of(traded_value: float, equity: Values) -> float:
    """:func:`turnover` from the total traded value ``sum(|shares * price|)`` of the fills."""
    e = _values(equity)
    n = e.size - 1
    if n < 1:
        return math.nan
    return _ratio(traded_value, float(np.mean(e))) * TRADING_DAYS / n


@dataclass(slots=True)
class _Lot:
    date: Any
    day: int
    shares: float
    price: float
    cost_per_share: float


def _empty_round_trips() -> pd.DataFrame:
    floats = ("shares", "entry_price", "exit_price", "pnl", "return_pct")
    dtypes = {c: "float64" if c in floats else "object" for c in ROUND_TRIP_COLUMNS}
    dtypes["holding_days"] = "int64"
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in dtypes.items()})


Opening = Mapping[str, tuple[float, float, Any]]
"""Positions held before the first fill (a resumed run): symbol -> (shares, avg cost, date)."""


def closed_round_trips(fills: pd.DataFrame | None, opening: Opening | None = None) -> pd.DataFrame:
    """Match sells to earlier buys first-in first-out per symbol: one row per closed lot slice.

    Parameters
    ----------
    fills : pandas.DataFrame or None
        Columns ``date`` (datetime.date or Timestamp), ``symbol``, ``side`` ("buy" or "sell"),
        ``shares`` (> 0), ``price`` and the money costs ``commission``, ``stamp_duty``,
        ``transfer_fee`` (a missing cost column counts as 0). ``slippage`` is informational and
        ignored: it is already inside ``price``. Fills are taken in date order; fills of one
        date keep their input order (the engine lists sells before buys).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`ROUND_TRIP_COLUMNS`, in the order the slices were closed. A sell that
        spans several buy lots gives one row per lot it consumes; shares still held at the end
        are open and not listed. For a slice of q shares::

            pnl = (exit_price - entry_price) * q
                  - entry_fill_costs * q / entry_fill_shares
                  - exit_fill_costs * q / exit_fill_shares
            return_pct = pnl / (entry_price * q)          # a fraction: 0.05 = 5%
            holding_days = calendar days from entry_date to exit_date

    Raises
    ------
    ValueError
        On a missing column, an unknown side, non-positive shares, or a sell of more shares
        than the open lots hold (positions are long only).
    """
    if fills is None or len(fills) == 0:
        return _empty_round_trips()
    open_lots: dict[Any, deque[_Lot]] = {}
    for symbol, (held, avg_cost, since) in (opening or {}).items():
        # An opening lot carries its average cost as price and no costs of its own.
        day = int(np.datetime64(pd.Timestamp(since).date(), "D").astype(np.int64))
        open_lots[symbol] = deque([_Lot(since, day, float(held), float(avg_cost), 0.0)])
    missing = [c for c in _FILL_COLUMNS if c not in fills.columns]
    if missing:
        raise ValueError(f"fills lack the columns {missing}")
    stamps = pd.to_datetime(fills["date"]).to_numpy()
    order = np.argsort(stamps, kind="stable")
    days = stamps.astype("datetime64[D]").astype(np.int64)[order]
    costs = np.zeros(len(fills))
    for column in _COST_COLUMNS:
        if column in fills.columns:
            costs += fills[column].fillna(0.0).to_numpy(dtype=np.float64)
    dates = fills["date"].to_numpy(dtype=object)[order]
    symbols = fills["symbol"].to_numpy(dtype=object)[order]
    sides = fills["side"].to_numpy(dtype=object)[order]
    shares = fills["shares"].to_numpy(dtype=np.float64)[order]
    prices = fills["price"].to_numpy(dtype=np.float64)[order]
    costs = costs[order]

    rows: list[tuple[Any, ...]] = []
    for date, day, symbol, side, qty, price, cost in zip(
        dates,
        days.tolist(),
        symbols,
        sides,
        shares.tolist(),
        prices.tolist(),
        costs.tolist(),
        strict=True,
    ):
        if not qty > 0:
            raise ValueError(f"fill of {symbol} on {date} has non-positive shares {qty}")
        cost_per_share = cost / qty
        if side == "buy":
            open_lots.setdefault(symbol, deque()).append(
                _Lot(date, day, qty, price, cost_per_share)
            )
            continue
        if side != "sell":
            raise ValueError(f"fill of {symbol} on {date} has unknown side {side!r}")
        lots = open_lots.get(symbol, deque())
        remaining = qty
        while remaining > _SHARE_EPS:
            if not lots:
                raise ValueError(f"sell of {qty} {symbol} on {date} exceeds the open lots")
            lot = lots[0]
            q = min(lot.shares, remaining)
            pnl = (price - lot.price) * q - (lot.cost_per_share + cost_per_share) * q
            basis = lot.price * q
            held = day - lot.day
            rows.append((symbol, lot.date, date, q, lot.price, price, pnl, pnl / basis, held))
            lot.shares -= q
            remaining -= q
            if lot.shares <= _SHARE_EPS:
                lots.popleft()
    if not rows:
        return _empty_round_trips()
    return pd.DataFrame(rows, columns=list(ROUND_TRIP_COLUMNS))


def json_safe(value: Any) -> Any:
    """``value`` with NaN and +-inf replaced by None and numpy scalars made Python ones.

    Recurses into mappings (keys kept) and lists/tuples (returned as lists), so a result
    serialises with ``json.dumps(..., allow_nan=False)``.
    """
    if isinstance(value, Mapping):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


def _aligned_benchmark(equity: pd.Series[float], benchmark: pd.Series[float]) -> FloatArray:
    """Benchmark values on the equity curve's dates (NaN where it has none)."""
    same_dtype = benchmark.index.dtype == equity.index.dtype
    if same_dtype and benchmark.index.equals(equity.index):
        return _values(benchmark)
    try:  # datetime.date and Timestamp labels of the same day must meet.
        target: pd.Index[Any] = pd.DatetimeIndex(pd.to_datetime(equity.index))
        source = pd.Series(_values(benchmark), index=pd.to_datetime(benchmark.index))
    except (TypeError, ValueError):
        target, source = equity.index, benchmark
    return _values(source.reindex(target))


def compute_metrics(
    equity: pd.Series[float],
    *,
    benchmark: pd.Series[float] | None = None,
    fills: pd.DataFrame | None = None,
    risk_free_rate: float = 0.0,
    opening: Opening | None = None,
) -> dict[str, MetricValue]:
    """All metrics of STRATEGY_API.md section 4, JSON-ready.

    Parameters
    ----------
    equity : pandas.Series
        Daily equity E_0..E_n indexed by date; complete (no NaN).
    benchmark : pandas.Series, optional
        Benchmark prices (or values) by date, aligned to ``equity``'s dates (datetime.date and
        Timestamp labels match); its daily returns are b = pct_change. None: the benchmark
        metrics are None.
    fills : pandas.DataFrame, optional
        The run's fills, as for :func:`closed_round_trips`. None means no fills.
    risk_free_rate : float
        Annual risk-free rate (0.02 = 2%), used daily as rf_d = (1 + rate)^(1/252) - 1.
    opening : mapping, optional
        Positions held before the first fill (a resumed paper-trading step), so sells of them
        close round trips: symbol -> (shares, average cost, date).

    Returns
    -------
    dict
        The section-4 keys plus ``round_trips_count``; floats are fractions where a percentage
        is meant, counts are ints, and every undefined value is None (never NaN or inf).
    """
    if len(equity) == 0:
        raise ValueError("the equity curve is empty")
    e = _values(equity)
    r = daily_returns(e)
    trips = closed_round_trips(fills, opening)
    metrics: dict[str, float | int] = {
        "final_value": final_value(e),
        "total_return": total_return(e),
        "annual_return": annual_return(e),
        "annual_volatility": annual_volatility(r),
        "sharpe_ratio": sharpe_ratio(r, risk_free_rate),
        "sortino_ratio": sortino_ratio(r, risk_free_rate),
        "max_drawdown": max_drawdown(e),
        "max_drawdown_duration": max_drawdown_duration(e),
        "calmar_ratio": calmar_ratio(e),
        "trades_count": trades_count(fills),
        "round_trips_count": len(trips),
        "win_rate": win_rate(trips),
        "profit_loss_ratio": profit_loss_ratio(trips),
        "benchmark_return": math.nan,
        "alpha": math.nan,
        "beta": math.nan,
        "information_ratio": math.nan,
        "tracking_error": math.nan,
        "turnover": turnover(fills, e),
    }
    if benchmark is not None:
        bench = _aligned_benchmark(equity, benchmark)
        b = daily_returns(bench)
        metrics["benchmark_return"] = benchmark_return(bench)
        metrics["alpha"] = alpha(r, b, risk_free_rate)
        metrics["beta"] = beta(r, b)
        metrics["information_ratio"] = information_ratio(r, b)
        metrics["tracking_error"] = tracking_error(r, b)
    return {key: json_safe(value) for key, value in metrics.items()}
