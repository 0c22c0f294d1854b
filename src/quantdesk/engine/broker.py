"""Order execution for one bar as pure array functions, shared by the event and vectorized APIs.

STRATEGY_API.md section 2, step 2: orders queued on day t-1 fill on day t at the fill price
(open or close) moved against the order by the slippage, sells before buys; refused or trimmed
orders are returned with their reason. Only the explicit :class:`Book` of one run is mutated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# An open within a micro-yuan of the limit price counts as "at the limit" (float noise only).
_LIMIT_TOL = 1e-6


class Reason(StrEnum):
    """Why an order was refused or trimmed (the ``reason`` column of the refusal ledger)."""

    SUSPENDED = "suspended"  # no bar, zero volume or suspended on the fill day
    LIMIT_UP = "limit_up"  # a buy when the fill price is at the limit-up price
    LIMIT_DOWN = "limit_down"  # a sell when the fill price is at the limit-down price
    T_PLUS_1 = "t_plus_1"  # a sell cut to the sellable shares
    LOT_SIZE = "lot_size"  # a quantity cut to the board's lot rules
    CASH = "cash"  # a buy cut to what the cash pays for, costs included
    NO_NEXT_BAR = "no_next_bar"  # queued on the last bar


REASONS: tuple[Reason, ...] = tuple(Reason)
_CODE = {reason: np.int8(i) for i, reason in enumerate(REASONS)}


@dataclass(slots=True)
class Book:
    """The mutable portfolio of one run (cash and per-symbol arrays); owned by that run only."""

    cash: float
    shares: FloatArray
    sellable: FloatArray
    avg_cost: FloatArray

    @classmethod
    def empty(cls, cash: float, n_symbols: int) -> Book:
        """A book with ``cash`` and no positions."""
        zeros = np.zeros(n_symbols)
        return cls(float(cash), zeros, zeros.copy(), zeros.copy())


@dataclass(frozen=True, slots=True)
class Day:
    """The market of one fill day: row views of the run's arrays plus that day's cost rates."""

    price: FloatArray
    tradable: BoolArray
    limit_up: FloatArray
    limit_down: FloatArray
    min_lot: FloatArray
    lot_step: FloatArray
    commission_rate: float
    min_commission: float
    stamp_duty_buy: float
    stamp_duty_sell: float
    transfer_fee: float
    slippage: float  # fraction, bps / 10_000
    t_plus_1: bool


class Fills(NamedTuple):
    """Fills of one or more bars as parallel arrays (``side`` +1 buy, -1 sell)."""

    sym: IntArray
    side: npt.NDArray[np.int8]
    shares: FloatArray
    price: FloatArray
    commission: FloatArray
    min_commission_topup: FloatArray
    stamp_duty: FloatArray
    transfer_fee: FloatArray
    slippage: FloatArray

    @classmethod
    def concat(cls, parts: list[Fills]) -> Fills:
        """Join batches, keeping their order."""
        if not parts:
            empty: list[Any] = [np.empty(0, dtype=d) for d in _FILL_DTYPES]
            return cls(*empty)
        joined: list[Any] = [np.concatenate(cols) for cols in zip(*parts, strict=True)]
        return cls(*joined)


class Refusals(NamedTuple):
    """Refused or trimmed orders as parallel arrays; ``reason`` indexes :data:`REASONS`."""

    sym: IntArray
    side: npt.NDArray[np.int8]
    requested: FloatArray
    filled: FloatArray
    reason: npt.NDArray[np.int8]

    @classmethod
    def concat(cls, parts: list[Refusals]) -> Refusals:
        """Join batches, keeping their order."""
        if not parts:
            empty: list[Any] = [np.empty(0, dtype=d) for d in _REFUSAL_DTYPES]
            return cls(*empty)
        joined: list[Any] = [np.concatenate(cols) for cols in zip(*parts, strict=True)]
        return cls(*joined)


_FILL_DTYPES = (np.int64, np.int8, *([np.float64] * 7))
_REFUSAL_DTYPES = (np.int64, np.int8, np.float64, np.float64, np.int8)


def lot_floor(qty: FloatArray, min_lot: FloatArray, step: FloatArray) -> FloatArray:
    """The largest valid buy quantity <= ``qty``: 0 below ``min_lot``, then ``step`` increments."""
    steps = np.floor((qty - min_lot) / step + 1e-9)
    return np.where(qty < min_lot, 0.0, min_lot + steps * step)


def sell_quantity(
    qty: FloatArray, sellable: FloatArray, min_lot: FloatArray, step: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Sell quantities after the sellable cut and the lot rules: ``(cut, final)``.

    Selling all sellable shares is always valid (the odd remainder goes in one order). Below
    that a sell must be a valid lot quantity, or, on boards with 100-share lots, the whole odd
    remainder plus whole lots (SSE/SZSE Trading Rules art. 3.3.5).
    """
    cut = np.minimum(qty, sellable)
    lots = lot_floor(cut, min_lot, step)
    odd = np.where((min_lot == step) & (step > 1), np.mod(sellable, step), 0.0)
    with_odd = np.where(
        (odd > 0) & (cut >= odd), odd + np.floor((cut - odd) / step + 1e-9) * step, 0.0
    )
    final = np.where(cut >= sellable, sellable, np.maximum(lots, with_odd))
    return cut, final


def buy_total(value: FloatArray | float, day: Day) -> FloatArray:
    """Cash a buy of ``value`` costs, with commission (and its minimum), stamp duty, fee."""
    v = np.asarray(value, dtype=np.float64)
    commission = np.maximum(v * day.commission_rate, day.min_commission)
    total = v + commission + v * day.stamp_duty_buy + v * day.transfer_fee
    return np.where(v > 0, total, 0.0)


def _affordable(cash: float, price: float, min_lot: float, step: float, day: Day) -> float:
    """The largest valid buy quantity at ``price`` whose total cost is <= ``cash``."""
    rate = day.commission_rate
    other = day.stamp_duty_buy + day.transfer_fee
    if cash <= day.min_commission:
        return 0.0
    value = cash / (1.0 + rate + other)  # commission above its minimum
    if value * rate < day.min_commission:
        value = (cash - day.min_commission) / (1.0 + other)  # minimum commission binds
    qty = float(
        lot_floor(np.array([math.floor(value / price)]), np.array([min_lot]), np.array([step]))[0]
    )
    while qty > 0 and float(buy_total(qty * price, day)) > cash:
        qty = qty - step if qty - step >= min_lot else 0.0
    return qty


def _costs(value: FloatArray, day: Day, stamp_rate: float) -> tuple[FloatArray, ...]:
    raw = value * day.commission_rate
    commission = np.where(value > 0, np.maximum(raw, day.min_commission), 0.0)
    topup = np.where(value > 0, np.maximum(day.min_commission - raw, 0.0), 0.0)
    return commission, topup, value * stamp_rate, value * day.transfer_fee


def _refused(
    sym: IntArray,
    side: int,
    requested: FloatArray,
    filled: FloatArray,
    reason: npt.NDArray[np.int8],
) -> Refusals:
    keep = filled < requested
    n = int(keep.sum())
    return Refusals(
        sym[keep], np.full(n, side, np.int8), requested[keep], filled[keep], reason[keep]
    )


def _sells(book: Book, day: Day, sym: IntArray, req: FloatArray) -> tuple[Fills, Refusals]:
    ref = day.price[sym]
    ok = day.tradable[sym]
    at_limit = ok & (ref <= day.limit_down[sym] + _LIMIT_TOL)
    cut, final = sell_quantity(req, book.sellable[sym], day.min_lot[sym], day.lot_step[sym])
    qty = np.where(ok & ~at_limit, final, 0.0)
    reason = np.select(
        [~ok, at_limit, final < cut],
        [_CODE[Reason.SUSPENDED], _CODE[Reason.LIMIT_DOWN], _CODE[Reason.LOT_SIZE]],
        _CODE[Reason.T_PLUS_1],
    ).astype(np.int8)
    refusals = _refused(sym, -1, req, qty, reason)
    done = qty > 0
    s, q = sym[done], qty[done]
    price = np.maximum(ref[done] * (1.0 - day.slippage), day.limit_down[s])
    value = q * price
    commission, topup, stamp, fee = _costs(value, day, day.stamp_duty_sell)
    book.cash = book.cash + float(np.sum(value - commission - stamp - fee))
    np.subtract.at(book.shares, s, q)
    np.subtract.at(book.sellable, s, q)
    book.avg_cost[s] = np.where(book.shares[s] > 0, book.avg_cost[s], 0.0)
    slip = np.abs(ref[done] - price) * q
    n = len(s)
    fills = Fills(s, np.full(n, -1, np.int8), q, price, commission, topup, stamp, fee, slip)
    return fills, refusals


def _buys(book: Book, day: Day, sym: IntArray, req: FloatArray) -> tuple[Fills, Refusals]:
    ref = day.price[sym]
    ok = day.tradable[sym]
    at_limit = ok & (ref >= day.limit_up[sym] - _LIMIT_TOL)
    price = np.minimum(ref * (1.0 + day.slippage), day.limit_up[sym])
    min_lot, step = day.min_lot[sym], day.lot_step[sym]
    lots = lot_floor(req, min_lot, step)
    eligible = ok & ~at_limit & (lots > 0)
    cost = np.where(eligible, buy_total(lots * price, day), 0.0)
    qty = np.zeros(len(sym))
    cash = book.cash
    order = np.flatnonzero(eligible)
    i = 0
    while i < len(order):
        seg = order[i:]
        cum = np.cumsum(cost[seg])
        k = int(np.searchsorted(cum, cash, side="right"))
        if k:
            qty[seg[:k]] = lots[seg[:k]]
            cash = max(cash - float(cum[k - 1]), 0.0)
        if k == len(seg):
            break
        j = int(seg[k])  # the first order cash does not fully pay for: cut it
        affordable = _affordable(cash, float(price[j]), float(min_lot[j]), float(step[j]), day)
        qty[j] = min(affordable, float(lots[j]))
        cash = max(cash - float(buy_total(qty[j] * price[j], day)), 0.0)
        rest = seg[k + 1 :]
        fits = np.flatnonzero(buy_total(min_lot[rest] * price[rest], day) <= cash)
        if not len(fits):
            break
        i += k + 1 + int(fits[0])  # orders that cannot pay for one lot are skipped at once
    book.cash = cash
    reason = np.select(
        [~ok, at_limit, lots <= 0, qty < lots],
        [
            _CODE[Reason.SUSPENDED],
            _CODE[Reason.LIMIT_UP],
            _CODE[Reason.LOT_SIZE],
            _CODE[Reason.CASH],
        ],
        _CODE[Reason.LOT_SIZE],
    ).astype(np.int8)
    refusals = _refused(sym, 1, req, qty, reason)
    done = qty > 0
    s, q, p = sym[done], qty[done], price[done]
    value = q * p
    commission, topup, stamp, fee = _costs(value, day, day.stamp_duty_buy)
    basis = book.avg_cost * book.shares
    np.add.at(basis, s, value)
    np.add.at(book.shares, s, q)
    if not day.t_plus_1:
        np.add.at(book.sellable, s, q)
    held = book.shares[s]
    book.avg_cost[s] = np.where(held > 0, basis[s] / np.where(held > 0, held, 1.0), 0.0)
    slip = (p - ref[done]) * q
    n = len(s)
    fills = Fills(s, np.full(n, 1, np.int8), q, p, commission, topup, stamp, fee, slip)
    return fills, refusals


def execute(book: Book, day: Day, sym: IntArray, qty: FloatArray) -> tuple[Fills, Refusals]:
    """Fill one bar's orders: sells first (in queue order), then buys (in queue order).

    Parameters
    ----------
    book : Book
        The run's portfolio; updated in place (cash, shares, sellable, average cost).
    day : Day
        The fill day's prices, limits, lot rules and cost rates.
    sym, qty : ndarray
        Orders in queue order: symbol column and signed whole shares (+ buy, - sell).

    Returns
    -------
    (Fills, Refusals)
        Sell fills then buy fills; every order that filled less than requested, with reason.
    """
    sells, buys = qty < 0, qty > 0
    s_sym, s_req = sym[sells], -qty[sells]
    if len(np.unique(s_sym)) == len(s_sym):
        sell_parts = [_sells(book, day, s_sym, s_req)]
    else:  # the same symbol twice: its sells depend on each other, so go one by one
        sell_parts = [
            _sells(book, day, s_sym[i : i + 1], s_req[i : i + 1]) for i in range(len(s_sym))
        ]
    buy_fills, buy_refusals = _buys(book, day, sym[buys], qty[buys])
    fills = Fills.concat([*(f for f, _ in sell_parts), buy_fills])
    refusals = Refusals.concat([*(r for _, r in sell_parts), buy_refusals])
    return fills, refusals


def no_next_bar(sym: IntArray, qty: FloatArray) -> Refusals:
    """Orders queued on the last bar: all refused with ``no_next_bar``."""
    n = len(sym)
    return Refusals(
        sym.astype(np.int64),
        np.where(qty > 0, 1, -1).astype(np.int8),
        np.abs(qty),
        np.zeros(n),
        np.full(n, _CODE[Reason.NO_NEXT_BAR], np.int8),
    )
