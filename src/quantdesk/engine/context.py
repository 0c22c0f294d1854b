"""The event API's ``ctx`` and ``data``: read-only views of one run that cannot see the future."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from quantdesk.engine.broker import Book
from quantdesk.engine.data import PRICE_FIELDS, Bars
from quantdesk.engine.errors import StrategyError
from quantdesk.engine.profile import MarketArrays

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_EMPTY_SYM: IntArray = np.empty(0, np.int64)
_EMPTY_QTY: FloatArray = np.empty(0)
_EMPTY_SYM.setflags(write=False)
_EMPTY_QTY.setflags(write=False)


@dataclass(frozen=True, slots=True)
class LogLimits:
    """Caps on a run's log: lines and total UTF-8 bytes; beyond them one marker line is kept."""

    max_lines: int = 10_000
    max_bytes: int = 1_000_000


@dataclass(frozen=True, slots=True)
class Position:
    """One holding as the strategy sees it after the current bar's close."""

    shares: float
    sellable: float
    avg_cost: float
    market_value: float


@dataclass(slots=True)
class Session:
    """The per-run state behind ``ctx`` and ``data`` (one object per run, never shared)."""

    bars: Bars
    market: MarketArrays
    params: Mapping[str, Any]
    universe: list[str]
    index: dict[str, int]
    limits: LogLimits
    book: Book
    t: int = 0
    value_t: int = -1  # the bar whose value is in value_cache (-1: none)
    value_cache: float = 0.0
    date_cache: list[date] = field(default_factory=list)
    in_initialize: bool = False
    queue_sym: list[int] = field(default_factory=list)
    queue_qty: list[float] = field(default_factory=list)
    pending: dict[int, float] = field(default_factory=dict)
    logs: list[tuple[str, str]] = field(default_factory=list)
    log_bytes: int = 0
    log_truncated: bool = False
    records: dict[str, FloatArray] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def dates(self) -> list[date]:
        """The bar dates as ``datetime.date`` (built on first use)."""
        if not self.date_cache:
            self.date_cache.extend(self.bars.dates.date.tolist())
        return self.date_cache

    def total_value(self) -> float:
        """Cash plus positions at the current bar's close (computed once per bar)."""
        if self.value_t != self.t:
            mark = self.market.mark[self.t]
            self.value_cache = portfolio_value(self.book.cash, self.book.shares, mark)
            self.value_t = self.t
        return self.value_cache

    def column(self, symbol: str) -> int:
        """The array column of ``symbol``; unknown symbols are a strategy error."""
        try:
            return self.index[symbol]
        except (KeyError, TypeError):
            raise StrategyError(f"unknown symbol {symbol!r}: not in this run's bars") from None

    def take_orders(self) -> tuple[IntArray, FloatArray]:
        """The orders queued since the last call, in queue order; the queue is emptied."""
        if not self.queue_sym:
            return _EMPTY_SYM, _EMPTY_QTY
        sym = np.array(self.queue_sym, dtype=np.int64)
        qty = np.array(self.queue_qty, dtype=np.float64)
        self.queue_sym.clear()
        self.queue_qty.clear()
        self.pending.clear()
        return sym, qty


class Positions(Mapping[str, Position]):
    """Mapping symbol -> :class:`Position` of the symbols held (shares > 0)."""

    __slots__ = ("_session",)

    def __init__(self, session: Session) -> None:
        self._session = session

    def _held(self) -> IntArray:
        return np.flatnonzero(self._session.book.shares > 0)

    def __getitem__(self, symbol: str) -> Position:
        s = self._session
        j = s.index.get(symbol, -1) if isinstance(symbol, str) else -1
        if j < 0 or s.book.shares[j] <= 0:
            raise KeyError(symbol)
        shares = float(s.book.shares[j])
        return Position(
            shares=shares,
            sellable=float(s.book.sellable[j]),
            avg_cost=float(s.book.avg_cost[j]),
            market_value=shares * float(s.market.mark[s.t, j]),
        )

    def __iter__(self) -> Iterator[str]:
        symbols = self._session.bars.symbols
        return iter([symbols[j] for j in self._held()])

    def __len__(self) -> int:
        return len(self._held())


class Context:
    """``ctx``: the strategy's read-only view of its run, and the only way to place orders."""

    __slots__ = ("_s",)

    def __init__(self, session: Session) -> None:
        self._s = session

    @property
    def params(self) -> Mapping[str, Any]:
        """``PARAMS`` merged with the run's params (read-only)."""
        return self._s.params

    @property
    def universe(self) -> list[str]:
        """The run's symbols (a copy); ``initialize`` may assign a subset."""
        return list(self._s.universe)

    @universe.setter
    def universe(self, symbols: list[str]) -> None:
        if not self._s.in_initialize:
            raise StrategyError("ctx.universe can only be changed in initialize")
        chosen = [str(s) for s in symbols]
        for symbol in chosen:
            self._s.column(symbol)
        self._s.universe = list(dict.fromkeys(chosen))

    @property
    def now(self) -> date:
        """The date of the current bar."""
        return self._s.dates[self._s.t]

    @property
    def cash(self) -> float:
        """Cash after the current bar's close."""
        return self._s.book.cash

    @property
    def total_value(self) -> float:
        """Cash plus positions at the current bar's close."""
        return self._s.total_value()

    @property
    def positions(self) -> Mapping[str, Position]:
        """Mapping symbol -> position (shares, sellable, avg_cost, market_value) of holdings."""
        return Positions(self._s)

    @property
    def state(self) -> dict[str, Any]:
        """The strategy's own JSON-serialisable dict, kept across bars."""
        return self._s.state

    # --- orders -------------------------------------------------------------------------
    def order(self, symbol: str, shares: float) -> int | None:
        """Queue a buy (+) or sell (-) of whole ``shares`` (truncated toward zero).

        Returns the queued signed share count, or None when it rounds to zero.
        """
        self._check_not_initializing()
        j = self._s.column(symbol)
        qty = _whole(shares, "shares")
        if qty == 0:
            return None
        self._s.queue_sym.append(j)
        self._s.queue_qty.append(float(qty))
        self._s.pending[j] = self._s.pending.get(j, 0.0) + qty
        return qty

    def order_value(self, symbol: str, value: float) -> int | None:
        """Queue a buy (+) or sell (-) of ``value`` in money at the current close."""
        price = self._price(symbol)
        if price is None:
            return None
        return self.order(symbol, math.trunc(_finite(value, "value") / price))

    def order_target(self, symbol: str, shares: float) -> int | None:
        """Queue what moves the position (including orders queued today) to ``shares``."""
        target = _whole(shares, "shares")
        if target < 0:
            raise StrategyError("short positions are not supported: target shares must be >= 0")
        j = self._s.column(symbol)
        current = float(self._s.book.shares[j]) + self._s.pending.get(j, 0.0)
        return self.order(symbol, target - current)

    def order_target_value(self, symbol: str, value: float) -> int | None:
        """Queue what moves the position to a market value of ``value`` at the current close."""
        value = _finite(value, "value")
        if value < 0:
            raise StrategyError("short positions are not supported: target value must be >= 0")
        price = self._price(symbol)
        if price is None:
            return None
        return self.order_target(symbol, math.floor(value / price))

    def order_target_percent(self, symbol: str, fraction: float) -> int | None:
        """Queue what moves the position to ``fraction`` of total value (0.5 = 50%)."""
        fraction = _finite(fraction, "fraction")
        if fraction < 0:
            raise StrategyError("short positions are not supported: fraction must be >= 0")
        price = self._price(symbol)
        if price is None:
            return None
        return self.order_target(symbol, math.floor(fraction * self._s.total_value() / price))

    # --- output ---------------------------------------------------------------------------
    def log(self, *args: object) -> None:
        """Add a line to the run's log (capped in lines and bytes; the rest is dropped)."""
        s = self._s
        if s.log_truncated:
            return
        text = " ".join(str(a) for a in args)
        size = len(text.encode("utf-8", "replace")) + 1
        if len(s.logs) >= s.limits.max_lines or s.log_bytes + size > s.limits.max_bytes:
            s.log_truncated = True
            s.logs.append((self._stamp(), "[log truncated: limit reached]"))
            return
        s.log_bytes += size
        s.logs.append((self._stamp(), text))

    def record(self, **values: float) -> None:
        """Record named numeric values for the current bar (plotted in the report)."""
        s = self._s
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, int | float | np.number):
                raise StrategyError(
                    f"record({name}=...) needs a number, got {type(value).__name__}"
                )
            series = s.records.get(name)
            if series is None:
                series = s.records[name] = np.full(len(s.bars.dates), np.nan)
            series[s.t] = float(value)

    # --- helpers --------------------------------------------------------------------------
    def _stamp(self) -> str:
        return "initialize" if self._s.in_initialize else self._s.dates[self._s.t].isoformat()

    def _check_not_initializing(self) -> None:
        if self._s.in_initialize:
            raise StrategyError("orders cannot be placed in initialize (there is no bar yet)")

    def _price(self, symbol: str) -> float | None:
        j = self._s.column(symbol)
        price = float(self._s.market.mark[self._s.t, j])
        return price if price > 0 else None  # no bar yet: nothing to size the order with

    def __repr__(self) -> str:
        return f"<ctx {self._stamp()} cash={self.cash:.2f} total_value={self.total_value:.2f}>"


class BarData:
    """``data`` of the event API: history up to and including the current bar, never later."""

    __slots__ = ("_fields", "_s")

    def __init__(self, session: Session) -> None:
        self._s = session
        self._fields: dict[str, FloatArray] = {
            name: getattr(session.bars, name) for name in PRICE_FIELDS
        }

    def _field(self, name: str) -> FloatArray:
        array = self._fields.get(name) if isinstance(name, str) else None
        if array is None:
            raise StrategyError(f"unknown field {name!r}: one of {', '.join(PRICE_FIELDS)}")
        return array

    def history(self, symbol: str, field: str, n: int) -> FloatArray:
        """The last ``n`` values of ``field`` up to the current bar (fewer at the start).

        A float64 array of its own; NaN where the symbol had no bar on a date. A copy, not a
        view: a view's ``.base`` would be the whole array, future rows included.
        """
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
            raise StrategyError(f"history needs a positive integer n, got {n!r}")
        j = self._s.column(symbol)
        t = self._s.t
        return self._field(field)[max(0, t - int(n) + 1) : t + 1, j].copy()

    def current(self, symbol: str, field: str) -> float:
        """The current bar's value of ``field`` (NaN when the symbol has no bar today)."""
        s = self._s
        try:  # the common case in two dict lookups; errors take the checked path below
            return float(self._fields[field][s.t, s.index[symbol]])
        except (KeyError, TypeError):
            return float(self._field(field)[s.t, s.column(symbol)])

    def can_trade(self, symbol: str) -> bool:
        """The symbol has a bar today with volume > 0 and is not suspended."""
        return not bool(self._s.bars.suspended[self._s.t, self._s.column(symbol)])


def portfolio_value(cash: float, shares: FloatArray, mark: FloatArray) -> float:
    """``cash + sum_j shares[j] * mark[j]`` summed in column order over the held symbols.

    The same sum as :func:`kernels.portfolio_value` (zero holdings add nothing), in Python floats.
    """
    held = np.flatnonzero(shares)
    total = 0.0
    for s, m in zip(shares[held].tolist(), mark[held].tolist(), strict=True):
        total += s * m
    return cash + total


def _finite(value: float, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise StrategyError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise StrategyError(f"{name} must be finite, got {value!r}")
    return number


def _whole(value: float, name: str) -> int:
    return math.trunc(_finite(value, name))


def make_session(
    bars: Bars,
    market: MarketArrays,
    *,
    params: Mapping[str, Any],
    book: Book,
    limits: LogLimits,
) -> Session:
    """A fresh session for one run."""
    return Session(
        bars=bars,
        market=market,
        params=MappingProxyType(dict(params)),
        universe=list(bars.symbols),
        index={s: j for j, s in enumerate(bars.symbols)},
        limits=limits,
        book=book,
    )


EventHook = Callable[[Context, BarData], object]
