"""The bar loop of STRATEGY_API.md section 2, one implementation for both strategy APIs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from quantdesk.engine.broker import Book, Day, Fills, Refusals, execute, no_next_bar
from quantdesk.engine.profile import MarketArrays

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class OrderSource(Protocol):
    """Called after bar ``t`` is marked to market; returns the orders to queue for ``t + 1``."""

    def __call__(self, t: int, book: Book, total_value: float) -> tuple[IntArray, FloatArray]:
        """Orders as symbol columns and signed whole shares, in queue order."""
        ...


@dataclass(frozen=True, slots=True)
class SimOutput:
    """What the loop records: per-bar equity, cash and shares; fills and refusals with bar index."""

    equity: FloatArray  # (T,)
    cash: FloatArray  # (T,)
    shares: FloatArray  # (T, N) after each bar's fills
    avg_cost: FloatArray  # (N,) at the end
    fills: Fills
    fill_bar: IntArray
    refusals: Refusals
    refusal_bar: IntArray


def _day(m: MarketArrays, t: int, slippage: float) -> Day:
    return Day(
        price=m.fill_price[t],
        tradable=m.tradable[t],
        limit_up=m.limit_up[t],
        limit_down=m.limit_down[t],
        min_lot=m.min_lot,
        lot_step=m.lot_step,
        commission_rate=float(m.commission_rate[t]),
        min_commission=float(m.min_commission[t]),
        stamp_duty_buy=float(m.stamp_duty_buy[t]),
        stamp_duty_sell=float(m.stamp_duty_sell[t]),
        transfer_fee=float(m.transfer_fee[t]),
        slippage=slippage,
        t_plus_1=m.t_plus_1,
    )


def simulate(
    m: MarketArrays, *, initial_capital: float, slippage_bps: float, source: OrderSource
) -> SimOutput:
    """Run every bar: unlock T+1 shares, fill yesterday's orders, mark, ask for new orders.

    Parameters
    ----------
    m : MarketArrays
        The run's prices, limits and cost rates.
    initial_capital : float
        Starting cash.
    slippage_bps : float
        Fill prices move against each order by this many basis points.
    source : OrderSource
        Produces each bar's orders (the event API's ``handle_bar`` or the target weights).
    """
    n_bars, n_symbols = m.mark.shape
    book = Book.empty(initial_capital, n_symbols)
    slippage = slippage_bps / 10_000.0
    equity = np.empty(n_bars)
    cash = np.empty(n_bars)
    shares = np.empty((n_bars, n_symbols))
    fills: list[Fills] = []
    fill_bar: list[IntArray] = []
    refusals: list[Refusals] = []
    refusal_bar: list[IntArray] = []
    pending_sym: IntArray = np.empty(0, np.int64)
    pending_qty: FloatArray = np.empty(0)
    for t in range(n_bars):
        if m.t_plus_1:
            book.sellable[:] = book.shares  # 1. shares bought before t become sellable
        if len(pending_sym):  # 2. yesterday's orders fill (or are refused) today
            f, r = execute(book, _day(m, t, slippage), pending_sym, pending_qty)
            if len(f.sym):
                fills.append(f)
                fill_bar.append(np.full(len(f.sym), t, np.int64))
            if len(r.sym):
                refusals.append(r)
                refusal_bar.append(np.full(len(r.sym), t, np.int64))
        total = book.cash + float(np.dot(book.shares, m.mark[t]))  # 3. mark to market
        equity[t] = total
        cash[t] = book.cash
        shares[t] = book.shares
        pending_sym, pending_qty = source(t, book, total)  # 4. new orders
        if t == n_bars - 1 and len(pending_sym):
            r = no_next_bar(pending_sym, pending_qty)
            refusals.append(r)
            refusal_bar.append(np.full(len(r.sym), t, np.int64))
    return SimOutput(
        equity=equity,
        cash=cash,
        shares=shares,
        avg_cost=book.avg_cost.copy(),
        fills=Fills.concat(fills),
        fill_bar=np.concatenate(fill_bar) if fill_bar else np.empty(0, np.int64),
        refusals=Refusals.concat(refusals),
        refusal_bar=np.concatenate(refusal_bar) if refusal_bar else np.empty(0, np.int64),
    )
