"""The bar loop of STRATEGY_API.md section 2 for both strategy APIs, over the kernels.

The event API calls back into Python after every bar, so its loop is Python and only the fills
go to :func:`kernels.fill_orders`. Target weights are known up front, so their whole run is one
:func:`kernels.run_weights` call. Both kernels run as plain Python or numba-compiled
(:mod:`quantdesk.engine.accel`) with the same results.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from quantdesk.engine import kernels as kn
from quantdesk.engine.accel import Kernels
from quantdesk.engine.broker import Book, Fills, Refusals
from quantdesk.engine.profile import MarketArrays

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
_T = TypeVar("_T", bound=np.generic)

#: Called after bar ``t`` is marked to market; returns the orders to fill on bar ``t + 1`` as
#: symbol columns and signed whole shares, in queue order.
OrderStep = Callable[[int], tuple[IntArray, FloatArray]]


@dataclass(frozen=True, slots=True)
class SimOutput:
    """What the loop records: per-bar equity, cash and shares; fills and refusals with bar index."""

    equity: FloatArray  # (T,)
    cash: FloatArray  # (T,)
    shares: FloatArray  # (T, N) after each bar's fills
    fills: Fills
    fill_bar: IntArray
    refusals: Refusals
    refusal_bar: IntArray
    # Orders queued after the last bar (also refused `no_next_bar`): a paper step's signals.
    pending_sym: IntArray = field(default_factory=lambda: np.empty(0, np.int64))
    pending_qty: FloatArray = field(default_factory=lambda: np.empty(0))
    # Average cost per share after the last bar (the kernels keep it with the shares).
    avg_cost: FloatArray = field(default_factory=lambda: np.empty(0))


class Records:
    """Growable buffers of fill and refusal rows in the kernels' layout."""

    __slots__ = ("fill_f", "fill_i", "nf", "nr", "ref_f", "ref_i")

    def __init__(self, capacity: int) -> None:
        capacity = max(int(capacity), 16)
        self.fill_i = np.zeros((capacity, kn.FILL_INTS), np.int64)
        self.fill_f = np.zeros((capacity, kn.FILL_FLOATS))
        self.ref_i = np.zeros((capacity, kn.REFUSAL_INTS), np.int64)
        self.ref_f = np.zeros((capacity, kn.REFUSAL_FLOATS))
        self.nf = 0
        self.nr = 0

    def reserve(self, fills: int, refusals: int) -> None:
        """Make room for ``fills`` more fill rows and ``refusals`` more refusal rows."""
        if self.nf + fills > len(self.fill_i):
            size = max(2 * len(self.fill_i), self.nf + fills)
            self.fill_i = _grown(self.fill_i, size)
            self.fill_f = _grown(self.fill_f, size)
        if self.nr + refusals > len(self.ref_i):
            size = max(2 * len(self.ref_i), self.nr + refusals)
            self.ref_i = _grown(self.ref_i, size)
            self.ref_f = _grown(self.ref_f, size)

    def fills(self) -> tuple[Fills, IntArray]:
        """The fills so far as parallel arrays, and the bar of each."""
        i, f = self.fill_i[: self.nf], self.fill_f[: self.nf]
        columns = [f[:, c].copy() for c in range(kn.FILL_FLOATS)]
        fills = Fills(i[:, 1].copy(), i[:, 2].astype(np.int8), *columns)
        return fills, i[:, 0].copy()

    def refusals(self) -> tuple[Refusals, IntArray]:
        """The refusals so far as parallel arrays, and the bar of each."""
        i, f = self.ref_i[: self.nr], self.ref_f[: self.nr]
        refusals = Refusals(
            i[:, 1].copy(),
            i[:, 2].astype(np.int8),
            f[:, 0].copy(),
            f[:, 1].copy(),
            i[:, 3].astype(np.int8),
        )
        return refusals, i[:, 0].copy()


def _grown(array: npt.NDArray[_T], rows: int) -> npt.NDArray[_T]:
    out: npt.NDArray[_T] = np.zeros((rows, array.shape[1]), dtype=array.dtype)
    out[: len(array)] = array
    return out


def _output(
    equity: FloatArray, cash: FloatArray, shares: FloatArray, records: Records
) -> SimOutput:
    fills, fill_bar = records.fills()
    refusals, refusal_bar = records.refusals()
    return SimOutput(equity, cash, shares, fills, fill_bar, refusals, refusal_bar)


def held_value(shares: FloatArray, mark: FloatArray) -> FloatArray:
    """``sum_j shares[t, j] * mark[t, j]`` for every bar, summed in column order.

    The same sums as :func:`kernels.portfolio_value`, bar by bar, to the last bit.
    """
    total = np.zeros(shares.shape[0])
    for j in np.flatnonzero(shares.any(axis=0)):
        total += shares[:, j] * mark[:, j]
    return total


def simulate_events(
    m: MarketArrays,
    k: Kernels,
    *,
    book: Book,
    slippage_bps: float,
    step: OrderStep,
    start: int = 0,
    pending: tuple[IntArray, FloatArray] | None = None,
) -> SimOutput:
    """Run every bar: unlock T+1 shares, fill yesterday's orders, mark, ask ``step`` for orders.

    Parameters
    ----------
    m : MarketArrays
        The run's prices, limits and cost rates.
    k : Kernels
        Plain or compiled kernels.
    book : Book
        The run's portfolio (the one ``ctx`` sees), starting with the initial cash.
    slippage_bps : float
        Fill prices move against each order by this many basis points.
    step : callable
        ``step(t)`` runs the strategy after bar ``t`` and returns its orders.
    start : int
        The first bar that trades (a resumed paper run): earlier bars are history only, with
        the book as given and no call to ``step``.
    pending : (symbols, shares), optional
        Orders queued before ``start`` (a resumed run's last signals); they fill on ``start``.
    """
    n_bars, n_symbols = m.mark.shape
    slippage = slippage_bps / 10_000.0
    records = Records(64)
    seen = np.full(n_symbols, -1, np.int64)
    cash = np.empty(n_bars)
    snapshots: list[FloatArray] = [book.shares.copy()]
    snapshot_bars: list[int] = [-1]
    pending_sym, pending_qty = step_orders_none()
    unlock = False
    for t in range(n_bars):
        if t < start:  # history only: nothing trades, the book stands
            cash[t] = book.cash
            continue
        if t == start and pending is not None:
            pending_sym, pending_qty = pending
        if unlock:  # 1. shares bought before t become sellable
            book.sellable[:] = book.shares
            unlock = False
        n = len(pending_sym)
        if n:  # 2. yesterday's orders fill (or are refused) today
            records.reserve(n, n)
            book.cash, records.nf, records.nr = k.fill_orders(
                t, pending_sym, pending_qty, n, book.cash, book.shares, book.sellable,
                book.avg_cost, m.fill_price, m.tradable, m.prev_close, m.limit_pct, m.min_lot,
                m.lot_step, m.rates, slippage, m.t_plus_1, seen, np.empty(n), records.fill_i,
                records.fill_f, records.nf, records.ref_i, records.ref_f, records.nr,
            )  # fmt: skip
            snapshots.append(book.shares.copy())
            snapshot_bars.append(t)
            unlock = m.t_plus_1
        cash[t] = book.cash  # 3. marked to market after the loop, from cash and shares
        pending_sym, pending_qty = step(t)  # 4. new orders
    if len(pending_sym):
        n = len(pending_sym)
        records.reserve(0, n)
        records.nr = kn.refuse_all(
            n_bars - 1, pending_sym, pending_qty, n, kn.NO_NEXT_BAR, records.ref_i,
            records.ref_f, records.nr,
        )  # fmt: skip
    which = np.searchsorted(np.array(snapshot_bars), np.arange(n_bars), side="right") - 1
    shares = np.stack(snapshots)[which]
    equity = cash + held_value(shares, m.mark)
    out = _output(equity, cash, shares, records)
    return replace(
        out,
        pending_sym=pending_sym.copy(),
        pending_qty=pending_qty.copy(),
        avg_cost=book.avg_cost.copy(),
    )


def step_orders_none() -> tuple[IntArray, FloatArray]:
    """No orders."""
    return np.empty(0, np.int64), np.empty(0)


def simulate_weights(
    m: MarketArrays,
    k: Kernels,
    *,
    weights: FloatArray,
    initial_capital: float,
    slippage_bps: float,
) -> SimOutput:
    """Run target weights (dates x symbols, NaN = no change) through :func:`kernels.run_weights`.

    Row t is sized at t's close and traded on the next bar, exactly as
    ``ctx.order_target_percent`` in ``handle_bar`` would.
    """
    n_bars, n_symbols = m.mark.shape
    live = int(np.count_nonzero(~np.isnan(weights)))
    # Every weight gives at most one order, so at most one fill and one refusal.
    records = Records(min(live, max(64 * n_symbols, 4096)) + n_symbols)
    shares = np.zeros(n_symbols)
    sellable = np.zeros(n_symbols)
    avg_cost = np.zeros(n_symbols)
    seen = np.full(n_symbols, -1, np.int64)
    scratch = np.empty(max(n_symbols, 1))
    order_sym = np.zeros(max(n_symbols, 1), np.int64)
    order_qty = np.zeros(max(n_symbols, 1))
    equity = np.empty(n_bars)
    cash_path = np.empty(n_bars)
    shares_path = np.empty((n_bars, n_symbols))
    t, cash, n_orders = 0, float(initial_capital), 0
    slippage = slippage_bps / 10_000.0
    while True:
        t, cash, n_orders, records.nf, records.nr = k.run_weights(
            t, weights, m.mark, m.fill_price, m.tradable, m.prev_close, m.limit_pct, m.min_lot,
            m.lot_step, m.rates, slippage, m.t_plus_1, cash, shares, sellable, avg_cost, seen,
            scratch, order_sym, order_qty, n_orders, equity, cash_path, shares_path,
            records.fill_i, records.fill_f, records.nf, records.ref_i, records.ref_f,
            records.nr,
        )  # fmt: skip
        if t >= n_bars:
            break
        records.reserve(len(records.fill_i), len(records.ref_i))  # full: double and go on
    out = _output(equity, cash_path, shares_path, records)
    # The kernel refuses the last bar's orders as it makes them: those are the pending orders.
    last = (out.refusals.reason == kn.NO_NEXT_BAR) & (out.refusal_bar == n_bars - 1)
    qty = out.refusals.side[last].astype(np.float64) * out.refusals.requested[last]
    return replace(
        out, pending_sym=out.refusals.sym[last].copy(), pending_qty=qty, avg_cost=avg_cost.copy()
    )
