"""The parent's check of what a sandboxed run returns: nothing a lying child made up gets stored.

The child is untrusted: with every other layer bypassed, user code could rewrite the engine in
its own process and report fills at impossible prices. So the parent replays the reported fills
against its own copy of the bars and the market rules (ARCHITECTURE.md, "The way of one
backtest", step 4): each fill at its bar's fill price (open or close) moved by the configured
slippage and inside the bar's low..high, on a day the symbol traded, not a buy at limit-up or a
sell at limit-down, in whole lots, never selling more than the sellable shares (T+1), costs as
the rulebook computes them, cash never below zero; then cash and equity on every date, and the
final holdings, must equal what the fills and the closes give. Derived numbers (drawdown,
benchmark, metrics, round trips) are recomputed here rather than believed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from quantdesk.engine.broker import Reason
from quantdesk.engine.data import Bars
from quantdesk.engine.errors import ConfigError
from quantdesk.engine.metrics import closed_round_trips, compute_metrics
from quantdesk.engine.profile import MarketArrays, build_market
from quantdesk.engine.result import frame_records, json_safe
from quantdesk.engine.resume import Resume
from quantdesk.engine.rules import (
    DEFAULT_BENCHMARK,
    RULEBOOK_VERSION,
    Costs,
    Market,
    Rules,
    market_of,
)

FloatArray = npt.NDArray[np.float64]

CONFIG_KEYS = (
    "market",
    "initial_capital",
    "costs",
    "fill",
    "slippage_bps",
    "params",
    "benchmark",
    "rules",
    "risk_free_rate",
    "resume",
)
_LIMIT_TOL = 1e-6  # the engine's "at the limit" tolerance (engine/broker.py)
_PRICE_RTOL = 1e-9  # fill prices are recomputed with the same float operations
_MONEY_RTOL = 1e-9  # cash and equity: a few ulps per fill over thousands of fills


class IntegrityError(Exception):
    """The child's result contradicts the bars, the rules or itself."""


@dataclass(frozen=True, slots=True)
class RunSpec:
    """A run's configuration as the parent asked for it: the trusted side of the comparison."""

    market: Market
    initial_capital: float
    costs: Costs
    rules: Rules
    fill: str
    slippage_bps: float
    benchmark: str | None
    risk_free_rate: float
    params: dict[str, Any] = field(default_factory=dict)
    resume: Resume | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any], bars: Bars) -> RunSpec:
        """Validate a backtest config (STRATEGY_API.md section 5 knobs) against ``bars``.

        Raises
        ------
        ConfigError
            Unknown keys or invalid values, with a message a user understands.
        """
        unknown = sorted(set(config) - set(CONFIG_KEYS))
        if unknown:
            raise ConfigError(f"unknown config keys: {', '.join(unknown)}")
        try:
            market = (
                Market(config["market"])
                if config.get("market") is not None
                else market_of(bars.symbols)
            )
        except ValueError as exc:
            raise ConfigError(f"unknown market {config.get('market')!r}: 'cn_a' or 'us'") from exc
        capital = _config_number(config, "initial_capital", 1_000_000.0)
        if capital <= 0:
            raise ConfigError(f"initial_capital must be a positive number, got {capital!r}")
        slippage = _config_number(config, "slippage_bps", 0.0)
        if not 0 <= slippage < 10_000:
            raise ConfigError(f"slippage_bps must be in [0, 10000), got {slippage!r}")
        fill = config.get("fill", "next_open")
        if fill not in ("next_open", "next_close"):
            raise ConfigError(f"fill must be 'next_open' or 'next_close', got {fill!r}")
        benchmark = config.get("benchmark")
        if benchmark is not None and (
            not isinstance(benchmark, str) or benchmark not in bars.symbols
        ):
            raise ConfigError(f"benchmark {benchmark!r} is not a symbol of the bars")
        params = config.get("params") or {}
        if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
            raise ConfigError("params must be an object with string keys")
        try:
            json.dumps(params, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"params must be JSON: {exc}") from exc
        return cls(
            market=market,
            initial_capital=capital,
            costs=Costs.coerce(config.get("costs")),
            rules=Rules.coerce(config.get("rules")),
            fill=fill,
            slippage_bps=slippage,
            benchmark=benchmark,
            risk_free_rate=_config_number(config, "risk_free_rate", 0.0),
            params=dict(params),
            resume=Resume.coerce(config.get("resume")),
        )

    def engine_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``qe.backtest`` as JSON (what the child receives)."""
        kwargs: dict[str, Any] = {
            "market": str(self.market),
            "initial_capital": self.initial_capital,
            "costs": self.costs.as_dict(),
            "fill": self.fill,
            "slippage_bps": self.slippage_bps,
            "params": self.params,
            "benchmark": self.benchmark,
            "rules": self.rules.as_dict(),
            "risk_free_rate": self.risk_free_rate,
        }
        if self.resume is not None:
            kwargs["resume"] = self.resume.as_dict()
        return kwargs


def _config_number(config: Mapping[str, Any], key: str, default: float) -> float:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value!r}")
    return float(value)


def _expect(condition: bool, reason: str) -> None:
    if not condition:
        raise IntegrityError(reason)


def _number(row: Mapping[str, Any], key: str, where: str) -> float:
    value = row.get(key)
    ok = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
    _expect(ok, f"{where}: {key} is not a finite number")
    return float(value)  # type: ignore[arg-type]


def _close(a: float, b: float, rtol: float, scale: float = 1.0) -> bool:
    return abs(a - b) <= rtol * max(scale, abs(a), abs(b)) + 1e-9


def _floats(values: Any, key: str, n: int) -> FloatArray:
    """A list of ``n`` finite ints or floats as an array."""
    _expect(isinstance(values, list) and len(values) == n, "equity does not have one row per bar")
    _expect(
        all(type(v) is float or type(v) is int for v in values), f"{key}: a value is not a number"
    )
    array = np.array(values, dtype=np.float64)
    _expect(bool(np.isfinite(array).all()), f"{key}: a value is not finite")
    return array


def _equity_columns(equity: Any, dates: list[str]) -> tuple[FloatArray, FloatArray]:
    """Equity and cash per bar, from the child's two columns or from ``to_dict()`` rows."""
    n = len(dates)
    if isinstance(equity, dict):  # the child's form: one list per column, one value per bar
        return _floats(equity.get("equity"), "equity", n), _floats(equity.get("cash"), "cash", n)
    rows = _rows(equity, "equity")
    _expect(len(rows) == n, "equity does not have one row per bar")
    _expect([r.get("date") for r in rows] == dates, "equity dates are not the bars' dates")
    return (
        _floats([r.get("equity") for r in rows], "equity", n),
        _floats([r.get("cash") for r in rows], "cash", n),
    )


def _rows(value: Any, name: str) -> list[dict[str, Any]]:
    _expect(isinstance(value, list), f"{name} is not a list")
    _expect(all(isinstance(r, dict) for r in value), f"{name} has a row that is not an object")
    rows: list[dict[str, Any]] = value
    return rows


def _steps(qty: float, start: float, step: float) -> bool:
    """``qty`` is ``start`` plus a whole number (>= 0) of ``step``."""
    n = (qty - start) / step
    return n >= -1e-9 and abs(n - round(n)) <= 1e-9


def _sell_lot_ok(qty: float, sellable: float, min_lot: float, step: float) -> bool:
    """A sell is everything sellable, a valid lot quantity, or on 100-share boards the odd
    remainder plus whole lots (written here again, not taken from the engine it checks)."""
    if qty == sellable or _steps(qty, min_lot, step):
        return True
    odd = sellable % step if min_lot == step and step > 1 else 0.0
    return odd > 0 and _steps(qty, odd, step)


@dataclass(slots=True)
class _Replay:
    """The portfolio rebuilt from the reported fills alone."""

    cash_after_day: dict[int, float]
    delta: FloatArray  # (T, N) signed shares filled per day
    fill_bar: list[int]


def _iso_dates(bars: Bars) -> list[str]:
    days = bars.dates.to_numpy().astype("datetime64[D]")
    iso: list[str] = np.datetime_as_string(days, unit="D").tolist()
    return iso


def _parse_fills(
    fills: list[dict[str, Any]], dates: list[str], symbols: tuple[str, ...]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_], FloatArray]:
    """Bar, symbol column, buy flag and the numbers (shares, price, costs) of every fill."""
    t_of = {d: t for t, d in enumerate(dates)}
    j_of = {s: j for j, s in enumerate(symbols)}
    bars_, columns, buys = [], [], []
    for i, row in enumerate(fills, start=1):
        where = f"fill {i}"
        t = t_of.get(row.get("date"))  # type: ignore[arg-type]
        j = j_of.get(row.get("symbol"))  # type: ignore[arg-type]
        if t is None:
            raise IntegrityError(f"{where}: date {row.get('date')!r} is not a bar date")
        if j is None:
            raise IntegrityError(f"{where}: symbol {row.get('symbol')!r} is not in the bars")
        side = row.get("side")
        _expect(side in ("buy", "sell"), f"{where}: side {side!r} is not buy or sell")
        bars_.append(t)
        columns.append(j)
        buys.append(side == "buy")
    numbers = np.empty((len(fills), len(_FILL_NUMBERS)))
    for k, name in enumerate(_FILL_NUMBERS):
        values = [row.get(name) for row in fills]
        if not all(type(v) is float or type(v) is int for v in values):  # rare: say which
            for i, row in enumerate(fills, start=1):
                _number(row, name, f"fill {i}")
        numbers[:, k] = values
        if not np.isfinite(numbers[:, k]).all():
            i = int(np.argmin(np.isfinite(numbers[:, k])))
            raise IntegrityError(f"fill {i + 1}: {name} is not a finite number")
    return (
        np.array(bars_, dtype=np.int64),
        np.array(columns, dtype=np.int64),
        np.array(buys, dtype=bool),
        numbers,
    )


_FILL_NUMBERS = (
    "shares",
    "price",
    "commission",
    "min_commission_topup",
    "stamp_duty",
    "transfer_fee",
    "slippage",
)


def _close_v(
    a: FloatArray, b: FloatArray, rtol: float, scale: float = 1.0
) -> npt.NDArray[np.bool_]:
    bound = rtol * np.maximum(np.maximum(np.abs(a), np.abs(b)), scale) + 1e-9
    close: npt.NDArray[np.bool_] = np.abs(a - b) <= bound
    return close


def _steps_v(qty: FloatArray, start: FloatArray, step: FloatArray) -> npt.NDArray[np.bool_]:
    n = (qty - start) / step
    ok: npt.NDArray[np.bool_] = (n >= -1e-9) & (np.abs(n - np.round(n)) <= 1e-9)
    return ok


def _cost_says(name: str, reported: FloatArray, rules: FloatArray) -> Callable[[int], str]:
    return lambda i: f"{name} is {reported[i]:g}, the rules give {rules[i]:g}"


def _start(bars: Bars, spec: RunSpec) -> tuple[int, float, FloatArray]:
    """The first bar that may trade, the cash and the shares a (resumed) run starts from."""
    initial = np.zeros(len(bars.symbols))
    if spec.resume is None:
        return 0, spec.initial_capital, initial
    start = int(bars.dates.searchsorted(pd.Timestamp(spec.resume.trade_from)))
    for symbol, (shares, _) in spec.resume.positions.items():
        if symbol not in bars.symbols:
            raise ConfigError(f"resume names a symbol without bars: {symbol}")
        initial[bars.symbols.index(symbol)] = shares
    return start, spec.resume.cash, initial


def _replay(
    fills: list[dict[str, Any]], bars: Bars, spec: RunSpec, m: MarketArrays, dates: list[str]
) -> _Replay:
    """Check every fill against the bars and rules (vectorised), then replay cash and shares."""
    start, start_cash, start_shares = _start(bars, spec)
    # A resumed run's first bar fills only the orders queued before it.
    queued = {(s, q > 0) for s, q in spec.resume.pending} if spec.resume else set()
    t, j, buy, numbers = _parse_fills(fills, dates, bars.symbols)
    qty, price = numbers[:, 0], numbers[:, 1]
    n = len(t)
    slip = spec.slippage_bps / 10_000.0
    ref = m.fill_price[t, j]
    up, down = m.limit_up[t, j], m.limit_down[t, j]
    low = np.fmin(np.fmin(bars.low[t, j], bars.open[t, j]), bars.close[t, j])
    high = np.fmax(np.fmax(bars.high[t, j], bars.open[t, j]), bars.close[t, j])
    expected = np.where(buy, np.minimum(ref * (1 + slip), up), np.maximum(ref * (1 - slip), down))
    value = qty * expected
    raw = value * m.commission_rate[t]
    min_commission = m.min_commission[t]
    costs = np.stack(
        [
            np.maximum(raw, min_commission),
            np.maximum(min_commission - raw, 0.0),
            value * np.where(buy, m.stamp_duty_buy[t], m.stamp_duty_sell[t]),
            value * m.transfer_fee[t],
            np.abs(ref - expected) * qty,
        ],
        axis=1,
    )
    previous_buy = np.r_[False, buy[:-1] & (t[1:] == t[:-1])] if n else np.zeros(0, bool)
    with np.errstate(invalid="ignore"):
        in_range = (low * (1 - slip) * (1 - _PRICE_RTOL) <= price) & (
            price <= high * (1 + slip) * (1 + _PRICE_RTOL)
        )
        at_limit = np.where(buy, ref >= up - _LIMIT_TOL, ref <= down + _LIMIT_TOL)
    mode = "open" if spec.fill == "next_open" else "close"
    # Checks in the order a fill is judged; the sequential ones (sellable shares, cash) sit
    # between the two groups. Each: failing fills, and the sentence for fill i.
    before: list[tuple[npt.NDArray[np.bool_], Callable[[int], str]]] = [
        (~((qty > 0) & (qty == np.floor(qty))), lambda i: "shares must be a positive integer"),
        (np.r_[False, t[1:] < t[:-1]] if n else buy, lambda i: "fills are not in date order"),
        (t == 0, lambda i: "a fill on the first bar, before any order could be placed"),
        (t < start, lambda i: "a fill before the run's first trading day"),
        (
            (t == start)
            & (start > 0)
            & ~np.array(
                [(fills[i]["symbol"], bool(buy[i])) in queued for i in range(n)], dtype=bool
            ),
            lambda i: "a fill on the first trading day that no queued order asked for",
        ),
        (~m.tradable[t, j], lambda i: "the symbol has no bar or is suspended that day"),
        (
            ~in_range,
            lambda i: f"price outside the bar's range {low[i]:g}..{high[i]:g} (slippage included)",
        ),
        (~buy & previous_buy, lambda i: "a sell after a buy on the same day (T+1)"),
        (
            at_limit,
            lambda i: (
                f"a buy at the limit-up price {up[i]:g}"
                if buy[i]
                else f"a sell at the limit-down price {down[i]:g}"
            ),
        ),
    ]
    after: list[tuple[npt.NDArray[np.bool_], Callable[[int], str]]] = [
        (
            buy & ~_steps_v(qty, m.min_lot[j], m.lot_step[j]),
            lambda i: "not a whole lot of this board",
        ),
        (
            ~_close_v(price, expected, _PRICE_RTOL),
            lambda i: f"the fill price should be {expected[i]:g} (the bar's {mode} with slippage)",
        ),
    ]
    for k, name in enumerate(_FILL_NUMBERS[2:]):
        reported = numbers[:, 2 + k]
        after.append(
            (
                ~_close_v(reported, costs[:, k], _PRICE_RTOL, 1e-6),
                _cost_says(name, reported, costs[:, k]),
            )
        )

    def where(i: int) -> str:
        row = fills[i]
        side = "buy" if buy[i] else "sell"
        return f"fill {i + 1} ({row['date']} {side} {qty[i]:g} {row['symbol']} at {price[i]:g})"

    def first_failure(checks: list[tuple[npt.NDArray[np.bool_], Callable[[int], str]]]) -> int:
        bad = np.zeros(n, dtype=bool)
        for failing, _ in checks:
            bad |= failing
        return int(np.argmax(bad)) if bad.any() else n

    def fail(i: int, checks: list[tuple[npt.NDArray[np.bool_], Callable[[int], str]]]) -> None:
        message = next(say(i) for failing, say in checks if failing[i])
        raise IntegrityError(f"{where(i)}: {message}")

    first_before, first_after = first_failure(before), first_failure(after)
    paid = (costs[:, 0] + costs[:, 2] + costs[:, 3]).tolist()
    signed = np.where(buy, qty, -qty)
    shares, sellable = start_shares.tolist(), start_shares.tolist()
    min_lot, lot_step = m.min_lot.tolist(), m.lot_step.tolist()
    cash, day = start_cash, -1
    cash_after: dict[int, float] = {}
    floor = -_MONEY_RTOL * spec.initial_capital - 1e-6
    for i, (ti, ji, is_buy, q, v) in enumerate(
        zip(t.tolist(), j.tolist(), buy.tolist(), qty.tolist(), value.tolist(), strict=True)
    ):
        if i == first_before:
            fail(i, before)
        if ti != day:
            if day >= 0:
                cash_after[day] = cash
            day = ti
            if m.t_plus_1:
                sellable = list(shares)  # bought before today: sellable today
        if not is_buy:
            held = sellable[ji]
            _expect(q <= held + 1e-9, f"{where(i)}: only {held:g} shares were sellable")
            ok = _sell_lot_ok(q, held, min_lot[ji], lot_step[ji])
            _expect(ok, f"{where(i)}: not a valid lot quantity to sell")
        if i == first_after:
            fail(i, after)
        if is_buy:
            cash -= v + paid[i]
            _expect(
                cash >= floor, f"{where(i)}: costs {v + paid[i]:.2f} but the cash does not cover it"
            )
            shares[ji] += q
            if not m.t_plus_1:
                sellable[ji] += q
        else:
            cash += v - paid[i]
            shares[ji] -= q
            sellable[ji] -= q
    if day >= 0:
        cash_after[day] = cash
    delta = np.zeros(bars.shape)
    np.add.at(delta, (t, j), signed)
    return _Replay(cash_after_day=cash_after, delta=delta, fill_bar=t.tolist())


def _benchmark(bars: Bars, spec: RunSpec) -> FloatArray:
    """The benchmark scaled to the initial capital, as the engine computes it."""
    label = spec.benchmark
    if label is None:
        default = DEFAULT_BENCHMARK[spec.market]
        label = default if default in bars.symbols else None
    if label is None:
        return np.full(len(bars.dates), np.nan)
    prices = pd.Series(bars.close[:, bars.symbols.index(label)]).ffill().to_numpy(np.float64)
    first = np.flatnonzero(np.isfinite(prices))
    if not len(first) or prices[first[0]] <= 0:
        return np.full(len(bars.dates), np.nan)
    scaled: FloatArray = spec.initial_capital * prices / prices[first[0]]
    return scaled


def _check_outputs(result: Mapping[str, Any], dates: list[str], symbols: tuple[str, ...]) -> None:
    """Shapes of the parts not replayed: logs, records, refusals, state."""
    n_dates = len(dates)
    for row in _rows(result.get("logs"), "logs"):
        _expect(
            isinstance(row.get("date"), str) and isinstance(row.get("message"), str),
            "logs: a line without a date and a message",
        )
    records = result.get("records")
    if not isinstance(records, dict):
        raise IntegrityError("records is not an object")
    series = records.get("series")
    if not isinstance(series, dict):
        raise IntegrityError("records.series is not an object")
    _expect(isinstance(records.get("dates"), list), "records.dates is not a list")
    for name, values in series.items():
        _expect(
            isinstance(values, list) and len(values) == len(records["dates"]) <= n_dates,
            f"records: series {name!r} does not have one value per date",
        )
        _expect(
            all(
                v is None or (isinstance(v, int | float) and not isinstance(v, bool))
                for v in values
            ),
            f"records: series {name!r} holds a value that is not a number",
        )
    reasons = {str(r) for r in Reason}
    known_dates, known_symbols = set(dates), set(symbols)
    for row in _rows(result.get("refusals"), "refusals"):
        _expect(row.get("reason") in reasons, f"refusals: unknown reason {row.get('reason')!r}")
        _expect(
            row.get("date") in known_dates
            and row.get("symbol") in known_symbols
            and row.get("side") in ("buy", "sell"),
            "refusals: a row without a bar date, a symbol of the bars and a side",
        )
        _number(row, "requested", "refusals")
        _number(row, "filled", "refusals")
    _expect(isinstance(result.get("state"), dict), "state is not an object")


def verify_result(result: Any, bars: Bars, spec: RunSpec) -> dict[str, Any]:
    """Check a child's result against ``bars`` and ``spec``.

    ``result`` is ``Result.to_dict()``, or the child's compact form of it (``equity`` as two
    columns, ``equity`` and ``cash``, one value per bar; no metrics or round trips).

    Returns
    -------
    dict
        ``Result.to_dict()``'s form, with the equity rows' ``benchmark`` and ``drawdown``,
        ``metrics`` and ``round_trips`` computed by the parent from the verified numbers.

    Raises
    ------
    IntegrityError
        The first contradiction found, as a sentence.
    """
    _expect(isinstance(result, dict), "the result is not an object")
    _expect(result.get("rulebook_version") == RULEBOOK_VERSION, "wrong rulebook version")
    config = result.get("config")
    _expect(isinstance(config, dict), "config is not an object")
    wanted = spec.engine_kwargs()
    for key in ("market", "initial_capital", "fill", "slippage_bps", "risk_free_rate"):
        _expect(config.get(key) == wanted[key], f"config.{key} is not what was asked for")
    child_params = config.get("params")
    _expect(isinstance(child_params, dict), "config.params is not an object")
    for key, value in spec.params.items():
        _expect(child_params.get(key) == value, f"params.{key} is not what was asked for")
    n_bars = len(bars.dates)
    dates = _iso_dates(bars)
    equity, cash = _equity_columns(result.get("equity"), dates)
    _check_outputs(result, dates, bars.symbols)

    m = build_market(bars, spec.market, costs=spec.costs, rules=spec.rules, fill=spec.fill)
    fills = _rows(result.get("fills"), "fills")
    replay = _replay(fills, bars, spec, m, dates)
    expected_cash = np.empty(n_bars)
    _, current, start_shares = _start(bars, spec)
    for t in range(n_bars):
        current = replay.cash_after_day.get(t, current)
        expected_cash[t] = current
    shares = np.cumsum(replay.delta, axis=0) + start_shares
    expected_equity = expected_cash + np.einsum("tn,tn->t", shares, m.mark)
    for name, got, want in (("cash", cash, expected_cash), ("equity", equity, expected_equity)):
        tol = _MONEY_RTOL * np.maximum(spec.initial_capital, np.maximum(abs(got), abs(want)))
        bad = np.flatnonzero(~(np.abs(got - want) <= tol + 1e-9))
        if len(bad):
            t = int(bad[0])
            what = (
                "final value" if name == "equity" and t == n_bars - 1 else f"{name} on {dates[t]}"
            )
            source = "the fills give" if name == "cash" else "positions x closes + cash give"
            raise IntegrityError(f"{what} is {got[t]:.2f}, {source} {want[t]:.2f}")
    columns = np.flatnonzero(shares[-1] > 0)
    held = {bars.symbols[j]: float(shares[-1, j]) for j in columns}
    reported: dict[Any, float] = {}
    for row in _rows(result.get("positions"), "positions"):
        _expect(row.get("symbol") not in reported, "positions: a symbol twice")
        reported[row.get("symbol")] = _number(row, "shares", "positions")
        _expect(row.get("date") == dates[-1], "positions are not the holdings after the last bar")
    _expect(reported == held, "the final positions are not what the fills give")
    out = _recomputed(result, bars, spec, dates, equity, cash, fills, replay.fill_bar)
    out["book"] = _book(result, bars, float(cash[-1]), shares[-1])  # cash: verified above
    out["pending_orders"] = _pending(result, bars, m)
    out["positions"] = [  # closes and values from the parent's bars, not the child's word
        {
            "date": dates[-1],
            "symbol": bars.symbols[j],
            "shares": int(shares[-1, j]),
            "close": float(m.mark[-1, j]),
            "market_value": float(shares[-1, j] * m.mark[-1, j]),
        }
        for j in columns
    ]
    return out


def _book(result: Mapping[str, Any], bars: Bars, cash: float, shares: FloatArray) -> dict[str, Any]:
    """The book after the last bar: cash and shares from the replay; average costs (only what
    the strategy sees of its own positions next time) from the child, checked for sense."""
    book = result.get("book")
    if not isinstance(book, dict):
        raise IntegrityError("book is not an object")
    reported = book.get("positions")
    if not isinstance(reported, dict):
        raise IntegrityError("book.positions is not an object")
    positions: dict[str, dict[str, Any]] = {}
    for j in np.flatnonzero(shares > 0):
        symbol = bars.symbols[j]
        row = reported.get(symbol)
        if not isinstance(row, dict):
            raise IntegrityError(f"book: no position for {symbol}")
        avg_cost = _number(row, "avg_cost", "book")
        _expect(avg_cost >= 0, f"book: a negative average cost for {symbol}")
        positions[symbol] = {"shares": int(shares[j]), "avg_cost": avg_cost}
    _expect(set(reported) == set(positions), "book: positions the fills do not give")
    return {"cash": float(cash), "positions": positions}


def _pending(result: Mapping[str, Any], bars: Bars, m: MarketArrays) -> list[dict[str, Any]]:
    """The orders queued after the last bar: whole shares of the run's symbols, last close."""
    out = []
    for row in _rows(result.get("pending_orders"), "pending_orders"):
        symbol = row.get("symbol")
        _expect(symbol in bars.symbols, "pending_orders: a symbol without bars")
        shares = _number(row, "shares", "pending_orders")
        _expect(shares != 0 and shares == int(shares), "pending_orders: not whole shares")
        j = bars.symbols.index(symbol)
        out.append(
            {"symbol": symbol, "shares": int(shares), "reference_price": float(m.mark[-1, j])}
        )
    return out


def _recomputed(
    result: dict[str, Any],
    bars: Bars,
    spec: RunSpec,
    dates: list[str],
    equity: FloatArray,
    cash: FloatArray,
    fills: list[dict[str, Any]],
    fill_bar: list[int],
) -> dict[str, Any]:
    index = pd.DatetimeIndex(bars.dates, name="date")
    bench = _benchmark(bars, spec)
    peak = np.maximum.accumulate(equity)
    drawdown = np.where(peak > 0, 1.0 - equity / np.where(peak > 0, peak, 1.0), 0.0)
    frame = pd.DataFrame({"equity": equity, "benchmark": bench}, index=index)
    columns = ("commission", "min_commission_topup", "stamp_duty", "transfer_fee", "slippage")
    fills_frame = pd.DataFrame(
        {
            "date": bars.dates[np.array(fill_bar, dtype=np.int64)],
            "symbol": [r["symbol"] for r in fills],
            "side": [r["side"] for r in fills],
            "shares": np.array([r["shares"] for r in fills], dtype=np.int64),
            "price": np.array([r["price"] for r in fills], dtype=np.float64),
            **{c: np.array([r[c] for r in fills], dtype=np.float64) for c in columns},
        }
    )
    bench_series = frame["benchmark"]
    opening = (
        {
            symbol: (shares, avg_cost, spec.resume.trade_from)
            for symbol, (shares, avg_cost) in spec.resume.positions.items()
        }
        if spec.resume
        else {}
    )
    metrics = compute_metrics(
        frame["equity"],
        benchmark=None if bench_series.isna().all() else bench_series,
        fills=fills_frame,
        risk_free_rate=spec.risk_free_rate,
        opening=opening,
    )
    out = dict(result)
    out["equity"] = [
        {"date": day, "equity": e, "cash": c, "benchmark": b, "drawdown": d}
        for day, e, c, b, d in zip(
            dates,
            equity.tolist(),
            cash.tolist(),
            _nullable(bench),
            drawdown.tolist(),
            strict=True,
        )
    ]
    out["metrics"] = {str(k): json_safe(v) for k, v in metrics.items()}
    out["round_trips"] = frame_records(closed_round_trips(fills_frame, opening))
    return out


def _nullable(values: FloatArray) -> list[float | None]:
    """Floats with NaN and infinities as None (JSON null), as the engine writes them."""
    finite = np.isfinite(values)
    return [v if ok else None for v, ok in zip(values.tolist(), finite.tolist(), strict=True)]
